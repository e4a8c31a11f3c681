"""Meta applies audience removals hours after it accepts them: durable polling on the time-skipping server, the
receipt's typed facts, and vendor answers that echo the child's identifiers or carry invalid Unicode."""

from __future__ import annotations

import json
from typing import Any

import pytest

from activities.contracts import RequestResult
from connectors.hashing import meta_email, meta_phone, sha256_hex
from evidence.dsse import Envelope
from evidence.statement import parse_statement
from examples.estate import CHILD, NEIGHBOURS
from tests.integration.approval import approve
from tests.integration.conftest import Harness, Vendors, court_order
from tests.servers import skipped_to_the_end

AUDIENCE = "23850000000000007"
POLL_EVERY_HOURS = 4  # the connector's default
CHILD_HASHES = (sha256_hex(meta_email(CHILD.email or "")), sha256_hex(meta_phone(CHILD.phone or "", "44")))
NEIGHBOUR_MEMBERS = {(sha256_hex(meta_email(p.email or "")),) for p in NEIGHBOURS[1:]}
IDENTIFIERS = (CHILD.email or "", CHILD.phone or "", *CHILD_HASHES)


def meta_catalogue() -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "meta_audiences",
                "connector": "meta_audiences",
                "category": "ad_targeting",
                "identifiers": ["email", "phone"],
                "connection": {"base_url_env": "ERASURE_META_URL", "access_token_env": "META_ACCESS_TOKEN"},
                "mapping": {
                    "audiences": [{"id": AUDIENCE, "schema": ["EMAIL", "PHONE"]}],
                    "default_country_code": "44",
                },
                "retry": {"initial_interval": "PT1S", "heartbeat": "PT10S"},
            }
        ]
    }


@pytest.fixture(autouse=True)
def seeded(vendors: Vendors) -> None:
    vendors.meta.audiences = {AUDIENCE: {CHILD_HASHES, *NEIGHBOUR_MEMBERS}}
    vendors.meta.processing_time = None  # the emulator's clock does not skip: count the workflow's polls instead


async def run_to_the_end(harness: Harness) -> tuple[str, Any]:
    order = court_order({"email": [CHILD.email or ""], "phone": [CHILD.phone or ""]})
    async with harness.worker():
        submission = await harness.submit(order, meta_catalogue())
        await approve(harness.client, submission.request_id)
        handle = harness.client.get_workflow_handle(submission.request_id, result_type=RequestResult)
        async with harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await skipped_to_the_end(handle)
    return submission.request_id, result


def receipt_predicate(harness: Harness, request_id: str) -> dict[str, Any]:
    with harness.services.ledger.pool.connection() as conn:
        row = conn.execute(
            "SELECT envelope FROM receipts WHERE request_id = %s AND system = 'meta_audiences' AND action = 'erase'",
            [request_id],
        ).fetchone()
    assert row is not None
    predicate: dict[str, Any] = parse_statement(Envelope.from_json(bytes(row[0])).payload)["predicate"]
    return predicate


def assert_no_identifier(*texts: object) -> None:
    for text in texts:
        assert not any(value.lower() in str(text).lower() for value in IDENTIFIERS), text


async def test_meta_is_attested_after_hours_of_durable_polling(skipping_harness: Harness, vendors: Vendors) -> None:
    # Meta reports the session processed on the 8th read: 7 intervals of 4 hours is 28 hours of the workflow's time.
    vendors.meta.finish_after_polls = 8
    request_id, result = await run_to_the_end(skipping_harness)

    assert result.outcome == "complete"
    task = skipping_harness.services.ledger.task(request_id, "meta_audiences")
    assert task.evidence_level == "vendor_attested"
    assert task.vendor_status == "processed"
    assert task.finished_at is not None and task.started_at is not None
    waited_hours = (task.finished_at - task.started_at).total_seconds() / 3600
    assert 7 * POLL_EVERY_HOURS - 1 <= waited_hours < 8 * POLL_EVERY_HOURS, waited_hours
    polls = [call for call in vendors.meta.calls if call.method == "GET"]
    assert len(polls) == 8
    assert vendors.meta.audiences[AUDIENCE] == NEIGHBOUR_MEMBERS  # the child is gone, the neighbours are not

    facts = receipt_predicate(skipping_harness, request_id)["vendor_facts"]
    assert facts["api_version"] == "v25.0" and facts["rows_sent"] == 2 and facts["num_received"] == 2
    assert facts[f"{AUDIENCE}.stage"] == "finished" and facts[f"{AUDIENCE}.progress"] == 100
    assert facts[f"{AUDIENCE}.num_matched"] == 1


async def test_a_session_never_processed_is_escalated_then_failed_at_the_deadline(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    request_id, result = await run_to_the_end(skipping_harness)  # neither a processing time nor a poll count

    assert result.outcome == "incomplete"
    ledger = skipping_harness.services.ledger
    task = ledger.task(request_id, "meta_audiences")
    assert task.evidence_level == "failed" and "still running at the deadline (7 days)" in task.detail
    assert task.vendor_status == "processing"
    events = {e.kind: e for e in ledger.events(request_id)}
    assert {"escalation", "deadline_passed"} <= set(events)
    assert events["escalation"].detail["after_days"] == "2"
    assert CHILD_HASHES in vendors.meta.audiences[AUDIENCE]  # nothing was removed, and nothing claims it was


async def test_sessions_echoing_the_identifiers_end_failed_with_no_identifier_recorded(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    vendors.meta.finish_after_polls = 2
    vendors.meta.echo, vendors.meta.corrupt = IDENTIFIERS, frozenset({"sessions"})
    request_id, result = await run_to_the_end(skipping_harness)

    assert result.outcome == "incomplete"
    task = skipping_harness.services.ledger.task(request_id, "meta_audiences")
    assert task.evidence_level == "failed"  # an answer that never reads as processed is never success
    predicate = receipt_predicate(skipping_harness, request_id)
    assert_no_identifier(task, json.dumps(predicate), result)


async def test_lone_surrogates_in_a_session_answer_fail_the_system_at_once(
    skipping_harness: Harness, vendors: Vendors
) -> None:
    vendors.meta.finish_after_polls = 2
    vendors.meta.lone_surrogates, vendors.meta.corrupt = True, frozenset({"sessions"})
    request_id, result = await run_to_the_end(skipping_harness)

    assert result.outcome == "incomplete"
    task = skipping_harness.services.ledger.task(request_id, "meta_audiences")
    assert task.evidence_level == "failed" and "invalid unicode" in task.detail
    assert len([call for call in vendors.meta.calls if call.method == "GET"]) == 1  # terminal: not retried
    assert receipt_predicate(skipping_harness, request_id)["evidence_level"] == "failed"
