"""A worker killed with SIGKILL in the middle of a fan-out: a new worker finishes the request, nothing twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import psycopg

from examples.estate import count_rows
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys


async def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_sigkill_mid_fan_out_then_a_new_worker_completes_the_request(
    harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    env = {
        **harness.process_env(tmp_path / "worker-home"),
        "APP_DATABASE_URL": database_url,
        "ERASURE_S3_ENDPOINT": moto_url,
    }
    systems = catalogue(schema, bucket_name)
    systems["systems"][0]["connection"]["lock_timeout_ms"] = 120_000  # app_db waits on the lock below

    with psycopg.connect(database_url) as blocker:
        # Hold app_db's erasure at a lock so the fan-out is caught half done: uploads finishes, app_db waits.
        blocker.execute(f'LOCK TABLE "{schema}".device_tokens IN ACCESS EXCLUSIVE MODE')
        first = harness.start_worker(env)
        try:
            submission = await harness.submit(court_order({"user_id": ["1"]}), systems)
            request_id = submission.request_id
            ledger = harness.services.ledger
            await wait_for(lambda: ledger.task(request_id, "uploads").state == "done", 60, "uploads to finish")
            await wait_for(lambda: ledger.task(request_id, "app_db").state == "locating", 30, "app_db to start")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            if first.poll() is None:
                first.kill()
        assert ledger.task(request_id, "app_db").state == "locating"
        blocker.rollback()  # release the lock: the killed worker's transaction died with its connection

    second = harness.start_worker(env)
    try:
        status = await harness.wait_certified(request_id, timeout_s=120)
    finally:
        second.terminate()
        second.wait(timeout=30)

    levels = {s["system"]: (s["evidence_level"], s["records_before"], s["records_after"]) for s in status["systems"]}
    assert levels == {"app_db": ("verified_absent", 18, 0), "uploads": ("verified_absent", 8, 0)}
    assert status["outcome"] == "complete"
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema)["users"] == 3
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
    # nothing recorded twice: one receipt per system and one certificate, each one leaf of the log
    with harness.services.pool.connection() as conn:
        receipts = conn.execute(
            "SELECT system, action FROM receipts WHERE request_id = %s ORDER BY system", [request_id]
        ).fetchall()
        leaves = conn.execute("SELECT count(*) FROM tlog_leaves").fetchone()
        events = conn.execute("SELECT count(*), count(DISTINCT event_key) FROM events").fetchone()
    assert receipts == [("*", "certificate"), ("app_db", "erase"), ("uploads", "erase")]
    assert leaves == (3,)
    assert events is not None and events[0] == events[1]
