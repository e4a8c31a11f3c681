"""Who is asking: a bearer token (the API) or a session cookie (the dashboard), failed attempts rate-limited.

Sessions live in the server's memory: a restart signs everyone out, and nothing about a session is stored. Each
session has its own CSRF token, which every dashboard form posts back.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

from stores.operators import Operator

SESSION_COOKIE = "erasure_session"
SESSION_SECONDS = 8 * 3600
FAILURES_ALLOWED = 10  # per client address and window: enough for typos, too few for guessing
FAILURE_WINDOW_S = 60.0


@dataclass(frozen=True)
class Session:
    operator: Operator
    csrf: str
    expires: float


@dataclass
class Sessions:
    _by_id: dict[str, Session] = field(default_factory=dict)

    def open(self, operator: Operator) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(operator, secrets.token_urlsafe(32), time.monotonic() + SESSION_SECONDS)
        self._by_id[session_id] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        session = self._by_id.get(session_id)
        if session is None or session.expires < time.monotonic():
            self._by_id.pop(session_id, None)
            return None
        return session

    def close(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)


def csrf_matches(session: Session, given: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), given.encode())


@dataclass
class FailureLimit:
    """Failed sign-ins and bad tokens per client address, in a sliding window."""

    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def blocked(self, client: str) -> float:
        """Seconds the client must wait before trying again; 0 when it may try."""
        recent = self._recent(client)
        if len(recent) < FAILURES_ALLOWED:
            return 0.0
        return max(1.0, recent[0] + FAILURE_WINDOW_S - time.monotonic())

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())

    def _recent(self, client: str) -> deque[float]:
        recent = self._failures.setdefault(client, deque())
        while recent and recent[0] < time.monotonic() - FAILURE_WINDOW_S:
            recent.popleft()
        return recent
