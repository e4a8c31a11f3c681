from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence.notary import FinishedSystem
from evidence.report import render_report, verify_instructions
from evidence.statement import parse_statement
from tests.evidence.conftest import ORIGIN, REQUEST, MakeBundle
from tests.evidence.conftest import certificate as notary_certificate

TOOLS = ("bash", "unzip", "jq", "openssl", "sha256sum", "base64", "python3")


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
    assert all(text in page for text in expected)
    assert "<dt><code>vendor_attested</code></dt>" in page  # the glossary


def test_report_escapes_everything() -> None:
    page = render_report(certificate("verified_absent", legal_basis='<script>alert("x")</script>'))

    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_report_is_self_contained() -> None:
    page = render_report(certificate("verified_absent"))

    assert not re.search(r"(src|href)=", page)


def shell_blocks(instructions: str) -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", instructions, flags=re.DOTALL))


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}")
def test_verify_txt_commands_check_a_good_bundle(make_bundle: MakeBundle, tmp_path: Path) -> None:
    """The auditor's instructions, run exactly as written, against the bundle that carries them."""
    case = make_bundle()
    shutil.copy(case.path, tmp_path / "bundle.zip")
    script = shell_blocks(verify_instructions(["unused"], ORIGIN))

    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], cwd=tmp_path, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Signature Verified Successfully") == 4
    assert result.stdout.count(": OK") == 3  # sha256sum -c, one per receipt
    assert "checkpoint signed by keys/" in result.stdout
    assert result.stdout.count(" included") == 4 and "NOT INCLUDED" not in result.stdout


@pytest.mark.skipif(any(shutil.which(tool) is None for tool in TOOLS), reason=f"needs {', '.join(TOOLS)}")
@pytest.mark.parametrize(
    "defect",
    [
        "receipt_byte_changed",
        "receipt_reformatted",
        "receipt_missing",
        "extra_receipt",
        "proof_not_to_root",
        "checkpoint_signature_bad",
    ],
)
def test_verify_txt_commands_fail_on_a_bad_bundle(make_bundle: MakeBundle, tmp_path: Path, defect: str) -> None:
    shutil.copy(make_bundle(defect).path, tmp_path / "bundle.zip")
    script = shell_blocks(verify_instructions(["unused"], ORIGIN))

    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script], cwd=tmp_path, capture_output=True, text=True, check=False
    )

    assert result.returncode != 0


def test_verify_txt_names_the_keys_and_the_one_command() -> None:
    text = verify_instructions(["ab" * 32], ORIGIN)

    assert "ab" * 32 in text
    assert "erasure evidence verify bundle.zip --trusted-key KEY.pem" in text
    assert "openssl pkeyutl -verify -pubin -inkey" in text and "-rawin -in pae.bin -sigfile sig.bin" in text
