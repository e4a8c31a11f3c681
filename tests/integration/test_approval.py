"""Preview and four-eyes approval, on the time-skipping server: a court order locates only and waits, durably, for a
second operator. The submitter's approval is refused and changes nothing; a second operator's lets it finish
certified; a rejection ends it `rejected` and a cancellation `cancelled`, each with its reason and a signed record,
nothing erased, the child's identifiers shredded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.contracts import OperatorDecision, RequestResult
from evidence import notary
from evidence.dsse import Envelope
from evidence.statement import DECISION_PREDICATE_TYPE, parse_statement
from examples.estate import CHILD, count_rows
from stores.vault import Vault
from tests.integration.approval import SUBMITTER, awaiting_approval
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys
from tests.integration.shredding import assert_shredded
from tests.servers import skipped_to_the_end
from workflows.request import APPROVE_UPDATE, STATUS_QUERY


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


def logged(harness: Harness, request_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r.system, r.action): parse_statement(Envelope.from_json(r.envelope).payload)
        for r in harness.services.tlog.receipts(request_id)
    }


def rows(database_url: str, schema: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return count_rows(conn, schema)


async def test_a_court_order_waits_for_a_second_operator_and_the_submitter_cannot_approve_it(
    skipping_harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    before = rows(database_url, schema)
    h = skipping_harness
    ledger = h.services.ledger
    submitter = {**h.process_env(), "ERASURE_OPERATOR": SUBMITTER}
    approver = {**h.process_env(), "ERASURE_OPERATOR": "approver-two"}
    async with h.worker():
        submission = await h.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
        request_id = submission.request_id
        handle = h.client.get_workflow_handle(request_id, result_type=RequestResult)
        await awaiting_approval(h.client, request_id)
        await h.env.sleep(timedelta(days=20))  # durable: weeks pass, and it still waits
        assert (await handle.query(STATUS_QUERY))["phase"] == "awaiting approval"

        shown = await h.cli(submitter, "preview", request_id)
        assert shown.returncode == 0, shown.stderr
        assert "submitted by submitter-one" in shown.stdout
        assert "app_db" in shown.stdout and "comments 6" in shown.stdout and "near-matches: 0" in shown.stdout

        refused = await h.cli(submitter, "approve", request_id)
        assert refused.returncode == 1 and "four eyes" in refused.stderr, refused.stderr
        with pytest.raises(WorkflowUpdateFailedError):  # in any spelling of the same name
            await handle.execute_update(APPROVE_UPDATE, OperatorDecision(actor=" Submitter-One "))
        record = ledger.request(request_id)
        assert record is not None and record.state == "awaiting_approval"
        assert not [e for e in ledger.events(request_id) if e.kind == "approved"]
        assert (notary.REQUEST_SYSTEM, "approval") not in logged(h, request_id)
        assert rows(database_url, schema) == before  # located only: nothing erased

        approved = await h.cli(approver, "approve", request_id)
        assert approved.returncode == 0, approved.stderr
        assert approved.stdout.strip() == "approved by approver-two"
        async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await skipped_to_the_end(handle)

    assert result.outcome == "complete"
    record = ledger.request(request_id)
    assert record is not None and record.state == "closed" and record.submitted_by == SUBMITTER
    assert rows(database_url, schema) == {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
    statements = logged(h, request_id)
    decision = statements[(notary.REQUEST_SYSTEM, "approval")]
    assert decision["predicateType"] == DECISION_PREDICATE_TYPE
    facts = decision["predicate"]
    assert (facts["decision"], facts["actor"], facts["submitted_by"]) == ("approved", "approver-two", SUBMITTER)
    assert facts["located"] == {"app_db": 18, "uploads": 8}
    approval = statements[(notary.REQUEST_SYSTEM, notary.CERTIFICATE)]["predicate"]["approval"]
    assert (approval["submitted_by"], approval["approved_by"]) == (SUBMITTER, "approver-two")
    events = [e for e in ledger.events(request_id) if e.kind == "approved"]
    assert [e.detail["actor"] for e in events] == ["approver-two"]
    assert approval["approved_at"] == events[0].at.isoformat()


@pytest.mark.parametrize("verb", ["reject", "cancel"])
async def test_a_rejection_or_cancellation_ends_the_request_with_its_reason_and_a_signed_record(
    verb: str, skipping_harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    before = rows(database_url, schema)
    h = skipping_harness
    ledger = h.services.ledger
    # the submitter may stop the request: only approving needs a second pair of eyes
    env = {**h.process_env(), "ERASURE_OPERATOR": SUBMITTER}
    reason = "the order was set aside on appeal"
    ended = {"reject": "rejected", "cancel": "cancelled"}[verb]
    async with h.worker():
        submission = await h.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
        request_id = submission.request_id
        handle = h.client.get_workflow_handle(request_id, result_type=RequestResult)
        await awaiting_approval(h.client, request_id)

        no_reason = await h.cli(env, verb, request_id, "--reason", " ")
        assert no_reason.returncode == 2 and "--reason" in no_reason.stderr, no_reason.stderr
        done = await h.cli(env, verb, request_id, "--reason", reason)
        assert done.returncode == 0, done.stderr
        async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await skipped_to_the_end(handle)
        too_late = await h.cli({**env, "ERASURE_OPERATOR": "approver-two"}, "approve", request_id)
        assert too_late.returncode == 1, too_late.stderr

    assert result.outcome == ended and result.systems == []
    record = ledger.request(request_id)
    assert record is not None and record.state == ended
    assert [(e.detail["actor"], e.detail["reason"]) for e in ledger.events(request_id) if e.kind == ended] == [
        (SUBMITTER, reason)
    ]
    statements = logged(h, request_id)
    action = notary.DECISION_ACTIONS[ended]
    # no receipt of an erasure, no certificate: the decision, then the child's identifiers shredded
    assert set(statements) == {(notary.REQUEST_SYSTEM, action), (notary.REQUEST_SYSTEM, notary.SHRED)}
    leaves = {r.action: r.leaf_index for r in h.services.tlog.receipts(request_id)}
    assert leaves[action] < leaves[notary.SHRED]
    assert_shredded(h.services, request_id, Vault.SUBJECT, ended)
    facts = statements[(notary.REQUEST_SYSTEM, action)]["predicate"]
    assert (facts["decision"], facts["actor"], facts["reason"]) == (ended, SUBMITTER, reason)
    assert rows(database_url, schema) == before
    assert surviving_keys(s3_client, bucket_name) >= neighbour_keys() | {f"avatars/{CHILD.user_id}.jpg"}
