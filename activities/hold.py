"""A test hook: pause at a named point so that a test can kill the process exactly there.

Armed only by a file: with `<point>.hold` in the directory the configuration names (ERASURE_TEST_HOLD_DIR), the
process writes `<point>.reached` and waits until the hold file is removed. Without a directory it does nothing.
"""

from __future__ import annotations

import time
from pathlib import Path


def hold(directory: Path | None, point: str) -> None:
    if directory is None:
        return
    armed = directory / f"{point}.hold"
    if not armed.exists():
        return
    (directory / f"{point}.reached").touch()
    while armed.exists():
        time.sleep(0.05)
