"""`erasure hold place` / `release`: bad input gets one line naming the option or file, exit 2, before the ledger or
Temporal is asked, and never echoes an identifier."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from erasure.cli import app

REQUEST = "7d2c1c9e-4f7b-4b0e-9d3e-3f4f0a1b2c3d"
EMAIL = "sunny.day+clips@example.org"


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # nothing may be reached: no database, no Temporal
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    return tmp_path


def subject_file(folder: Path, text: str, mode: int = 0o600) -> str:
    path = folder / "subject.yaml"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["place", "--case", "KB-1"], "--request: expected exactly one of --request ID or --subject-file F"),
        (["place", "--case", "KB-1", "--request", "42"], "--request: expected a request id (a UUID)"),
        (["place", "--case", "", "--request", REQUEST], "--case: expected a case reference"),
        (["place", "--case", "mail me@example.org", "--request", REQUEST], "--case: expected a case reference"),
        (["place", "--case", "KB-1", "--request", REQUEST, "--systems", "Up;loads"], "--systems: expected system"),
        (["place", "--case", "KB-1", "--request", REQUEST, "--categories", "photos"], "--categories: expected some"),
        (["release", "not-a-hold"], "HOLD: expected a hold id (a UUID)"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(nowhere: Path, args: list[str], named: str) -> None:
    result = CliRunner().invoke(app, ["hold", *args])

    assert result.exit_code == 2, result.output
    assert named in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (nowhere / "home").exists(), "nothing may be created for a bad input"


@pytest.mark.parametrize(
    ("text", "mode", "named"),
    [
        (f"email: [{EMAIL}]\n", 0o644, "expected mode 0600"),
        (f"email: [{EMAIL}]\nshoe_size: [42]\n", 0o600, "shoe_size"),
        ("email: [not an address]\n", 0o600, "email"),
        ("{}\n", 0o600, "at least one identifier"),
    ],
)
def test_a_bad_subject_file_is_named_and_its_identifiers_never_echoed(
    nowhere: Path, text: str, mode: int, named: str
) -> None:
    path = subject_file(nowhere, text, mode)
    result = CliRunner().invoke(app, ["hold", "place", "--case", "KB-1", "--subject-file", path])

    assert result.exit_code == 2, result.output
    assert named in result.output and path in result.output.replace("\n", ""), result.output
    assert EMAIL not in result.output and "not an address" not in result.output
    assert not (nowhere / "home").exists()
