"""Replay saved workflow histories against today's workflow code: a change that would break requests already
running (non-determinism) fails here first. Guard deliberate changes with `workflow.patched(...)`.

The histories in tests/histories were recorded from real runs, with a codec key kept beside them for this purpose
only. To record them again after a deliberate, patched change: `ERASURE_RECORD_HISTORIES=1 pytest
tests/integration/test_replay.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from activities.contracts import Acknowledgement, AuthorityVerification, Extension, OperatorDecision, RequestResult
from stores.codec import CodecKeys, data_converter
from tests.integration.approval import approve, awaiting_approval
from tests.integration.conftest import Harness, Vendors, court_order
from tests.integration.estate import catalogue, plant
from tests.integration.test_recipients import (  # noqa: F401 (webhooks is a fixture)
    notifying,
    plant_app,
    recipients_catalogue,
    webhooks,
)
from tests.servers import skipped_to_the_end
from workflows.class_order import BatchErasureWorkflow, ClassOrderWorkflow
from workflows.request import (
    ACK_RECIPIENT_UPDATE,
    EXTEND_UPDATE,
    REJECT_UPDATE,
    STATUS_QUERY,
    VERIFY_AUTHORITY_UPDATE,
    ErasureRequestWorkflow,
)
from workflows.system import SystemErasureWorkflow

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORDING = os.environ.get("ERASURE_RECORD_HISTORIES") == "1"
SAVED = {
    # a whole request on a vendor that never finishes: polls, escalation, deadline, certificate, grace, shredding
    "request_with_overdue_vendor": "request",
    "overdue_vendor": "request/segment",
    # a storage system on the real dev server: locate, erase, verify, receipt
    "storage_system": "request/app_db",
    # a request whose deadline an operator extends, with reminders before the new deadline
    "request_with_extension": "request",
    # recipients told: a webhook accepted, one refused, a manual acknowledgement, one never acknowledged
    "request_with_recipients": "request",
    # a legal hold placed mid-run (tests/integration/test_legal_holds.py records these): hold receipts, a partial
    # certificate, the wait for the release, the held systems resumed, a superseding certificate
    "request_with_hold": "request",
    "system_after_hold": "request/uploads/after-hold-1",
    # a guardian's request that waits for its authority, is verified by an operator, then runs with reminders
    "guardian_verification": "request",
    # a guardian's request never verified: rejected at the limit with a signed record, then its key destroyed
    "guardian_rejected_and_shredded": "request",
    # a court order previewed, approved by a second operator, then erased, certified and shredded
    "request_with_approval": "request",
    # a court order previewed and rejected: nothing erased
    "request_rejected": "request",
    # the two above as today's code runs them (the approval recorder saves these now; the older two stay as recorded
    # before a synchronous store ran in one activity and before a rejected request's key was destroyed)
    "court_order_approved": "request",
    "court_order_rejected_and_shredded": "request",
    # a storage system as a synchronous store runs today: locate, hold check, erase and verify in one activity
    "storage_system_in_one_activity": "request/app_db",
    # a class order of 30 children: approved by a second operator, 3 batches, certified (recorded in its grace period)
    # and one of its batches
    "class_order_approved": "request",
    "class_batch": "request/app_db/0",
}


def save(name: str, history: WorkflowHistory, keys_home: Path) -> None:
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{name}.json").write_text(history.to_json())
    shutil.copytree(keys_home / "keys" / "codec", HISTORIES / "codec", dirs_exist_ok=True)


@pytest.mark.skipif(not RECORDING, reason="records histories only when ERASURE_RECORD_HISTORIES=1")
async def test_record_histories(
    harness: Harness,
    skipping_harness: Harness,
    vendors: Vendors,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    plant(database_url, schema, s3_client, bucket_name)
    status = await harness.run(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
    storage = await harness.client.get_workflow_handle(f"{status['request_id']}/app_db").fetch_history()
    save("storage_system", storage, harness.config.home)

    vendors.segment.outcome = "NEVER"
    overdue = {
        "systems": [
            {
                "name": "segment",
                "connector": "segment",
                "category": "analytics",
                "identifiers": ["user_id"],
                "poll": {"every": "P1D"},
                "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
            }
        ]
    }
    async with skipping_harness.worker():
        submission = await skipping_harness.submit(court_order({"user_id": ["1"]}), overdue)
        handle = skipping_harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        await approve(skipping_harness.client, submission.request_id)
        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("request_with_overdue_vendor", await handle.fetch_history(), skipping_harness.config.home)
    child = skipping_harness.client.get_workflow_handle(f"{submission.request_id}/segment")
    save("overdue_vendor", await child.fetch_history(), skipping_harness.config.home)

    async with skipping_harness.worker():
        submission = await skipping_harness.submit(court_order({"user_id": ["1"]}), overdue)
        handle = skipping_harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        await approve(skipping_harness.client, submission.request_id)
        while (await handle.query(STATUS_QUERY))["phase"] != "executing":
            await asyncio.sleep(0.1)
        record = skipping_harness.services.ledger.request(submission.request_id)
        assert record is not None
        today = (await skipping_harness.env.get_current_time()).date()
        days = (max(record.deadline, today) - record.deadline).days + 10
        await handle.execute_update(EXTEND_UPDATE, Extension(days, "vendor backlog", "legal-officer-2"))
        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("request_with_extension", await handle.fetch_history(), skipping_harness.config.home)


@pytest.mark.skipif(
    os.environ.get("ERASURE_RECORD_HISTORIES") != "recipients",
    reason="records the recipients history only when ERASURE_RECORD_HISTORIES=recipients",
)
@pytest.mark.usefixtures("webhooks")
async def test_record_recipients_history(
    skipping_harness: Harness, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    plant_app(database_url, schema)
    catalogue = recipients_catalogue(schema)
    catalogue["systems"][0]["recipients"] = [
        r for r in catalogue["systems"][0]["recipients"] if r["name"] != "down_partner"
    ]
    async with skipping_harness.worker():
        submission = await skipping_harness.submit(court_order({"user_id": ["1"]}), catalogue)
        handle = skipping_harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        await approve(skipping_harness.client, submission.request_id)
        await notifying(handle)
        await handle.execute_update(ACK_RECIPIENT_UPDATE, Acknowledgement("analytics_vendor", "dpo-two"))
        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("request_with_recipients", await handle.fetch_history(), skipping_harness.config.home)


@pytest.mark.skipif(
    os.environ.get("ERASURE_RECORD_HISTORIES") != "guardian",
    reason="records the guardian history only when ERASURE_RECORD_HISTORIES=guardian",
)
async def test_record_guardian_history(skipping_harness: Harness, vendors: Vendors) -> None:
    from tests.integration.test_deadlines import NEVER_FINISHING
    from tests.integration.test_guardian import guardian_order

    vendors.segment.outcome = "NEVER"
    async with skipping_harness.worker():
        submission = await skipping_harness.submit(guardian_order({"user_id": ["1"]}), NEVER_FINISHING)
        handle = skipping_harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        while (await handle.query(STATUS_QUERY))["phase"] != "verifying authority":
            await asyncio.sleep(0.1)
        await skipping_harness.env.sleep(timedelta(days=2))
        verification = AuthorityVerification("document_check", "parent", "legal-officer-2")
        await handle.execute_update(VERIFY_AUTHORITY_UPDATE, verification)
        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("guardian_verification", await handle.fetch_history(), skipping_harness.config.home)

    async with skipping_harness.worker():  # never verified: rejected at the limit, then its key destroyed
        submission = await skipping_harness.submit(guardian_order({"user_id": ["2"]}), NEVER_FINISHING)
        handle = skipping_harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("guardian_rejected_and_shredded", await handle.fetch_history(), skipping_harness.config.home)


@pytest.mark.skipif(
    os.environ.get("ERASURE_RECORD_HISTORIES") != "approval",
    reason="records the approval histories only when ERASURE_RECORD_HISTORIES=approval",
)
async def test_record_approval_histories(
    skipping_harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    plant(database_url, schema, s3_client, bucket_name)
    h = skipping_harness
    async with h.worker():
        submission = await h.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
        handle = h.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        await approve(h.client, submission.request_id)
        async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("court_order_approved", await handle.fetch_history(), h.config.home)
    child = h.client.get_workflow_handle(f"{submission.request_id}/app_db")
    save("storage_system_in_one_activity", await child.fetch_history(), h.config.home)

    async with h.worker():
        submission = await h.submit(court_order({"user_id": ["2"]}), catalogue(schema, bucket_name))
        handle = h.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        await awaiting_approval(h.client, submission.request_id)
        await handle.execute_update(REJECT_UPDATE, OperatorDecision("approver-two", "the order was set aside"))
        async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
    save("court_order_rejected_and_shredded", await handle.fetch_history(), h.config.home)


@pytest.mark.skipif(
    os.environ.get("ERASURE_RECORD_HISTORIES") != "class",
    reason="records the class order's histories only when ERASURE_RECORD_HISTORIES=class",
)
async def test_record_class_histories(harness: Harness, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration import test_class_order as class_order

    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    schema = "app_replay_class"
    class_order.plant(database_url, schema, children=30)
    async with harness.worker():
        request_id, _ = await class_order.submit(harness, schema, 10)
        await approve(harness.client, request_id)
        await harness.wait_certified(request_id, timeout_s=120)
    save(
        "class_order_approved",
        await harness.client.get_workflow_handle(request_id).fetch_history(),
        harness.config.home,
    )
    batch = harness.client.get_workflow_handle(f"{request_id}/app_db/0")
    save("class_batch", await batch.fetch_history(), harness.config.home)


@pytest.mark.skipif(RECORDING, reason="recording")
@pytest.mark.parametrize("name", sorted(SAVED))
async def test_saved_history_replays_on_todays_code(name: str) -> None:
    raw = (HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(SAVED[name], json.loads(raw))
    replayer = Replayer(
        workflows=[ErasureRequestWorkflow, SystemErasureWorkflow, ClassOrderWorkflow, BatchErasureWorkflow],
        data_converter=data_converter(CodecKeys(HISTORIES).codec()),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
