"""Three `erasure worker` processes share one deployment's task queues: the work spreads, every request is done once.

Asserted by outcome, never by timing: what remains in the estate, the receipts and log leaves in the ledger, and who
ran each task according to Temporal's own histories. The workers' metrics endpoints are read as an operator would.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import psycopg
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from examples.estate import CHILD, NEIGHBOURS, Person, count_rows, create_app_schema, seed_people, upload_keys
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, surviving_keys
from tests.servers import free_port

CHILDREN = (CHILD, *(Person(n, f"kid.{n}", f"kid.{n}@example.org", None) for n in range(2, 10)))


def plant_children(database_url: str, schema: str, s3: Any, bucket: str) -> None:
    """Nine children (user ids 1-9) among the usual neighbours (10, 100, 11: look-alikes of 1 and of each other)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [*CHILDREN, *NEIGHBOURS])
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for person in (*CHILDREN, *NEIGHBOURS):
        for key in upload_keys(person):
            s3.put_object(Bucket=bucket, Key=key, Body=b"video")


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"http://127.0.0.1:{port}/metrics", timeout=5)).text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when the series is absent)."""
    for line in text.splitlines():
        match = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


async def eventually(check: Any, timeout_s: float, what: str) -> Any:
    for _ in range(int(timeout_s * 5)):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def identities(client: Client, request_id: str, systems: list[str]) -> dict[str, set[str]]:
    """Which worker (pid@host) started each workflow and activity task of a request, by Temporal's histories."""
    seen: dict[str, set[str]] = {"activity": set(), "workflow": set()}
    for workflow_id in [request_id, *(f"{request_id}/{system}" for system in systems)]:
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                seen["activity"].add(event.activity_task_started_event_attributes.identity)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                seen["workflow"].add(event.workflow_task_started_event_attributes.identity)
    return seen


async def test_three_workers_share_the_queues_and_each_request_is_done_once(
    harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    plant_children(database_url, schema, s3_client, bucket_name)
    systems = catalogue(schema, bucket_name)
    systems["systems"][0]["connection"]["lock_timeout_ms"] = 300  # app_db gives up quickly on the lock below
    ports = [free_port() for _ in range(3)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for n, port in enumerate(ports):
            env = {
                **harness.process_env(tmp_path / f"worker-{n}"),
                "APP_DATABASE_URL": database_url,
                "ERASURE_S3_ENDPOINT": moto_url,
                "ERASURE_METRICS_ADDRESS": f"127.0.0.1:{port}",
            }
            workers.append(harness.start_worker(env))
        logs = [tmp_path / f"worker-{n}" / "logs" / "worker.jsonl" for n in range(3)]

        async def all_started() -> bool:
            for worker in workers:
                assert worker.poll() is None, "a worker exited at start"
            return all(log.exists() and "worker started" in log.read_text() for log in logs)

        await eventually(all_started, 120, "three workers to start")

        with psycopg.connect(database_url) as blocker:
            # app_db's first attempts meet a lock and fail as transient errors: counted, retried, then done
            blocker.execute(f'LOCK TABLE "{schema}".users IN ACCESS EXCLUSIVE MODE')
            request_ids = [
                (await harness.submit(court_order({"user_id": [str(child.user_id)]}), systems)).request_id
                for child in CHILDREN
            ]

            async def system_errors_counted() -> float:
                return sum([metric(await scrape(p), "erasure_system_errors", system="app_db") for p in ports])

            assert await eventually(system_errors_counted, 120, "app_db's lock timeouts to be counted") >= 1
            blocker.rollback()
            for request_id in request_ids:
                await approve(harness.client, request_id)

        statuses = [await harness.wait_certified(request_id, timeout_s=300) for request_id in request_ids]
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=60)

    for status in statuses:
        assert status["outcome"] == "complete"
        assert {s["system"]: (s["evidence_level"], s["records_after"]) for s in status["systems"]} == {
            "app_db": ("verified_absent", 0),
            "uploads": ("verified_absent", 0),
        }
        assert all(s["records_before"] > 0 for s in status["systems"])

    # the neighbours, look-alikes included, keep everything
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema) == {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()

    # each request done once: one receipt per system and one certificate, each one leaf of the log
    with harness.services.pool.connection() as conn:
        receipts = conn.execute("SELECT request_id::text, system, action FROM receipts").fetchall()
        leaves = conn.execute("SELECT count(*) FROM tlog_leaves").fetchone()
        events = conn.execute("SELECT count(*), count(DISTINCT (request_id, event_key)) FROM events").fetchone()
    assert sorted(receipts) == sorted(
        (request_id, system, action)
        for request_id in request_ids
        for system, action in (("*", "approval"), ("*", "certificate"), ("app_db", "erase"), ("uploads", "erase"))
    )
    assert leaves == (len(receipts),)
    assert events is not None and events[0] == events[1]

    # the work spread: more than one of the three workers ran activities, and only those three ran anything
    pids = {str(worker.pid) for worker in workers}
    ran: dict[str, set[str]] = {"activity": set(), "workflow": set()}
    for request_id in request_ids:
        for kind, names in (await identities(harness.client, request_id, ["app_db", "uploads"])).items():
            ran[kind] |= names
    ran_pids = {kind: {name.split("@")[0] for name in names} for kind, names in ran.items()}
    assert ran_pids["activity"] <= pids and ran_pids["workflow"] <= pids
    assert len(ran_pids["activity"]) > 1


async def test_a_workers_metrics_endpoint_serves_the_ledger_gauges_and_sdk_metrics(
    harness: Harness, database_url: str, moto_url: str, schema: str, s3_client: Any, bucket_name: str, tmp_path: Path
) -> None:
    plant_children(database_url, schema, s3_client, bucket_name)
    port = free_port()
    env = {
        **harness.process_env(tmp_path / "worker"),
        "APP_DATABASE_URL": database_url,
        "ERASURE_S3_ENDPOINT": moto_url,
        "ERASURE_METRICS_ADDRESS": f"127.0.0.1:{port}",
    }
    worker = harness.start_worker(env)
    try:
        request_id = (await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))).request_id
        await approve(harness.client, request_id)
        await harness.wait_certified(request_id, timeout_s=120)

        async def certified_published() -> str | None:
            text = await scrape(port)
            return text if metric(text, "erasure_requests", state="certified") == 1 else None

        text = await eventually(certified_published, 60, "the certified request to be published")
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert metric(text, "erasure_requests", state="executing") == 0
    assert metric(text, "erasure_requests_overdue") == 0
    assert metric(text, "temporal_workflow_completed", workflow_type="SystemErasure") == 2
    assert metric(text, "temporal_activity_execution_failed") == 0
    assert "example.org" not in text and request_id not in text
