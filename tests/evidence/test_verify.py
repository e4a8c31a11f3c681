from __future__ import annotations

import re
from pathlib import Path

import pytest

from evidence.bundle import Bundle
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer
from evidence.verify import verify_bundle
from tests.evidence.conftest import REQUEST_ID, MakeBundle


def test_good_bundle_verifies_with_trusted_key(make_bundle: MakeBundle, signer: Ed25519Signer) -> None:
    case = make_bundle()

    report = verify_bundle(case.path, trusted_keys=[signer.public_key])

    assert (report.request_id, report.outcome, report.tree_size) == (REQUEST_ID, "partial", 10)
    assert not report.keys_from_bundle
    assert len(report.checks) == 9


def test_good_bundle_verifies_with_a_trusted_key_id(make_bundle: MakeBundle, signer: Ed25519Signer) -> None:
    report = verify_bundle(make_bundle().path, trusted_keyids=[signer.keyid])

    assert (report.outcome, report.keys_from_bundle) == ("partial", False)


def test_without_a_trusted_key_nothing_verifies_and_the_key_to_trust_is_named(
    make_bundle: MakeBundle, signer: Ed25519Signer
) -> None:
    with pytest.raises(VerificationError, match=rf"^no trusted key given: .* key ids \['{signer.keyid}'\]$"):
        verify_bundle(make_bundle().path)


def test_bundled_keys_are_trusted_only_when_asked_and_say_so(make_bundle: MakeBundle) -> None:
    report = verify_bundle(make_bundle().path, unsafe_trust_bundled_keys=True)

    assert report.keys_from_bundle
    assert report.outcome == "partial"


def test_a_key_id_the_bundle_does_not_hold_trusts_nothing(make_bundle: MakeBundle, attacker: Ed25519Signer) -> None:
    with pytest.raises(VerificationError, match=r"^manifest\.dsse\.json: envelope has no signature by a trusted key"):
        verify_bundle(make_bundle().path, trusted_keyids=[attacker.keyid])


def test_good_bundle_verifies_against_previous_checkpoint(make_bundle: MakeBundle, signer: Ed25519Signer) -> None:
    case = make_bundle()

    report = verify_bundle(case.path, trusted_keys=[signer.public_key], previous_checkpoint=case.previous_checkpoint)

    assert report.checks[-1] == "log at size 10 is consistent with the previous checkpoint at size 5"


def test_previous_checkpoint_equal_to_current_needs_no_proof(make_bundle: MakeBundle, signer: Ed25519Signer) -> None:
    case = make_bundle("consistency_proof_missing")
    same = Bundle.read(case.path).checkpoint

    report = verify_bundle(case.path, trusted_keys=[signer.public_key], previous_checkpoint=same)

    assert report.checks[-1] == "log at size 10 is consistent with the previous checkpoint at size 10"


def test_incomplete_request_verifies_and_reports_incomplete(make_bundle: MakeBundle, signer: Ed25519Signer) -> None:
    case = make_bundle(levels={"segment": "failed"})

    report = verify_bundle(case.path, trusted_keys=[signer.public_key])

    assert report.outcome == "incomplete"


def test_key_the_bundle_brings_along_passes_only_when_bundled_keys_are_trusted(make_bundle: MakeBundle) -> None:
    # Why trusting the bundle's keys checks integrity only: a bundle vouches for itself (the rejection is below).
    assert verify_bundle(make_bundle("untrusted_key").path, unsafe_trust_bundled_keys=True).keys_from_bundle


@pytest.mark.parametrize(
    ("defect", "match"),
    [
        ("receipt_byte_changed", r"receipts/app_db\.dsse\.json: envelope signature does not verify"),
        ("certificate_byte_changed", r"certificate\.dsse\.json: envelope signature does not verify"),
        ("swapped_payload_type", r"receipts/app_db\.dsse\.json: envelope has wrong payload type"),
        ("receipt_missing", r"missing \['receipts/media_bucket\.dsse\.json'\]"),
        ("extra_receipt", r"not in the certificate \['receipts/warehouse\.dsse\.json'\]"),
        ("receipt_reformatted", r"receipts/app_db\.dsse\.json: receipt digest does not match the certificate"),
        ("receipt_from_other_request", r"receipts/segment\.dsse\.json: receipt is for another request"),
        ("proof_not_to_root", r"receipts/app_db\.dsse\.json: inclusion proof leads to wrong root"),
        ("proof_for_other_size", r"inclusion proof is for another tree size: expected 10, got 9"),
        ("checkpoint_signature_bad", r"log/checkpoint\.txt: checkpoint signature does not verify"),
        ("checkpoint_size_changed", r"log/checkpoint\.txt: checkpoint signature does not verify"),
        ("envelope_signature_bad", r"receipts/app_db\.dsse\.json: envelope signature does not verify"),
        ("untrusted_key", r"receipts/segment\.dsse\.json: envelope has no signature by a trusted key"),
        ("key_file_misnamed", r"key file name does not match its key id"),
        ("previous_checkpoint_forked", r"log is not consistent with the previous checkpoint"),
        ("previous_checkpoint_larger", r"log was rolled back: previous checkpoint has size 13"),
        ("consistency_proof_missing", r"no consistency proof from the previous size 5 to 10"),
        ("previous_checkpoint_untrusted", r"previous checkpoint: checkpoint is not signed by a trusted key"),
    ],
)
def test_known_bad_bundle_is_rejected(make_bundle: MakeBundle, signer: Ed25519Signer, defect: str, match: str) -> None:
    case = make_bundle(defect)

    with pytest.raises(VerificationError, match=match):
        verify_bundle(case.path, trusted_keys=[signer.public_key], previous_checkpoint=case.previous_checkpoint)


def test_bundle_signed_by_someone_else_is_rejected(make_bundle: MakeBundle, attacker: Ed25519Signer) -> None:
    with pytest.raises(VerificationError, match=r"manifest\.dsse\.json: envelope has no signature by a trusted key"):
        verify_bundle(make_bundle().path, trusted_keys=[attacker.public_key])


def test_no_trusted_keys_trusts_nothing(make_bundle: MakeBundle) -> None:
    with pytest.raises(VerificationError, match="no trusted key given"):
        verify_bundle(make_bundle().path, trusted_keys=[])


def test_any_of_several_trusted_keys_will_do_across_a_key_rotation(
    make_bundle: MakeBundle, signer: Ed25519Signer
) -> None:
    retired, next_key = Ed25519Signer.generate(), Ed25519Signer.generate()
    report = verify_bundle(
        make_bundle().path, trusted_keys=[retired.public_key, signer.public_key, next_key.public_key]
    )
    assert report.outcome == "partial"


@pytest.mark.parametrize("entry", ["report_html", "verify_txt"])
def test_a_page_changed_after_signing_is_rejected(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Path, entry: str
) -> None:
    bundle = Bundle.read(make_bundle().path)
    setattr(bundle, entry, getattr(bundle, entry).replace("Not complete", "Complete").replace("openssl", "true"))
    bundle.write(tmp_path / "changed.zip")  # the manifest signed before the change

    name = {"report_html": "report.html", "verify_txt": "VERIFY.txt"}[entry]
    with pytest.raises(VerificationError, match=rf"^{re.escape(name)}: digest does not match the manifest"):
        verify_bundle(tmp_path / "changed.zip", trusted_keys=[signer.public_key])
