"""One loopback server per test module, serving whichever emulator app the current test plugs in.

Stopping uvicorn waits for its shutdown tick (about 0.15 s), which per test would be most of the suite's time; so
tests share a server and swap the app, and with it the emulator's state, instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers import serve_asgi


class Switchboard:
    """An ASGI app that forwards to `app`, set by each test before it makes a request."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@contextmanager
def switchboard() -> Iterator[tuple[Switchboard, str]]:
    board = Switchboard()
    with serve_asgi(board) as url:
        yield board, url
