"""The Temporal dev server killed in the middle of a request and started again on its SQLite file (write-ahead
log, synchronous=normal, as `erasure dev up` runs it): the request finishes, each system erased once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from erasure.config import Config
from examples.estate import count_rows
from stores.codec import CodecKeys, data_converter
from tests.integration.approval import approve
from tests.integration.conftest import court_order, open_harness, tool
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys
from tests.servers import TemporalDevServer

NEIGHBOUR_ROWS = {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}


async def wait_for(path: Path, timeout_s: float) -> None:
    for _ in range(int(timeout_s * 10)):
        if path.exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {path.name}")


async def test_a_request_finishes_after_the_dev_server_is_killed_and_restarted_mid_request(
    config: Config,
    keys_home: Path,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
    monkeypatch: Any,
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    plant(database_url, schema, s3_client, bucket_name)
    holds = tmp_path / "holds"
    holds.mkdir()
    (holds / "erased.app_db.hold").touch()
    server = TemporalDevServer(tool("temporal"), tmp_path / "temporal.db")
    server.start()
    try:
        assert Path(f"{server.db_file}-wal").exists()  # the write-ahead log is on
        client = await Client.connect(
            server.address, data_converter=data_converter(CodecKeys(keys_home / "keys").codec())
        )
        env = WorkflowEnvironment.from_client(client)
        async with open_harness(config.with_(hold_dir=holds), env, tmp_path) as harness:
            async with harness.worker():
                submitted = await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
                request_id = submitted.request_id
                await approve(harness.client, request_id)
                await wait_for(holds / "erased.app_db.reached", 60)  # app_db's rows are deleted, nothing reported
                server.kill()
                server.start()
                (holds / "erased.app_db.hold").unlink()
                status = await harness.wait_certified(request_id, timeout_s=120)
            with harness.services.pool.connection() as conn:
                receipts = conn.execute(
                    "SELECT system, action FROM receipts WHERE request_id = %s ORDER BY system", [request_id]
                ).fetchall()
    finally:
        server.kill()

    assert status["outcome"] == "complete"
    levels = {s["system"]: s["evidence_level"] for s in status["systems"]}
    assert levels == {"app_db": "verified_absent", "uploads": "verified_absent"}
    assert sorted(receipts) == [("*", "approval"), ("*", "certificate"), ("app_db", "erase"), ("uploads", "erase")]
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema) == NEIGHBOUR_ROWS
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
