"""Vendors that take weeks, on the time-skipping server: durable polling, escalation, deadlines, and the shredding
of the request's key when the 30-day grace period after the certificate has passed."""

from __future__ import annotations

import asyncio
import base64
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.contracts import RequestResult
from erasure.export import export_bundle
from evidence.verify import verify_bundle
from examples.estate import CHILD, NEIGHBOURS
from stores.vault import Vault, VaultSealed
from tests.integration.approval import approve
from tests.integration.conftest import Harness, Vendors, court_order
from tests.servers import skipped_to_the_end

POLL_EVERY_HOURS = 12


def segment_catalogue(**poll: str) -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "segment",
                "connector": "segment",
                "category": "analytics",
                "identifiers": ["user_id"],
                "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
                "mapping": {"destinations": ["Amplitude", "Braze"]},
                "retry": {"initial_interval": "PT1S", "heartbeat": "PT10S"},
                **({"poll": poll} if poll else {}),
            }
        ]
    }


async def run_to_the_end(harness: Harness, order: dict[str, Any], catalogue: dict[str, Any]) -> tuple[str, Any]:
    """Submit and await the request workflow's result: the server skips every timer and retry interval."""
    async with harness.worker():
        submission = await harness.submit(order, catalogue)
        await approve(harness.client, submission.request_id)
        handle = harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        async with harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await skipped_to_the_end(handle)
    return submission.request_id, result


def predicate(envelope: bytes) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    return dict(statement["predicate"])


@pytest.fixture(autouse=True)
def seeded(vendors: Vendors) -> None:
    vendors.segment.profiles = {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}


async def test_a_regulation_that_finishes_after_ten_days_completes_the_request_and_the_key_is_shredded(
    skipping_harness: Harness, vendors: Vendors, tmp_path: Path
) -> None:
    # Segment's job finishes on the 21st poll: 20 intervals of 12 hours is 10 days of the workflow's time.
    vendors.segment.finish_after_polls = 21
    request_id, result = await run_to_the_end(skipping_harness, court_order({"user_id": ["1"]}), segment_catalogue())

    assert result.outcome == "complete"
    ledger = skipping_harness.services.ledger
    task = ledger.task(request_id, "segment")
    assert task.evidence_level == "vendor_attested"
    assert task.vendor_status == "FINISHED"
    assert task.finished_at is not None and task.started_at is not None
    waited = task.finished_at - task.started_at
    assert 9.5 <= waited.total_seconds() / 86400 < 11, waited
    polls = [r for r in vendors.segment.received if r.path.startswith("/segment/regulations/")]
    assert len(polls) == 21
    assert vendors.segment.profiles == {str(p.user_id) for p in NEIGHBOURS}

    # the grace period passed: the request's key is destroyed, and the evidence still verifies
    record = ledger.request(request_id)
    assert record is not None and record.state == "closed"
    with pytest.raises(VaultSealed):
        skipping_harness.services.vault.open(request_id, Vault.SUBJECT)
    assert [e.kind for e in ledger.events(request_id)] == ["previewed", "approved", "shredded"]
    shredded_at = ledger.events(request_id)[-1].at
    assert (shredded_at - task.finished_at).total_seconds() / 86400 >= 30
    bundle = tmp_path / "after-shredding.zip"
    export_bundle(skipping_harness.services, request_id, bundle)
    report = verify_bundle(bundle, trusted_keys=[skipping_harness.services.tlog.signer.public_key])
    assert report.outcome == "complete"


async def test_a_regulation_still_running_past_its_deadline_fails_and_is_escalated(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    vendors.segment.outcome = "NEVER"  # stays RUNNING
    request_id, result = await run_to_the_end(
        skipping_harness, court_order({"user_id": ["1"]}), segment_catalogue(service_time="P30D", deadline="P35D")
    )

    assert result.outcome == "incomplete"
    ledger = skipping_harness.services.ledger
    task = ledger.task(request_id, "segment")
    assert task.evidence_level == "failed"
    assert "still running at the deadline" in task.detail
    assert task.vendor_status == "RUNNING"
    events = {e.kind: e for e in ledger.events(request_id)}
    assert set(events) == {"previewed", "approved", "escalation", "deadline_passed", "shredded"}
    assert events["escalation"].system == "segment"
    # escalated at the 30-day service time and failed at the 35-day deadline, counted from the system's start, each
    # within one poll interval (times on the workflow's clock, which the time-skipping server moves)
    started = (await skipping_harness.client.get_workflow_handle(f"{request_id}/segment").describe()).start_time
    poll = timedelta(hours=POLL_EVERY_HOURS)
    assert abs(events["escalation"].at - (started + timedelta(days=30))) <= poll, events["escalation"].at - started
    assert abs(events["deadline_passed"].at - (started + timedelta(days=35))) <= poll
    assert vendors.segment.profiles >= {str(CHILD.user_id)}  # nothing was erased, and nothing claims it was


async def test_failed_only_for_an_unsupported_destination_is_segment_done_and_the_request_partial(
    skipping_harness: Harness, vendors: Vendors, tmp_path: Path
) -> None:
    vendors.segment.outcome = "FAILED"  # Segment's own systems finished; Braze cannot delete
    braze = vendors.segment.destinations[1].id
    request_id, result = await run_to_the_end(skipping_harness, court_order({"user_id": ["1"]}), segment_catalogue())

    assert result.outcome == "partial"
    task = skipping_harness.services.ledger.task(request_id, "segment")
    assert task.evidence_level == "vendor_attested" and task.vendor_status == "FAILED"
    bundle = tmp_path / "bundle.zip"
    export_bundle(skipping_harness.services, request_id, bundle)
    verify_bundle(bundle, trusted_keys=[skipping_harness.services.tlog.signer.public_key])
    with zipfile.ZipFile(bundle) as archive:
        receipt = predicate(archive.read("receipts/segment.dsse.json"))
        certificate = predicate(archive.read("certificate.dsse.json"))
    assert receipt["residual"] == [f"Braze ({braze})"]
    facts = receipt["vendor_facts"]
    assert facts["scope"] == "segment_and_destinations" and facts["regulation_type"] == "SUPPRESS_WITH_DELETE"
    assert [(facts[f"destination.{n}.name"], facts[f"destination.{n}.status"]) for n in (0, 1)] == [
        ("Amplitude", "FINISHED"),
        ("Braze", "NOT_SUPPORTED"),
    ]
    assert (facts["suppression_checked"], facts["suppressed"], facts["submitted"]) == ("yes", 1, 1)
    assert certificate["outcome"] == "partial" and certificate["systems"][0]["residual"] == [f"Braze ({braze})"]
    assert any(f"Braze ({braze})" in exception for exception in certificate["exceptions"])


async def test_an_exhausted_monthly_quota_is_waited_out_until_its_reset(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    # Only the documented RFC 5322 reset date says when the quota returns; the emulator reads the workflow's clock
    env, loop = skipping_harness.env, asyncio.get_running_loop()
    now = await env.get_current_time()
    reset = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    vendors.segment.clock = lambda: asyncio.run_coroutine_threadsafe(env.get_current_time(), loop).result()
    vendors.segment.wait_signals = frozenset({"reset"})
    vendors.segment.used[("segment_and_destinations", now.strftime("%Y-%m"))] = vendors.segment.monthly_quota

    request_id, result = await run_to_the_end(skipping_harness, court_order({"user_id": ["1"]}), segment_catalogue())

    assert result.outcome == "complete"
    history = await skipping_harness.client.get_workflow_handle(f"{request_id}/segment").fetch_history()
    events = {e.event_id: e for e in history.events}
    (erase,) = [
        e
        for e in history.events
        if e.HasField("activity_task_started_event_attributes")
        and events[
            e.activity_task_started_event_attributes.scheduled_event_id
        ].activity_task_scheduled_event_attributes.activity_type.name
        == "erasure.erase_unless_held"
    ]
    scheduled = events[erase.activity_task_started_event_attributes.scheduled_event_id]
    assert erase.activity_task_started_event_attributes.attempt == 2  # throttled once, then accepted
    waited = erase.event_time.ToDatetime(UTC) - scheduled.event_time.ToDatetime(UTC)
    assert waited >= reset - now - timedelta(minutes=1)  # in the workflow's time: the wait lasted until the reset
    assert len(vendors.segment.regulations) == 1
