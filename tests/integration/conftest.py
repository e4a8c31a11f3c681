"""Integration harness: the real Temporal dev server (session), a ledger schema and task queue per test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from erasure.config import Config
from erasure.intake import Submission, submit, validate
from erasure.services import Services, migrate_ledger
from erasure.status import request_status
from erasure.worker import build_workers
from stores.codec import CodecKeys, data_converter
from tests.integration.approval import SUBMITTER, approve


def tool(name: str) -> str:
    """A binary installed by a package into this venv: nothing is downloaded at run time."""
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is not installed"
    return found


@pytest.fixture(scope="session")
def keys_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ERASURE_HOME for the session's keys, shared by the worker and the client (like one deployment)."""
    home = tmp_path_factory.mktemp("erasure-home")
    CodecKeys(home / "keys").load()
    return home


@pytest.fixture(scope="session")
async def temporal(keys_home: Path) -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=tool("temporal"),
        data_converter=data_converter(CodecKeys(keys_home / "keys").codec()),
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping(keys_home: Path) -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server: waits of days pass in moments while the test awaits a result."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=tool("temporal-test-server"),
        data_converter=data_converter(CodecKeys(keys_home / "keys").codec()),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class Harness:
    config: Config
    services: Services
    client: Client
    tmp: Path
    executor: ThreadPoolExecutor
    env: WorkflowEnvironment

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for worker in build_workers(self.client, self.services, self.executor):
                await stack.enter_async_context(worker)
            yield

    def process_env(self, home: Path | None = None) -> dict[str, str]:
        """The environment of an `erasure` process of this deployment: a home of its own, the same keys."""
        if home is not None and not (home / "keys").exists():
            shutil.copytree(self.config.home / "keys", home / "keys")
        return {
            **os.environ,
            "ERASURE_HOME": str(home or self.config.home),
            "DATABASE_URL": self.config.database_url,
            "TEMPORAL_ADDRESS": self.config.temporal_address,
            "ERASURE_TASK_QUEUE": self.config.task_queue,
            "ERASURE_LEDGER_SCHEMA": self.config.ledger_schema,
        }

    def start_worker(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """`erasure worker` in a process of its own; its log is $ERASURE_HOME/logs/worker.jsonl."""
        return subprocess.Popen(
            [sys.executable, "-m", "erasure.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def cli(self, env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "erasure.cli",
            *args,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate(stdin.encode())
        return subprocess.CompletedProcess(list(args), process.returncode or 0, stdout.decode(), stderr.decode())

    async def cli_run(
        self, env: dict[str, str], order: str, systems: str, *, timeout: str = "120"
    ) -> subprocess.CompletedProcess[str]:
        """A court order's whole run through the CLI: `erasure submit`, a second operator's approval, then
        `erasure status --wait --json` (what `submit --wait` printed before approval existed)."""
        submitted = await self.cli(env, "submit", order, "--catalogue", systems, "--json")
        if submitted.returncode != 0:
            return submitted
        request_id = json.loads(submitted.stdout)["request_id"]
        await approve(self.client, request_id)
        return await self.cli(env, "status", request_id, "--wait", "--timeout", timeout, "--json")

    def write_yaml(self, name: str, data: Any) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    async def submit(self, order: dict[str, Any], catalogue: dict[str, Any]) -> Submission:
        parsed, systems = validate(self.write_yaml("order.yaml", order), self.write_yaml("systems.yaml", catalogue))
        return await submit(self.services, self.client, parsed, systems)

    async def run(self, order: dict[str, Any], catalogue: dict[str, Any]) -> dict[str, Any]:
        """Submit, approve it as a second operator where it must be, run the worker until the request is certified,
        and return its status."""
        async with self.worker():
            submission = await self.submit(order, catalogue)
            if order["kind"] == "court_order":
                await approve(self.client, submission.request_id)
            return await self.wait_certified(submission.request_id)

    async def wait_certified(self, request_id: str, timeout_s: float = 60) -> dict[str, Any]:
        for _ in range(int(timeout_s * 10)):
            report = request_status(self.services.ledger, request_id)
            status = report.to_json()
            if report.state.stopped:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"request not certified within {timeout_s} s: {status}")


@pytest.fixture
def ledger_schema(database_url: str) -> Iterator[str]:
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def config(
    keys_home: Path, database_url: str, temporal: WorkflowEnvironment, ledger_schema: str, task_queue: str
) -> Config:
    return Config(
        home=keys_home,
        database_url=database_url,
        temporal_address=temporal.client.service_client.config.target_host,
        task_queue=task_queue,
        ledger_schema=ledger_schema,
        grace_days=30,
        operator=SUBMITTER,
    )


@asynccontextmanager
async def open_harness(config: Config, env: WorkflowEnvironment, tmp: Path) -> AsyncIterator[Harness]:
    config = config.with_(temporal_address=env.client.service_client.config.target_host)
    migrate_ledger(config)  # as the worker does when it starts
    services = Services.open(config)
    with ThreadPoolExecutor(max_workers=16) as executor:
        try:
            yield Harness(config, services, env.client, tmp, executor, env)
        finally:
            services.close()


@pytest.fixture
async def harness(config: Config, temporal: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Harness]:
    async with open_harness(config, temporal, tmp_path) as opened:
        yield opened


@pytest.fixture
async def skipping_harness(
    config: Config, time_skipping: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[Harness]:
    """A harness on the time-skipping server: `await` a workflow's result and its timers and retries fly by."""
    async with open_harness(config, time_skipping, tmp_path) as opened:
        yield opened


def court_order(subject: dict[str, list[str]], scope: Any = "all") -> dict[str, Any]:
    # received ten days ago with four weeks to comply, whatever today is: a past deadline needs the operator's flag
    received = datetime.now(UTC).date() - timedelta(days=10)
    return {
        "kind": "court_order",
        "legal_basis": "Order of the High Court; UK GDPR Art. 17(1)",
        "received": received.isoformat(),
        "deadline": (received + timedelta(days=28)).isoformat(),
        "court_order": {
            "court": "High Court of Justice, King's Bench Division",
            "claim_number": "KB-2026-000123",
            "made_on": (received - timedelta(days=1)).isoformat(),
            "party_reference": "SMO",
            "anonymity_order": True,
        },
        "subject": subject,
        "scope": scope,
    }


@dataclass
class Vendors:
    """The Segment and Meta emulators of one test, on a server shared by the session."""

    url: str
    segment: Any
    meta: Any


@pytest.fixture(scope="session")
def emulator_board() -> Iterator[Any]:
    from tests.emulators.switchboard import switchboard

    with switchboard() as (board, url):
        yield board, url


@pytest.fixture
def vendors(emulator_board: Any, monkeypatch: pytest.MonkeyPatch) -> Vendors:
    from emulators.app import create_app
    from emulators.meta import MetaState
    from emulators.segment import SegmentState

    board, url = emulator_board
    segment, meta = SegmentState(), MetaState()
    board.app = create_app(segment, meta)
    monkeypatch.setenv("ERASURE_SEGMENT_URL", f"{url}/segment")
    monkeypatch.setenv("ERASURE_META_URL", f"{url}/meta")
    monkeypatch.setenv("SEGMENT_TOKEN", segment.token)
    monkeypatch.setenv("META_ACCESS_TOKEN", meta.access_token)
    return Vendors(url, segment, meta)
