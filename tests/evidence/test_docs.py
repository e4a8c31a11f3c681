"""docs/evidence.md against the code: the verifier's checks in its order, VERIFY.txt's commands, and the by-hand
consistency check, run against real bundles."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from evidence import verify
from evidence.report import verify_instructions
from tests.evidence.conftest import ORIGIN, MakeBundle
from tests.evidence.verify_txt import shell_blocks

DOC = Path(__file__).parents[2] / "docs" / "evidence.md"


def _words(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def documented_checks() -> list[tuple[int, str]]:
    found = re.search(r"<!-- checks:.*?-->\n(.*?)\n\n", DOC.read_text(), flags=re.DOTALL)
    assert found, "docs/evidence.md lost its numbered list of checks"
    items = re.findall(r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", found[1], flags=re.MULTILINE | re.DOTALL)
    return [(int(n), _words(text)) for n, text in items]


def planned_checks() -> list[tuple[int, str]]:
    """The plan in evidence/verify.py's docstring: " (n) text", continued on indented lines."""
    items = re.findall(r"^ ?\((\d+)\) (.*?)(?=^ ?\(\d+\) |^$)", verify.__doc__ or "", flags=re.MULTILINE | re.DOTALL)
    return [(int(n), _words(text)) for n, text in items]


def tagged_steps() -> list[int]:
    """The `# (n)` tags in verify_bundle, in the order the code runs them."""
    return [
        int(n) for n in re.findall(r"^    # \((\d+)\)$", inspect.getsource(verify.verify_bundle), flags=re.MULTILINE)
    ]


def test_docs_list_every_check_of_the_verifier_in_its_order() -> None:
    documented = documented_checks()

    assert [n for n, _ in documented] == list(range(1, len(documented) + 1))
    assert documented == planned_checks()
    assert tagged_steps() == [n for n, _ in documented]


def test_docs_give_the_commands_of_verify_txt() -> None:
    by_hand = DOC.read_text().split("<!-- by hand:", 1)[1].split("Finally, if you kept", 1)[0]

    assert shell_blocks(by_hand) == shell_blocks(verify_instructions(["unused"], ORIGIN))


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
