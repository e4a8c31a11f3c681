"""A worker killed with SIGKILL at the two worst moments of one system's erasure: after its deletion is committed and
before anything reports it, then while its receipt is being signed. New workers finish the request: one deletion,
one receipt, and the receipt's counts and key commitment agree with what was deleted.

The kills land where the test says because the worker pauses there (ErasureActivities._hold, armed by a file in the
directory ERASURE_TEST_HOLD_DIR names); each landing is checked from the ledger and the application database.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from evidence.dsse import Envelope
from examples.estate import count_rows
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys

CHILD_ROWS = 18  # the child's rows in the application database, over five tables
NEIGHBOUR_ROWS = {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}


async def wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s * 10)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def kill_at(worker: subprocess.Popen[bytes], holds: Path, point: str) -> None:
    """Wait until the worker is paused at `point`, then SIGKILL it and disarm the point."""
    await wait_for((holds / f"{point}.reached").exists, 90, f"the worker to reach {point}")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    (holds / f"{point}.hold").unlink()
    (holds / f"{point}.reached").unlink()


def receipt_predicate(harness: Harness, request_id: str, system: str) -> dict[str, Any]:
    with harness.services.pool.connection() as conn:
        row = conn.execute(
            "SELECT envelope FROM receipts WHERE request_id = %s AND system = %s AND action = 'erase'",
            [request_id, system],
        ).fetchone()
    assert row is not None
    predicate: dict[str, Any] = json.loads(Envelope.from_json(bytes(row[0])).payload)["predicate"]
    return predicate


async def test_sigkill_after_the_deletion_and_during_signing_gives_one_deletion_and_one_honest_receipt(
    harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {
        **harness.process_env(tmp_path / "worker-home"),
        "APP_DATABASE_URL": database_url,
        "ERASURE_S3_ENDPOINT": moto_url,
        "ERASURE_TEST_HOLD_DIR": str(holds),
    }
    ledger = harness.services.ledger
    (holds / "erased.app_db.hold").touch()
    (holds / "signing.app_db.hold").touch()
    workers = [harness.start_worker(env)]
    try:
        request_id = (await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))).request_id
        await approve(harness.client, request_id)

        # (1) app_db's rows are deleted and committed; nothing has recorded the deletion yet
        await kill_at(workers[-1], holds, "erased.app_db")
        task = ledger.task(request_id, "app_db")
        assert (task.state, task.records_before, task.deleted, task.key_count) == ("erasing", CHILD_ROWS, None, 0)
        with psycopg.connect(database_url) as conn:
            assert count_rows(conn, schema) == NEIGHBOUR_ROWS  # the deletion happened before the kill

        # (2) the retried erasure and the verification are recorded; the receipt is being signed in the log
        workers.append(harness.start_worker(env))
        await kill_at(workers[-1], holds, "signing.app_db")
        task = ledger.task(request_id, "app_db")
        assert (task.state, task.records_after, task.evidence_level) == ("verifying", 0, None)
        with harness.services.pool.connection() as conn:
            logged = conn.execute("SELECT system FROM receipts WHERE request_id = %s", [request_id]).fetchall()
        assert ("app_db",) not in logged

        workers.append(harness.start_worker(env))
        status = await harness.wait_certified(request_id, timeout_s=120)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)

    levels = {s["system"]: (s["evidence_level"], s["records_before"], s["records_after"]) for s in status["systems"]}
    assert levels == {"app_db": ("verified_absent", CHILD_ROWS, 0), "uploads": ("verified_absent", 8, 0)}
    assert status["outcome"] == "complete"
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema) == NEIGHBOUR_ROWS
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
    # the receipt commits to every row the first, killed attempt deleted: the retry found nothing left to delete
    receipt = receipt_predicate(harness, request_id, "app_db")
    assert (receipt["records_before"], receipt["records_after"], receipt["key_count"]) == (CHILD_ROWS, 0, CHILD_ROWS)
    assert receipt["key_commitment"] is not None
    task = ledger.task(request_id, "app_db")
    assert (task.deleted, task.key_count, task.key_commitment) == (CHILD_ROWS, CHILD_ROWS, receipt["key_commitment"])
    # nothing recorded twice: the approval, one receipt per system and one certificate, each one leaf of the log
    with harness.services.pool.connection() as conn:
        receipts = conn.execute(
            "SELECT system, action FROM receipts WHERE request_id = %s ORDER BY system", [request_id]
        ).fetchall()
        leaves = conn.execute("SELECT count(*) FROM tlog_leaves").fetchone()
    assert sorted(receipts) == [("*", "approval"), ("*", "certificate"), ("app_db", "erase"), ("uploads", "erase")]
    assert leaves == (4,)


async def test_a_step_whose_worker_is_killed_more_times_than_maximum_attempts_still_finishes(
    harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    """A worker's death is not the system's error: it does not spend the attempts the catalogue allows."""
    maximum_attempts = 2
    plant(database_url, schema, s3_client, bucket_name)
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {
        **harness.process_env(tmp_path / "worker-home"),
        "APP_DATABASE_URL": database_url,
        "ERASURE_S3_ENDPOINT": moto_url,
        "ERASURE_TEST_HOLD_DIR": str(holds),
    }
    armed = holds / "erased.app_db.hold"
    reached = holds / "erased.app_db.reached"
    armed.touch()  # stays armed: every attempt of app_db's step stops there until the last worker
    workers = [harness.start_worker(env)]
    try:
        request_id = (
            await harness.submit(
                court_order({"user_id": ["1"]}),
                catalogue(schema, bucket_name, maximum_attempts=maximum_attempts, schedule_to_close="PT10M"),
            )
        ).request_id
        await approve(harness.client, request_id)
        for _ in range(maximum_attempts + 1):
            await wait_for(reached.exists, 90, "an attempt of app_db's step to reach the hold")
            workers[-1].send_signal(signal.SIGKILL)
            workers[-1].wait(timeout=10)
            reached.unlink()
            workers.append(harness.start_worker(env))
        armed.unlink()  # the next attempt, after the heartbeat timeout, goes through
        status = await harness.wait_certified(request_id, timeout_s=120)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)

    levels = {s["system"]: (s["evidence_level"], s["records_before"], s["records_after"]) for s in status["systems"]}
    assert levels == {"app_db": ("verified_absent", CHILD_ROWS, 0), "uploads": ("verified_absent", 8, 0)}
    assert status["outcome"] == "complete"
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema) == NEIGHBOUR_ROWS
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
    with harness.services.pool.connection() as conn:
        receipts = conn.execute(
            "SELECT system FROM receipts WHERE request_id = %s AND action = 'erase' ORDER BY system", [request_id]
        ).fetchall()
    assert receipts == [("app_db",), ("uploads",)]
