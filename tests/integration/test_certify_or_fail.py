"""A request is certified only over a receipt of every system in scope; when no certificate can be issued the
request fails at once, with the reason in the ledger, and `erasure status` says so in one line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.client import WorkflowFailureError

from domain.states import TaskState
from tests.integration.approval import approve, awaiting_approval
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, plant


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


async def test_a_system_in_scope_without_a_receipt_fails_the_request_with_its_reason_instead_of_a_certificate(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str, tmp_path: Path
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    systems = catalogue(schema, bucket_name)
    systems["systems"][0]["connection"]["lock_timeout_ms"] = 120_000  # app_db waits on the lock below
    ledger = harness.services.ledger
    with psycopg.connect(database_url) as blocker:
        async with harness.worker():
            request_id = (await harness.submit(court_order({"user_id": ["1"]}), systems)).request_id
            await awaiting_approval(harness.client, request_id)  # the preview has located, unhindered
            blocker.execute(f'LOCK TABLE "{schema}".device_tokens IN ACCESS EXCLUSIVE MODE')  # hold the fan-out open
            await approve(harness.client, request_id)
            for _ in range(300):
                if ledger.task(request_id, "app_db").state == TaskState.LOCATING:
                    break
                await asyncio.sleep(0.1)
            # a system in scope that no child workflow will ever give a receipt (as a lost or skipped task would)
            with harness.services.pool.connection() as conn:
                ledger.add_task(conn, request_id, "crm", "storage", "postgres")
            blocker.rollback()
            status = await harness.wait_certified(request_id)
            assert (status["state"], status["outcome"]) == ("failed", None)
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(harness.client.get_workflow_handle(request_id).result(), 30)

    reasons = [e["detail"]["reason"] for e in status["events"] if e["kind"] == "failed"]
    assert reasons == ["cannot certify: expected a receipt of every system in scope, none for ['crm']"]
    assert str(failure.value.cause) == reasons[0]  # the workflow fails with the ledger's reason
    with harness.services.pool.connection() as conn:
        logged = conn.execute("SELECT action FROM receipts WHERE request_id = %s", [request_id]).fetchall()
    assert ("certificate",) not in logged

    env = harness.process_env(tmp_path / "home")
    shown = await harness.cli(env, "status", request_id)
    assert shown.returncode == 0, shown.stderr
    assert "state failed" in shown.stdout and "cannot certify" in shown.stdout
