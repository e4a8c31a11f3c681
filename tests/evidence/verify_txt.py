"""VERIFY.txt run as an auditor runs it: its shell blocks, in order, in one bash, with the key id they were given.

The tools are the auditor's, from the system: a missing one fails the test with how to install it (`make test`
installs them where apt-get can), since a skipped test would hide that the manual path went unchecked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = {"bash": "bash", "unzip": "unzip", "jq": "jq", "openssl": "openssl", "sha256sum": "coreutils"}
TOOLS |= {"base64": "coreutils", "python3": "python3"}


def require_tools() -> None:
    missing = sorted(tool for tool in TOOLS if shutil.which(tool) is None)
    if missing:
        packages = " ".join(sorted({TOOLS[tool] for tool in missing}))
        pytest.fail(f"VERIFY.txt needs {', '.join(missing)}: install with `apt-get install {packages}`")


def shell_blocks(instructions: str) -> str:
    return "\n".join(re.findall(r"```sh\n(.*?)```", instructions, flags=re.DOTALL))


def run_verify_txt(instructions: str, bundle: Path, folder: Path, keyid: str) -> subprocess.CompletedProcess[str]:
    """The instructions' commands against `bundle`, copied as bundle.zip into the empty `folder`."""
    require_tools()
    folder.mkdir()
    shutil.copy(bundle, folder / "bundle.zip")
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + shell_blocks(instructions)],
        cwd=folder,
        env={**os.environ, "TRUSTED_KEYID": keyid},
        capture_output=True,
        text=True,
        check=False,
    )
