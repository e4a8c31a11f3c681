"""Vendors that take weeks, on the time-skipping server: durable polling, escalation, deadlines, and the shredding
of the request's key when the 30-day grace period after the certificate has passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from activities.contracts import RequestResult
from erasure.export import export_bundle
from evidence.verify import verify_bundle
from examples.estate import CHILD, NEIGHBOURS
from stores.vault import Vault, VaultSealed
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
                "connection": {"base_url": "${ERASURE_EMULATORS_URL}/segment", "token_env": "SEGMENT_TOKEN"},
                "retry": {"initial_interval": "PT1S", "heartbeat": "PT10S"},
                **({"poll": poll} if poll else {}),
            }
        ]
    }


async def run_to_the_end(harness: Harness, order: dict[str, Any], catalogue: dict[str, Any]) -> tuple[str, Any]:
    """Submit and await the request workflow's result: the server skips every timer and retry interval."""
    async with harness.worker():
        submission = await harness.submit(order, catalogue)
        handle = harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        async with harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await skipped_to_the_end(handle)
    return submission.request_id, result


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
    polls = [r for r in vendors.segment.received if r.method == "GET"]
    assert len(polls) == 21
    assert vendors.segment.profiles == {str(p.user_id) for p in NEIGHBOURS}

    # the grace period passed: the request's key is destroyed, and the evidence still verifies
    record = ledger.request(request_id)
    assert record is not None and record.state == "closed"
    with pytest.raises(VaultSealed):
        skipping_harness.services.vault.open(request_id, Vault.SUBJECT)
    assert [e.kind for e in ledger.events(request_id)] == ["shredded"]
    shredded_at = ledger.events(request_id)[0].at
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
    assert set(events) == {"escalation", "deadline_passed", "shredded"}
    assert events["escalation"].system == "segment"
    # escalated at the last poll before the 30-day service time, failed at the last one before the 35-day deadline
    gap_days = (events["deadline_passed"].at - events["escalation"].at).total_seconds() / 86400
    assert 5 - POLL_EVERY_HOURS / 24 <= gap_days <= 5 + POLL_EVERY_HOURS / 24
    assert vendors.segment.profiles >= {str(CHILD.user_id)}  # nothing was erased, and nothing claims it was


async def test_a_failed_regulation_fails_the_system_with_the_destination_named(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    vendors.segment.outcome = "FAILED"
    request_id, result = await run_to_the_end(skipping_harness, court_order({"user_id": ["1"]}), segment_catalogue())
    assert result.outcome == "incomplete"
    task = skipping_harness.services.ledger.task(request_id, "segment")
    assert task.evidence_level == "failed"
    assert task.vendor_status == "FAILED"
    assert task.detail
