"""The by-hand consistency check that docs/evidence.md gives auditors, run against real bundles."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.evidence.conftest import MakeBundle

DOC = Path(__file__).parents[2] / "docs" / "evidence.md"


def consistency_script() -> str:
    found = re.search(r"<!-- consistency\.py:.*?-->\n```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert found, "docs/evidence.md lost its consistency.py block"
    return found[1]


@pytest.mark.parametrize(
    ("defect", "printed"),
    [
        ("good", "consistent: the log at size 10 extends the earlier checkpoint at size 5"),
        ("previous_checkpoint_forked", "NOT CONSISTENT"),
        ("previous_checkpoint_larger", "ROLLED BACK"),
        ("consistency_proof_missing", "NO CONSISTENCY PROOF from size 5"),
    ],
)
def test_documented_consistency_check(make_bundle: MakeBundle, tmp_path: Path, defect: str, printed: str) -> None:
    case = make_bundle(defect)
    with zipfile.ZipFile(case.path) as archive:
        archive.extractall(tmp_path / "bundle")
    (tmp_path / "consistency.py").write_text(consistency_script())
    (tmp_path / "old-checkpoint.txt").write_text(case.previous_checkpoint)

    result = subprocess.run(
        [sys.executable, "../consistency.py", "../old-checkpoint.txt"],
        cwd=tmp_path / "bundle",
        capture_output=True,
        text=True,
        check=False,
    )

    assert printed in result.stdout + result.stderr
    assert (result.returncode == 0) == (defect == "good")
