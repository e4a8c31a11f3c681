"""The combined app and `python -m emulators`, as the demo starts them."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from emulators.__main__ import duration, states
from tests.emulators.conftest import Emulators
from tests.servers import free_port


def test_health_and_both_mounts_answer(emulators: Emulators) -> None:
    assert emulators.http.get("/healthz").status_code == 200
    assert emulators.http.get("/segment/regulations/x").status_code == 401
    assert emulators.http.get("/meta/v25.0/1/sessions").json()["error"]["code"] == 190


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("5s", timedelta(seconds=5)),
        ("2m", timedelta(minutes=2)),
        ("1.5h", timedelta(hours=1.5)),
        ("30d", timedelta(days=30)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert duration(text) == expected


@pytest.mark.parametrize("text", ["5", "five seconds", "-5s", "5 s s"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        duration(text)


def test_seeds_and_wall_clock_durations_reach_the_states() -> None:
    seed = {"segment": {"profiles": ["1", "10"], "token": "t1"}, "meta": {"audiences": {"5": [["a"], ["b", "c"]]}}}
    segment, meta = states(seed, timedelta(seconds=5), None)
    assert segment.profiles == {"1", "10"} and segment.token == "t1"
    assert (segment.finish_after, segment.finish_after_polls) == (timedelta(seconds=5), None)
    assert meta.audiences == {"5": {("a",), ("b", "c")}}
    assert (meta.processing_time, meta.finish_after_polls) == (timedelta(hours=20), None)  # Meta takes hours


def test_the_seed_can_shorten_metas_processing_time() -> None:
    _, meta = states({"meta": {"processing_time": "6s"}}, None, None)
    assert meta.processing_time == timedelta(seconds=6)


def test_python_m_emulators_serves_the_seeded_state(tmp_path: Path) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"segment": {"token": "seeded"}, "meta": {"audiences": {"7": [["a" * 64]]}}}))
    port = free_port()
    command = [sys.executable, "-m", "emulators", "--port", str(port), "--seed", str(seed), "--meta-finish-after", "1s"]
    server = subprocess.Popen(command, cwd=Path(__file__).parents[2])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        created = httpx.post(
            f"{url}/segment/regulations",
            json={"regulationType": "DELETE_ONLY", "subjectType": "USER_ID", "subjectIds": ["1"]},
            headers={"Authorization": "Bearer seeded"},
        )
        assert created.status_code == 200
        sessions = httpx.get(f"{url}/meta/v25.0/7/sessions", headers={"Authorization": "Bearer dev-token"})
        assert sessions.json() == {"data": []}
    finally:
        server.terminate()
        server.wait(timeout=10)
