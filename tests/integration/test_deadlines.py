"""The request's deadline, watched on the time-skipping server: an operator's extension moves it with its reason and
name, and reminders are recorded at their lead times before the deadline as it stands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

from activities.contracts import RequestResult
from examples.estate import CHILD, NEIGHBOURS
from tests.integration.approval import approve
from tests.integration.conftest import Harness, Vendors, court_order
from tests.servers import skipped_to_the_end
from workflows.request import STATUS_QUERY

# Segment never finishes: the request runs until the system's own 35-day deadline fails it.
NEVER_FINISHING = {
    "systems": [
        {
            "name": "segment",
            "connector": "segment",
            "category": "analytics",
            "identifiers": ["user_id"],
            "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
            "retry": {"initial_interval": "PT1S", "heartbeat": "PT10S"},
            "poll": {"every": "P1D", "service_time": "P30D", "deadline": "P35D"},
        }
    ]
}
REASON = "vendor backlog; the requester was told on day 10"


async def executing(handle: Any) -> None:
    for _ in range(300):
        if (await handle.query(STATUS_QUERY))["phase"] == "executing":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the request never started executing")


async def test_an_extension_moves_the_deadline_with_its_reason_and_the_reminders_follow_it(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    vendors.segment.profiles = {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}
    vendors.segment.outcome = "NEVER"
    ledger = skipping_harness.services.ledger
    env = {**skipping_harness.process_env(), "ERASURE_OPERATOR": "legal-officer-2"}
    async with skipping_harness.worker():
        submission = await skipping_harness.submit(court_order({"user_id": ["1"]}), NEVER_FINISHING)
        request_id = submission.request_id
        handle = skipping_harness.client.get_workflow_handle(request_id, result_type=RequestResult)
        await approve(skipping_harness.client, request_id)
        await executing(handle)
        record = ledger.request(request_id)
        assert record is not None
        # the server's clock runs ahead of the calendar once earlier tests skipped time: extend to ten days after
        # the deadline or the workflow's today, whichever is later, so that both reminders fall within the run
        workflow_today = (await skipping_harness.env.get_current_time()).astimezone(UTC).date()
        new_due = max(record.deadline, workflow_today) + timedelta(days=10)
        days = str((new_due - record.deadline).days)

        refused = await skipping_harness.cli(env, "extend", request_id, "--days", "0", "--reason", REASON)
        assert refused.returncode == 2 and "--days" in refused.stderr, refused.stderr
        extended = await skipping_harness.cli(env, "extend", request_id, "--days", days, "--reason", REASON)
        assert extended.returncode == 0, extended.stderr
        assert extended.stdout.strip() == f"deadline {new_due.isoformat()}"

        async with skipping_harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)

        too_late = await skipping_harness.cli(env, "extend", request_id, "--days", days, "--reason", REASON)
        assert too_late.returncode == 1 and "cannot extend" in too_late.stderr, too_late.stderr

    record = ledger.request(request_id)
    assert record is not None
    assert record.deadline == new_due
    events = ledger.events(request_id)
    assert [e.detail for e in events if e.kind == "extended"] == [
        {"days": int(days), "reason": REASON, "actor": "legal-officer-2"}
    ]
    overdue_from = datetime.combine(new_due + timedelta(days=1), time(), UTC)
    reminders = [e for e in events if e.kind == "deadline_reminder"]
    assert [e.detail for e in reminders] == [
        {"deadline": new_due.isoformat(), "lead_days": "7"},
        {"deadline": new_due.isoformat(), "lead_days": "1"},
    ]
    # each at its lead time before the deadline (the start of the day after it), in the workflow's time
    for event, lead in zip(reminders, (7, 1), strict=True):
        late_by = event.at - (overdue_from - timedelta(days=lead))
        assert timedelta(0) <= late_by < timedelta(minutes=1), late_by
