from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence import notary
from evidence.bundle import Bundle
from evidence.keys import Ed25519Signer
from evidence.notary import FinishedSystem
from evidence.report import render_report, verify_instructions
from evidence.statement import parse_statement
from tests.evidence.conftest import ORIGIN, REQUEST, MakeBundle
from tests.evidence.conftest import certificate as notary_certificate
from tests.evidence.verify_txt import run_verify_txt


def certificate(*levels: str, legal_basis: str = "GDPR Art. 17") -> dict[str, object]:
    systems = tuple(FinishedSystem(f"system_{i}", "storage", level, 3, 0) for i, level in enumerate(levels))
    request = dataclasses.replace(REQUEST, legal_basis=legal_basis)
    return parse_statement(notary_certificate(systems, {s.system: b"envelope" for s in systems}, request))


@pytest.mark.parametrize(
    ("levels", "headline"),
    [
        (("verified_absent", "verified_absent"), "Complete: every system verified"),
        (("verified_absent", "accepted"), "Complete: every system done (1 accepted by the vendor without a way"),
        (("verified_absent", "blocked"), "Not complete: 1 system blocked by a legal hold or retention lock"),
        (("failed", "blocked", "failed"), "Not complete: 2 systems failed and a person must act"),
    ],
)
def test_report_states_the_outcome_in_words(levels: tuple[str, ...], headline: str) -> None:
    assert headline in render_report(certificate(*levels))


def test_report_lists_every_system_and_the_facts() -> None:
    page = render_report(certificate("verified_absent", "blocked"))

    expected = ("system_0", "system_1", "High Court, claim QB-2025-000123", "2025-03-27", ORIGIN, "<code>blocked")
    assert "Days past the deadline" in page
    assert all(text in page for text in expected)
    assert "<tr><th>Ledger backups beyond use by</th><td>2025-05-05</td></tr>" in page
    assert "<dt><code>vendor_attested</code></dt>" in page  # the glossary


def test_report_escapes_everything() -> None:
    page = render_report(certificate("verified_absent", legal_basis='<script>alert("x")</script>'))

    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_report_is_self_contained() -> None:
    page = render_report(certificate("verified_absent"))

    assert not re.search(r"(src|href)=", page)


def test_verify_txt_commands_check_a_good_bundle(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Path
) -> None:
    """The auditor's instructions, run exactly as written, against the bundle that carries them."""
    result = run_verify_txt(verify_instructions(["unused"], ORIGIN), make_bundle().path, tmp_path / "a", signer.keyid)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout
    assert result.stdout.count("is signed by the trusted key") == 6  # manifest, checkpoint, certificate, 3 receipts
    assert "OK the manifest lists every file of the bundle, byte for byte" in result.stdout
    assert result.stdout.count(" included") == 4 and "NOT INCLUDED" not in result.stdout


@pytest.mark.parametrize(
    ("defect", "printed"),
    [
        ("receipt_byte_changed", "FAILED: certificate.json: a file's SHA-256 differs from the one listed"),
        ("receipt_reformatted", "FAILED: certificate.json: a file's SHA-256 differs from the one listed"),
        ("receipt_missing", "FAILED: the receipts are not exactly the certificate's subjects"),
        ("extra_receipt", "FAILED: the receipts are not exactly the certificate's subjects"),
        ("proof_not_to_root", "receipts/app_db.dsse.json NOT INCLUDED"),
        ("checkpoint_signature_bad", "FAILED: the checkpoint is not signed by the trusted key"),
        ("untrusted_key", "FAILED: receipts/segment.dsse.json is not signed by the trusted key"),
        ("receipt_from_other_request", "FAILED: receipts/segment.dsse.json: for another request"),
    ],
)
def test_verify_txt_commands_fail_on_a_bad_bundle(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Path, defect: str, printed: str
) -> None:
    result = run_verify_txt(
        verify_instructions(["unused"], ORIGIN), make_bundle(defect).path, tmp_path / "a", signer.keyid
    )

    assert result.returncode != 0
    assert printed in result.stdout + result.stderr


def test_verify_txt_commands_fail_on_a_page_changed_after_signing(
    make_bundle: MakeBundle, signer: Ed25519Signer, tmp_path: Path
) -> None:
    bundle = Bundle.read(make_bundle().path)
    bundle.report_html = bundle.report_html.replace("Not complete: 1 system blocked", "Complete: every system verified")
    bundle.write(tmp_path / "changed.zip")  # the manifest signed before the change

    result = run_verify_txt(
        verify_instructions(["unused"], ORIGIN), tmp_path / "changed.zip", tmp_path / "a", signer.keyid
    )

    assert result.returncode != 0
    assert "FAILED: manifest.json: a file's SHA-256 differs from the one listed" in result.stdout


def test_verify_txt_commands_refuse_a_bundle_by_any_other_key(
    make_bundle: MakeBundle, attacker: Ed25519Signer, tmp_path: Path
) -> None:
    result = run_verify_txt(verify_instructions(["unused"], ORIGIN), make_bundle().path, tmp_path / "a", attacker.keyid)

    assert result.returncode != 0
    assert "FAILED: the bundle holds no key with the key id you trust" in result.stdout


def test_verify_txt_names_the_keys_and_the_one_command() -> None:
    text = verify_instructions(["ab" * 32], ORIGIN)

    assert "ab" * 32 in text
    assert 'erasure evidence verify bundle.zip --trusted-keyid "$TRUSTED_KEYID"' in text
    assert "openssl pkeyutl -verify -pubin -inkey" in text and "-rawin -in pae.bin -sigfile sig.bin" in text


def test_report_shows_the_timeline_in_order_and_who_was_told() -> None:
    at = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    steps = [
        notary.StateStep("received", "intake", "submitted", at),
        notary.StateStep("executing", "orchestrator", "planned", at + timedelta(minutes=1)),
        notary.StateStep("notifying_recipients", "orchestrator", "2 to tell", at + timedelta(minutes=5)),
    ]
    notices = [
        notary.Notice("app_db", "school_portal", "third_party", "manual", "acknowledged", at, actor="dpo-two"),
        notary.Notice("app_db", "ads_partner", "third_party", "webhook", "failed", at, reason="http 403"),
    ]
    systems = (FinishedSystem("app_db", "storage", "verified_absent", 3, 0),)
    statement = notary.certificate(
        REQUEST,
        systems,
        {"app_db": b"envelope"},
        not_searched={},
        log_origin=ORIGIN,
        code_version="test",
        issued_at="2025-03-02T10:00:00Z",
        shredding_by="2025-04-01T10:00:00Z",
        backups=notary.Backups(35),
        recipients=notices,
        timeline=steps,
    )
    predicate = parse_statement(statement)["predicate"]
    assert [s["at"] for s in predicate["timeline"]][0] == "2025-03-01T09:00:00Z"
    assert [n["recipient"] for n in predicate["recipients"]] == ["ads_partner", "school_portal"]

    page = render_report(parse_statement(statement))

    timeline = page[page.index("<h2>Timeline</h2>") :]
    rows = ["received", "executing", "notifying recipients", "certified"]
    positions = [timeline.index(f"<tr><td>{state}</td>") for state in rows]
    assert positions == sorted(positions)
    assert "<td>notifying recipients</td><td>2025-03-01T09:05:00Z</td><td>orchestrator</td>" in timeline
    assert "<td>certified</td><td>2025-03-02T10:00:00Z</td>" in timeline
    told = page[page.index("Recipients told of the erasure") : page.index("<h2>Timeline</h2>")]
    assert "school_portal" in told and "dpo-two" in told and "http 403" in told
