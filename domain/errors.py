"""The project's errors, one tree with one root.

    ErasureError                    root: the CLI catches this and nothing else
    ├── InvalidInput                a malformed order, catalogue or argument (exit status 2)
    ├── TransientError              may succeed if retried (timeouts, throttling, 5xx); Temporal retries it
    │   └── Throttled               the vendor asked us to slow down; carries how long to wait
    └── TerminalError               retrying cannot help (a refusal, a 4xx, a bad configuration)
        └── VendorRefused           the vendor refused the request; carries the vendor's reason code

Messages are lowercase, say what failed and, where useful, expected versus got. They never contain an identifier
value or a vendor's response body: only codes, counts, field names and system names.
"""

from __future__ import annotations


class ErasureError(Exception):
    """Root of every error the project raises on purpose."""


class InvalidInput(ErasureError):
    """Bad input from a person: names the file and the field."""

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(f"{source}: {field}: {problem}")


class TransientError(ErasureError):
    """Worth retrying."""


class Throttled(TransientError):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class TerminalError(ErasureError):
    """Retrying cannot help; a person must act."""


class VendorRefused(TerminalError):
    def __init__(self, vendor: str, reason: str, status: int | None = None) -> None:
        self.vendor = vendor
        self.reason = reason
        self.status = status
        where = f" (http {status})" if status is not None else ""
        super().__init__(f"{vendor} refused the request{where}: {reason}")
