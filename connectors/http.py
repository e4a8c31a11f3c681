"""The HTTP plumbing the SaaS connectors share: one client shape and the mapping of transport failures.

Vendor-specific status and error-body mapping stays in each connector; only what is the same for every vendor is here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from domain.errors import TransientError

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
