"""A request whose legal hold was released has more than one certificate: the bundle holds every superseded one
beside the current one, the verifier checks each (signed, in the log, for this request, a chain in log order) and
says which is current, and report.html shows the supersession."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from evidence.bundle import Bundle, superseded_path
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer
from evidence.verify import verify_bundle
from tests.evidence.conftest import HOLD_CASE, Sealed, seal


def written(tmp_path: Path, signer: Ed25519Signer, sealed: Sealed) -> Path:
    sealed.bundle.sign(signer)
    path = tmp_path / "bundle.zip"
    sealed.bundle.write(path)
    return path


def test_every_superseded_certificate_is_in_the_bundle_checked_and_the_current_one_is_named(
    tmp_path: Path, signer: Ed25519Signer
) -> None:
    sealed = seal(signer, superseded=2)
    path = written(tmp_path, signer, sealed)

    assert sorted(Bundle.read(path).superseded) == [superseded_path(1), superseded_path(2)]
    report = verify_bundle(path, trusted_keys=[signer.public_key])
    first, second = (sealed.bundle.superseded[superseded_path(n)] for n in (1, 2))
    assert [(s.number, s.sha256, s.outcome) for s in report.superseded] == [
        (1, hashlib.sha256(first).hexdigest(), "partial"),
        (2, hashlib.sha256(second).hexdigest(), "partial"),
    ]
    assert report.supersedes == hashlib.sha256(second).hexdigest()
    assert any(
        line.startswith("certificate 3 is current: it supersedes certificate 1 (partial") for line in report.checks
    )


def test_report_html_shows_the_supersession(signer: Ed25519Signer) -> None:
    html = seal(signer, superseded=1).bundle.report_html
    earlier = hashlib.sha256(seal(signer, superseded=1).bundle.superseded[superseded_path(1)]).hexdigest()

    assert "<h2>Supersession</h2>" in html and "This certificate (2) is current" in html
    assert earlier in html and HOLD_CASE in html and "partial" in html
    assert "Supersession" not in seal(signer).bundle.report_html


def _missing(s: Sealed, attacker: Ed25519Signer) -> None:
    del s.bundle.superseded[superseded_path(2)], s.bundle.proofs[superseded_path(2)]


def _none(s: Sealed, attacker: Ed25519Signer) -> None:
    s.bundle.superseded.clear()
    for n in (1, 2):
        del s.bundle.proofs[superseded_path(n)]


def _resigned(s: Sealed, attacker: Ed25519Signer) -> None:
    payload = Envelope.from_json(s.bundle.superseded[superseded_path(1)]).payload
    s.bundle.superseded[superseded_path(1)] = sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, attacker).to_json()


def _swapped(s: Sealed, attacker: Ed25519Signer) -> None:
    one, two = superseded_path(1), superseded_path(2)
    s.bundle.superseded[one], s.bundle.superseded[two] = s.bundle.superseded[two], s.bundle.superseded[one]
    s.bundle.proofs[one], s.bundle.proofs[two] = s.bundle.proofs[two], s.bundle.proofs[one]


def _unproven(s: Sealed, attacker: Ed25519Signer) -> None:
    del s.bundle.proofs[superseded_path(1)]


def _renumbered(s: Sealed, attacker: Ed25519Signer) -> None:
    s.bundle.superseded[superseded_path(3)] = s.bundle.superseded.pop(superseded_path(2))
    s.bundle.proofs[superseded_path(3)] = s.bundle.proofs.pop(superseded_path(2))


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        (_none, "certificate supersedes one, but the bundle holds 0 superseded certificates"),
        (_missing, "certificate supersedes sha256:"),
        (_resigned, "superseded/certificate-1.dsse.json: "),
        (_swapped, "superseded/certificate-1.dsse.json: expected it to supersede none"),
        (_unproven, "inclusion proofs do not match the envelopes: missing ['superseded/certificate-1.dsse.json']"),
        (_renumbered, "superseded certificates are not 1 to 2"),
    ],
    ids=["none", "missing", "resigned", "swapped", "unproven", "renumbered"],
)
def test_a_broken_chain_of_certificates_fails(
    tmp_path: Path,
    signer: Ed25519Signer,
    attacker: Ed25519Signer,
    defect: Callable[[Sealed, Ed25519Signer], None],
    message: str,
) -> None:
    sealed = seal(signer, superseded=2)
    defect(sealed, attacker)
    path = written(tmp_path, signer, sealed)

    with pytest.raises(VerificationError, match="^" + re.escape(message)):
        verify_bundle(path, trusted_keys=[signer.public_key])
