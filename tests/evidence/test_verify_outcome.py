"""The verifier re-derives the outcome from the receipts: a certificate that claims more is rejected, even when it
is re-signed with the trusted key and logged like the real one (someone holding the signing key, or a bug)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from evidence.bundle import CERTIFICATE, Bundle, InclusionProof
from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer
from evidence.merkle import MemoryTree, inclusion_proof
from evidence.verify import verify_bundle
from tests.evidence.conftest import ORIGIN, MakeBundle

FAILED_RECEIPT = "receipts/segment.dsse.json"


def forge(bundle: Bundle, signer: Ed25519Signer, edit: Callable[[dict[str, Any]], None]) -> Bundle:
    """The bundle with its certificate edited, re-signed, logged with its receipts in a log of its own, and the
    manifest signed again over it all."""
    statement = json.loads(Envelope.from_json(bundle.certificate).payload)
    edit(statement["predicate"])
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    certificate = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, signer).to_json()
    log = MemoryTree()
    entries = [*sorted(bundle.receipts.items()), (CERTIFICATE, certificate)]
    indexes = {name: log.append(data) for name, data in entries}
    proofs = {
        name: InclusionProof(i, log.size, tuple(inclusion_proof(i, log.size, log))) for name, i in indexes.items()
    }
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer, ORIGIN)
    forged = dataclasses.replace(bundle, certificate=certificate, proofs=proofs, checkpoint=checkpoint, consistency={})
    forged.sign(signer)  # the manifest over the forged entries
    return forged


def claim_complete(predicate: dict[str, Any]) -> None:
    predicate["outcome"] = "complete"


def claim_complete_and_segment_attested(predicate: dict[str, Any]) -> None:
    predicate["outcome"] = "complete"
    for system in predicate["systems"]:
        system["evidence_level"] = "vendor_attested" if system["system"] == "segment" else "verified_absent"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (claim_complete, r"certificate claims more than its receipts: expected outcome 'incomplete', got 'complete'"),
        (
            claim_complete_and_segment_attested,
            r"certificate claims more than receipts/media_bucket\.dsse\.json: expected level 'blocked'",
        ),
    ],
)
def test_a_re_signed_certificate_claiming_complete_over_a_failed_receipt_is_rejected(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Any, edit: Callable[[dict[str, Any]], None], match: str
) -> None:
    honest = make_bundle(levels={"segment": "failed"})
    assert verify_bundle(honest.path, trusted_keys=[signer.public_key]).outcome == "incomplete"
    forged = tmp_path / "forged.zip"
    forge(Bundle.read(honest.path), signer, edit).write(forged)

    with pytest.raises(VerificationError, match=match):
        verify_bundle(forged, trusted_keys=[signer.public_key])


def test_the_forgery_is_otherwise_a_well_formed_bundle(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Any
) -> None:
    # the control: re-signing and re-logging without an edit gives a bundle that verifies, so the rejections above
    # are the outcome check's doing
    honest = make_bundle(levels={"segment": "failed"})
    copy = tmp_path / "copy.zip"
    forge(Bundle.read(honest.path), signer, lambda predicate: None).write(copy)

    report = verify_bundle(copy, trusted_keys=[signer.public_key])

    assert report.outcome == "incomplete"
    assert report.checks[-1] == "outcome incomplete is the one the receipts' evidence levels give"
