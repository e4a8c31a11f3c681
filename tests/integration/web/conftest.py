"""`erasure serve` as its own process on the test's ledger schema, task queue and catalogue, reached over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from stores.operators import Operators, Role
from tests.integration.conftest import Harness
from tests.integration.estate import catalogue, plant
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Served:
    url: str
    harness: Harness
    tokens: dict[str, str]  # operator name -> token
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, operator: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.tokens[operator]}"} if operator else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30)


OPERATORS = {
    "sam": [Role.SUBMITTER],
    "ada": [Role.APPROVER],
    "sal": [Role.SUBMITTER, Role.APPROVER],  # may approve, but never what she submitted herself
    "rey": [Role.REVIEWER],
    "aud": [Role.AUDITOR],
    "root": [Role.ADMIN],
}


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


@pytest.fixture
def estate(database_url: str, schema: str, s3_client: Any, bucket_name: str) -> dict[str, Any]:
    plant(database_url, schema, s3_client, bucket_name)
    return catalogue(schema, bucket_name, identity=False)


@pytest.fixture
async def served(harness: Harness, estate: dict[str, Any], tmp_path: Path) -> AsyncIterator[Served]:
    catalogue_path = harness.write_yaml("systems.yaml", estate)
    operators = Operators(harness.services.pool)
    tokens = {name: operators.add(name, roles)[1] for name, roles in OPERATORS.items()}
    with serve(harness, catalogue_path, tmp_path) as (url, process, log):
        yield Served(url, harness, tokens, process, log)


@contextmanager
def serve(harness: Harness, catalogue_path: Path, tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`erasure serve` on a free port, until the block ends; its output goes to a file the leak scans read."""
    port = free_port()
    log = tmp / "serve.out"
    argv = ["serve", "--port", str(port), "--insecure-cookies", "--catalogue", str(catalogue_path)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "erasure.cli", *argv],
            env=harness.process_env(),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url, process, log
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise AssertionError(f"erasure serve exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("erasure serve did not answer within 60 s")
