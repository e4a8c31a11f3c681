"""The dev stack's background processes, recorded so that `erasure dev down` signals only what `up` started.

The system reuses a pid once its process is gone, so a pid alone may name an unrelated process by the time a stale
`stack.json` is read. A record therefore keeps the process's start time and command line too, and a process that
differs in either is never signalled.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    started_at: float  # seconds since the epoch, as the system reports the process's creation
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int, argv: list[str]) -> ProcessRecord:
        """The record of a process just started with `argv` (its command line once exec has run)."""
        return cls(pid, psutil.Process(pid).create_time(), tuple(argv))

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "started_at": self.started_at, "argv": list(self.argv)}

    @classmethod
    def from_json(cls, data: Any) -> ProcessRecord:
        """A record from stack.json; one without start time and command line (an older stack) matches nothing."""
        if not isinstance(data, dict):
            return cls(int(data), 0.0, ())
        return cls(int(data["pid"]), float(data["started_at"]), tuple(str(a) for a in data["argv"]))

    def running(self) -> bool:
        """This very process is alive: same pid, same start time, same command line, and not a zombie."""
        _reap(self.pid)
        try:
            process = psutil.Process(self.pid)
            with process.oneshot():
                return (
                    process.create_time() == self.started_at
                    and tuple(process.cmdline()) == self.argv
                    and process.status() != psutil.STATUS_ZOMBIE
                )
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return False
        except psutil.AccessDenied:  # another user's process: not one this stack started
            return False

    def stop(self, timeout_s: float = 15) -> bool:
        """SIGTERM to the process's group (it leads one: started in a session of its own), SIGKILL if it lingers.
        Returns False, signalling nothing, unless this very process is running."""
        if not self.running():
            return False
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running():
                return True
            time.sleep(0.1)
        if self.running():  # checked again: the pid may have been freed and reused while we waited
            os.killpg(self.pid, signal.SIGKILL)
        return True


def _reap(pid: int) -> None:
    """A child of this process that has exited is collected, so that it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
