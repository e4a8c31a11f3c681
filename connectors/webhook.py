"""Telling a recipient of the data about an erasure (GDPR Art. 19) through its webhook: one JSON POST.

The notice names the request by its random id, the system and its data categories: never an identifier. Throttling,
timeouts and server errors are worth retrying (Temporal retries, a bounded number of times); any other refusal is
terminal. Messages name the recipient and the HTTP status only, never the response body.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.http import TIMEOUT, transport_errors
from domain.errors import TerminalError, TransientError

_RETRYABLE = frozenset({408, 425, 429})


def post_notice(url: str, recipient: str, notice: dict[str, Any], idempotency_key: str) -> int:
    """POST the notice; returns the HTTP status of an accepting (2xx) answer."""
    if not url.startswith(("https://", "http://")):
        raise TerminalError(f"recipient {recipient}: expected an http(s) webhook url, got another scheme")
    with transport_errors(f"recipient {recipient}"), httpx.Client(timeout=TIMEOUT) as client:
        response = client.post(url, json=notice, headers={"Idempotency-Key": idempotency_key})
    status = response.status_code
    if 200 <= status < 300:
        return status
    if status in _RETRYABLE or status >= 500:
        raise TransientError(f"recipient {recipient} did not take the notice: http {status}")
    raise TerminalError(f"recipient {recipient} refused the notice: http {status}")
