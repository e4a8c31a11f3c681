"""Both emulators behind one server, as the dev stack runs them; each test gets fresh state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from emulators.app import create_app
from emulators.meta import MetaState
from emulators.segment import SegmentState
from tests.emulators.switchboard import Switchboard, switchboard


@dataclass(frozen=True)
class Emulators:
    segment: SegmentState
    meta: MetaState
    http: httpx.Client  # based at the server root: paths start with /segment or /meta


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, str]]:
    with switchboard() as board_and_url:
        yield board_and_url


@pytest.fixture
def emulators(server: tuple[Switchboard, str]) -> Iterator[Emulators]:
    board, url = server
    segment, meta = SegmentState(), MetaState()
    board.app = create_app(segment, meta)
    with httpx.Client(base_url=url) as client:
        yield Emulators(segment, meta, client)
