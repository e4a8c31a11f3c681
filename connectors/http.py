"""The HTTP plumbing the SaaS connectors share: one client shape and the mapping of transport failures.

Vendor-specific status and error-body mapping stays in each connector; only what is the same for every vendor is here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from domain.errors import TerminalError, TransientError

# Connect quickly or fail over to a retry; reads get longer because vendors answer batch calls slowly.
TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def client(base_url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT)


@contextmanager
def transport_errors(vendor: str) -> Iterator[None]:
    """Timeouts and broken connections are worth retrying; the message names only the failure's class."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TransientError(f"{vendor} did not answer in time ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise TransientError(f"{vendor} could not be reached ({type(exc).__name__})") from exc


def json_body(vendor: str, response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON. Invalid UTF-8, or a lone surrogate anywhere in the decoded
    JSON, is terminal: such text cannot be recorded, and asking again would get the same answer."""
    try:
        text = response.content.decode("utf-8")
    except UnicodeDecodeError:
        raise TerminalError(f"{vendor} answered with invalid utf-8 (http {response.status_code})") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not _valid_unicode(body):
        raise TerminalError(f"{vendor} answered with invalid unicode, a lone surrogate (http {response.status_code})")
    return body


def _valid_unicode(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_unicode(key) and _valid_unicode(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_valid_unicode(item) for item in value)
    return True
