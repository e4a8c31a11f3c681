"""A class order's worker killed with SIGKILL mid-batch: after one batch's deletion is committed and before anything
records it, then while another batch's receipt is being signed. New workers finish the order: every batch has one
receipt (one log leaf), and each receipt's counts agree with what its batch deleted."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from psycopg import sql

from activities.class_order import tlog_name
from evidence.dsse import Envelope
from tests.integration.approval import approve
from tests.integration.conftest import Harness
from tests.integration.test_class_order import CHILDREN, app_schema, plant, remaining, submit
from tests.integration.test_worker_crash import kill_at

__all__ = ["app_schema"]  # the fixture, used by name

BATCH = 100  # 12 batches of 100 children, three rows each (the user and two videos)


async def test_sigkill_mid_batch_repeats_nothing_and_the_counts_agree(
    harness: Harness, database_url: str, app_schema: str, tmp_path: Path
) -> None:
    groups = plant(database_url, app_schema)
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {**harness.process_env(tmp_path / "worker-home"), "ERASURE_TEST_HOLD_DIR": str(holds)}
    (holds / "erased.app_db.3.hold").touch()
    (holds / "signing.app_db.5.hold").touch()
    workers = [harness.start_worker(env)]
    classes = harness.services.classes
    try:
        request_id, _ = await submit(harness, app_schema, BATCH)
        await approve(harness.client, request_id)

        # (1) batch 3's rows are deleted and committed; nothing has recorded the deletion yet
        await kill_at(workers[-1], holds, "erased.app_db.3")
        batch = classes.batch(request_id, "app_db", 3)
        assert (batch.state, batch.records_before, batch.deleted, batch.key_count) == ("running", 3 * BATCH, None, 0)

        # (2) batch 5's receipt is being signed in the log's transaction when the worker dies
        workers.append(harness.start_worker(env))
        await kill_at(workers[-1], holds, "signing.app_db.5")
        assert tlog_name("app_db", 5) not in {r.system for r in harness.services.tlog.receipts(request_id)}

        workers.append(harness.start_worker(env))
        status = await harness.wait_certified(request_id, timeout_s=240)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=30)

    assert status["outcome"] == "complete"
    assert remaining(database_url, app_schema, groups["child"]) == 0
    for neighbours in ("birthday_on_cutoff", "other_tenant", "older"):
        assert remaining(database_url, app_schema, groups[neighbours]) == 20, neighbours
    batches = classes.batches(request_id)
    with harness.services.pool.connection() as conn:
        logged = conn.execute(
            "SELECT system, envelope FROM receipts WHERE request_id = %s AND action = 'erase'", [request_id]
        ).fetchall()
        leaves = conn.execute("SELECT count(*) FROM tlog_leaves").fetchone()
    # nothing twice: one receipt per batch plus the approval's record and the certificate, each one leaf of the log
    assert sorted(name for name, _ in logged) == sorted(tlog_name(b.system, b.batch) for b in batches)
    assert leaves == (len(batches) + 2,)
    receipts = {name: json.loads(Envelope.from_json(bytes(env)).payload)["predicate"] for name, env in logged}
    for b in batches:
        receipt = receipts[tlog_name(b.system, b.batch)]
        # the receipt commits to every row its batch deleted, by whichever attempt: the killed one's included
        assert (receipt["records_before"], receipt["records_after"], receipt["key_count"]) == (
            3 * b.subjects,
            0,
            3 * b.subjects,
        )
        assert receipt["key_commitment"] == b.key_commitment and b.deleted == 3 * b.subjects
    assert sum(b.subjects for b in batches) == CHILDREN
    with psycopg.connect(database_url) as conn:
        videos = conn.execute(sql.SQL("SELECT count(*) FROM {}.videos").format(sql.Identifier(app_schema))).fetchone()
    assert videos == (2 * 60,)  # the neighbours' videos, all of them
