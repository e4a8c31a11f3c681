"""The import rule of design.md, checked by import-linter: it passes on the tree and fails on a wrong import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("erasure", "workflows", "activities", "connectors", "stores", "evidence", "domain", "emulators", "examples")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the product's packages, so a test can break one without touching the repository."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("connectors/base.py", "import erasure.cli", "layers"),
        ("domain/model.py", "import stores.ledger", "layers"),
        ("stores/catalogue.py", "import connectors.registry", "layers"),
        ("workflows/system.py", "import evidence.dsse", "workflows stay free of I/O"),
        ("emulators/segment.py", "import domain.model", "emulators and the demo estate stand apart"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tree: Path, module: str, wrong_import: str, contract: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # deliberately wrong\n")
    result = _lint(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
