"""What a request's shredding leaves: a sealed vault item, a signed shredding receipt in the log, one event."""

from __future__ import annotations

import pytest

from erasure.services import Services
from evidence import notary
from evidence.dsse import Envelope, verify_envelope
from evidence.statement import parse_statement
from stores.vault import VaultSealed


def assert_shredded(services: Services, request_id: str, item: str, reason: str) -> None:
    """The vault `item` cannot be opened, the log holds one signed shredding receipt saying why, and the ledger one
    `shredded` event with the reason."""
    with pytest.raises(VaultSealed):
        services.vault.open(request_id, item)
    shreds = [r for r in services.tlog.receipts(request_id) if r.action == notary.SHRED]
    assert len(shreds) == 1 and shreds[0].system == notary.REQUEST_SYSTEM
    signer = services.tlog.signer
    payload = verify_envelope(Envelope.from_json(shreds[0].envelope), {signer.keyid: signer.public_key})
    facts = parse_statement(payload)["predicate"]
    assert (facts["action"], facts["evidence_level"]) == ("shred", "verified_absent")
    assert f"destroyed ({reason})" in facts["detail"]
    events = [e.detail for e in services.ledger.events(request_id) if e.kind == "shredded"]
    assert events == [{"reason": reason}]
