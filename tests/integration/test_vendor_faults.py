"""Vendors that throttle and fail for a while, on the real dev server: the workflow waits as told and retries only
what retrying can help, on each vendor's own rate-limited task queue."""

from __future__ import annotations

from typing import Any

from connectors.hashing import meta_email, sha256_hex
from examples.estate import CHILD, NEIGHBOURS
from tests.integration.approval import approve
from tests.integration.conftest import Harness, Vendors, court_order

AUDIENCE = "23850000000000042"
FAST = {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S"}


def vendor_catalogue() -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "segment",
                "connector": "segment",
                "category": "analytics",
                "identifiers": ["user_id"],
                "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
                "poll": {"every": "PT0.5S"},
                "retry": FAST,
            },
            {
                "name": "meta_ads",
                "connector": "meta_audiences",
                "category": "ad_targeting",
                "identifiers": ["email"],
                "connection": {"base_url_env": "ERASURE_META_URL", "access_token_env": "META_ACCESS_TOKEN"},
                "mapping": {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL"]}]},
                "poll": {"every": "PT0.5S"},
                "retry": FAST,
            },
        ]
    }


def seed(vendors: Vendors) -> None:
    vendors.segment.profiles = {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}
    vendors.segment.finish_after_polls = 1
    vendors.meta.finish_after_polls = 1
    vendors.meta.audiences = {AUDIENCE: {(sha256_hex(meta_email(p.email or "")),) for p in (CHILD, *NEIGHBOURS[1:])}}


async def test_throttling_and_server_errors_are_waited_out_then_the_request_completes(
    harness: Harness, vendors: Vendors
) -> None:
    seed(vendors)
    vendors.segment.fail_next_with = [429, 503]  # throttled (Retry-After: 1), then a server error
    vendors.meta.fail_next_with = [17, 613, 502]  # Graph throttling codes (HTTP 400), then a bad gateway
    vendors.meta.regain_access_minutes = 0  # Meta says when access returns; here at once

    status = await harness.run(
        court_order({"user_id": [str(CHILD.user_id)], "email": [CHILD.email]}), vendor_catalogue()
    )

    levels = {s["system"]: s["evidence_level"] for s in status["systems"]}
    assert levels == {"segment": "vendor_attested", "meta_ads": "vendor_attested"}
    assert status["outcome"] == "complete"
    posts = [r for r in vendors.segment.received if r.method == "POST"]
    assert len(posts) == 1  # 429 and 503 answer the look for an earlier regulation; then one is created, once
    assert len(vendors.segment.regulations) == 1
    assert vendors.meta.fail_next_with == [] and vendors.segment.fail_next_with == []  # every fault was served
    assert len(vendors.meta.received) == 1  # the emulator records the removal it accepted: once
    assert vendors.segment.profiles == {str(p.user_id) for p in NEIGHBOURS}
    assert vendors.meta.audiences[AUDIENCE] == {(sha256_hex(meta_email(p.email or "")),) for p in NEIGHBOURS[1:]}


async def test_a_refusal_is_recorded_with_its_reason_and_not_retried(harness: Harness, vendors: Vendors) -> None:
    seed(vendors)
    vendors.segment.token = "another-workspace-token"  # our token is refused: 401
    status = await harness.run(
        court_order({"user_id": [str(CHILD.user_id)], "email": [CHILD.email]}), vendor_catalogue()
    )

    segment = {s["system"]: s for s in status["systems"]}["segment"]
    assert segment["evidence_level"] == "failed"
    assert "401" in segment["detail"]
    assert len(vendors.segment.received) == 1  # terminal: tried once
    assert status["outcome"] == "incomplete"


async def test_vendor_activities_run_on_the_vendors_own_task_queue(harness: Harness, vendors: Vendors) -> None:
    seed(vendors)
    async with harness.worker():
        submission = await harness.submit(court_order({"user_id": [str(CHILD.user_id)]}), vendor_catalogue())
        await approve(harness.client, submission.request_id)
        await harness.wait_certified(submission.request_id)
    history = await harness.client.get_workflow_handle(f"{submission.request_id}/segment").fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    queues = {a.activity_type.name: a.task_queue.name for a in scheduled}
    vendor_queue = f"{harness.config.task_queue}-segment"
    assert queues["erasure.erase_unless_held"] == vendor_queue
    assert queues["erasure.poll"] == vendor_queue
    assert queues["erasure.record_receipt"] == harness.config.task_queue  # the ledger's work is not rate-limited


async def test_a_vendor_failing_maximum_attempts_times_ends_failed_with_the_reason_and_is_not_called_again(
    harness: Harness, vendors: Vendors
) -> None:
    seed(vendors)
    vendors.segment.fail_next_with = [503, 503, 503, 503]  # one more than the attempts allowed: never served
    catalogue = vendor_catalogue()
    # the budget is far longer than three quick retries: only the count of the vendor's errors can end them
    catalogue["systems"][0]["retry"] = {**FAST, "maximum_attempts": 3, "schedule_to_close": "PT10M"}

    status = await harness.run(court_order({"user_id": [str(CHILD.user_id)], "email": [CHILD.email]}), catalogue)

    systems = {s["system"]: s for s in status["systems"]}
    assert systems["segment"]["evidence_level"] == "failed"
    assert "503" in systems["segment"]["detail"]
    assert "gave up: 3 errors of the system, its maximum_attempts is 3" in systems["segment"]["detail"]
    assert vendors.segment.fail_next_with == [503]  # three calls, one per attempt, then none
    assert vendors.segment.regulations == {}
    assert vendors.segment.profiles == {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}
    assert systems["meta_ads"]["evidence_level"] == "vendor_attested"  # the other system is not held back
    assert status["outcome"] == "incomplete"
