"""The ledger's named transitions, read back through the status report whose JSON `erasure status --json` prints."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import ConnectionPool
from typer.testing import CliRunner

from domain.states import RequestState, TaskState
from erasure.cli import app
from erasure.status import request_status, today
from stores.db import migrate, open_pool
from stores.ledger import Ledger

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
LATER = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)


@pytest.fixture
def ledger(database_url: str, schema: str) -> Iterator[Ledger]:
    migrate(database_url, schema)
    pool: ConnectionPool = open_pool(database_url, schema)
    yield Ledger(pool)
    pool.close()


def new_request(ledger: Ledger, kind: str = "court_order", deadline: date = date(2026, 12, 18)) -> str:
    request_id = str(uuid.uuid4())
    record = {
        "request_id": request_id,
        "kind": kind,
        "legal_basis": "UK GDPR Art. 17(1)",
        "reference": "High Court, claim KB-2026-000123",
        "requester": {"role": "court"},
        "received_on": date(2026, 11, 20),
        "deadline": deadline,
        "scope": "all",
        "catalogue_sha256": "0" * 64,
        "order_digest": request_id,
        "submitted_by": "submitter-one",
    }
    with ledger.pool.connection() as conn, conn.transaction():
        ledger.create_request(conn, record, {"systems": []})
        ledger.add_task(conn, request_id, "app_db", "storage", "postgres")
        ledger.add_task(conn, request_id, "segment", "analytics", "segment")
        ledger.add_task(conn, request_id, "crm", "storage", "postgres", TaskState.NOT_APPLICABLE, "no email given")
    return request_id


def test_transitions_take_a_request_to_certified_and_the_report_keeps_its_json_shape(ledger: Ledger) -> None:
    request_id = new_request(ledger)
    ledger.executing(request_id)
    ledger.locating(request_id, "app_db", AT)
    ledger.located(request_id, "app_db", total=5, counts={"users": 1, "videos": 4}, note="")
    ledger.erased(
        request_id,
        "app_db",
        deleted=5,
        blocked=0,
        key_commitment="ab" * 32,
        key_count=5,
        vendor_job_id=None,
        vendor_status=None,
        vendor_facts={},
        detail="deleted 5 rows",
    )
    ledger.verified(request_id, "app_db", records_after=0, counts_after={"users": 0, "videos": 0}, vendor_facts={})
    ledger.done(
        request_id, "app_db", evidence_level="verified_absent", detail="none left", started_at=AT, finished_at=LATER
    )
    ledger.locating(request_id, "segment", AT)
    ledger.located(request_id, "segment", total=0, counts={}, note="the vendor cannot be searched")
    ledger.erased(
        request_id,
        "segment",
        deleted=0,
        blocked=0,
        key_commitment=None,
        key_count=0,
        vendor_job_id="job-1",
        vendor_status="INITIALIZED",
        vendor_facts={"api_version": "v25.0", "stage": "started"},
        detail="",
    )
    waiting = {s.system: s.state for s in request_status(ledger, request_id).systems}["segment"]
    ledger.polled(request_id, "segment", vendor_status="RUNNING", vendor_facts={"stage": "running"}, finished=False)
    ledger.polled(request_id, "segment", vendor_status="FINISHED", vendor_facts={"stage": "finished"}, finished=True)
    ledger.record_event(request_id, "segment", "escalation", "escalation:segment", LATER, {"after_days": "30"})
    ledger.certified(request_id, "incomplete")

    report = request_status(ledger, request_id)

    assert waiting is TaskState.WAITING_VENDOR
    assert report.state is RequestState.CERTIFIED and report.state.settled
    timeline = report.to_json().pop("timeline")
    assert [(s["state"], s["actor"]) for s in timeline] == [
        ("received", "intake"),
        ("executing", "orchestrator"),
        ("certified", "orchestrator"),
    ]
    assert {k: v for k, v in report.to_json().items() if k != "timeline"} == {
        "request_id": request_id,
        "kind": "court_order",
        "legal_basis": "UK GDPR Art. 17(1)",
        "reference": "High Court, claim KB-2026-000123",
        "received_on": "2026-11-20",
        "deadline": "2026-12-18",
        "state": "certified",
        "days_overdue": 0,
        "outcome": "incomplete",
        "systems": [
            {
                "system": "app_db",
                "category": "storage",
                "connector": "postgres",
                "state": "done",
                "evidence_level": "verified_absent",
                "records_before": 5,
                "records_after": 0,
                "deleted": 5,
                "blocked": 0,
                "vendor_job_id": None,
                "vendor_status": None,
                "detail": "none left",
                "started_at": AT.isoformat(),
                "finished_at": LATER.isoformat(),
            },
            {
                "system": "crm",
                "category": "storage",
                "connector": "postgres",
                "state": "not_applicable",
                "evidence_level": None,
                "records_before": None,
                "records_after": None,
                "deleted": None,
                "blocked": 0,
                "vendor_job_id": None,
                "vendor_status": None,
                "detail": "no email given",
                "started_at": None,
                "finished_at": None,
            },
            {
                "system": "segment",
                "category": "analytics",
                "connector": "segment",
                "state": "verifying",
                "evidence_level": None,
                "records_before": 0,
                "records_after": None,
                "deleted": 0,
                "blocked": 0,
                "vendor_job_id": "job-1",
                "vendor_status": "FINISHED",
                "detail": "",
                "started_at": AT.isoformat(),
                "finished_at": None,
            },
        ],
        "events": [
            {"system": "segment", "kind": "escalation", "detail": {"after_days": "30"}, "at": LATER.isoformat()}
        ],
        "progress": [],  # a class order's progress per system; a single request has none
    }
    task = ledger.task(request_id, "app_db")
    assert (task.counts_before, task.counts_after) == ({"users": 1, "videos": 4}, {"users": 0, "videos": 0})
    assert (task.key_commitment, task.key_count) == ("ab" * 32, 5)
    # the erasure's facts, updated by those of the vendor's final answer only
    assert ledger.task(request_id, "segment").vendor_facts == {"api_version": "v25.0", "stage": "finished"}


def test_a_shredded_request_is_closed(ledger: Ledger) -> None:
    request_id = new_request(ledger)
    ledger.certified(request_id, "complete")
    ledger.closed(request_id)

    report = request_status(ledger, request_id)

    assert (report.state, report.outcome) == (RequestState.CLOSED, "complete")


def test_a_task_changes_only_through_named_transitions() -> None:
    """No public method of the ledger takes arbitrary column changes (`**changes`)."""
    for name, method in inspect.getmembers(Ledger, inspect.isfunction):
        if not name.startswith("_"):
            kinds = {p.kind for p in inspect.signature(method).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name


def test_list_filters_by_state_kind_and_overdue_and_shows_the_delay(
    ledger: Ledger, database_url: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_past = date(2020, 1, 6)  # any day after it is later: the request is overdue whenever the test runs
    late = new_request(ledger, kind="guardian_request", deadline=long_past)
    late_but_certified = new_request(ledger, kind="guardian_request", deadline=long_past)
    ledger.certified(late_but_certified, "complete")
    executing = new_request(ledger, deadline=date(2999, 1, 1))
    ledger.executing(executing)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_LEDGER_SCHEMA", schema)
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))

    def listed(*options: str) -> dict[str, dict[str, Any]]:
        result = CliRunner().invoke(app, ["list", "--json", *options])
        assert result.exit_code == 0, result.output
        return {row["request_id"]: row for row in json.loads(result.stdout)}

    overdue = listed("--overdue")
    assert set(overdue) == {late}
    assert overdue[late]["days_overdue"] == (today() - long_past).days
    assert request_status(ledger, late).days_overdue == overdue[late]["days_overdue"]
    assert listed()[late_but_certified]["days_overdue"] == 0
    assert set(listed("--state", "executing")) == {executing}
    assert set(listed("--kind", "guardian_request")) == {late, late_but_certified}
    assert set(listed("--kind", "guardian_request", "--state", "certified")) == {late_but_certified}


def test_every_state_change_joins_the_timeline_once_with_its_actor_and_reason(ledger: Ledger) -> None:
    request_id = new_request(ledger)
    ledger.executing(request_id)
    ledger.executing(request_id)  # a retried activity: the request is already there, the timeline unchanged
    ledger.notifying_recipients(request_id, 2)
    ledger.failed(request_id, "cannot certify: the ledger was down", AT)

    steps = ledger.timeline(request_id)

    assert [(s.state, s.actor, s.reason) for s in steps] == [
        ("received", "intake", "submitted"),
        ("executing", "orchestrator", "planned: the systems in scope run"),
        ("notifying_recipients", "orchestrator", "2 to tell"),
        ("failed", "orchestrator", "cannot certify: the ledger was down"),
    ]
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    assert request_status(ledger, request_id).to_json()["timeline"][-1]["state"] == "failed"


def test_side_states_join_the_timeline_once_without_changing_the_state(ledger: Ledger) -> None:
    request_id = new_request(ledger)
    ledger.executing(request_id)
    detail = {"days": 10, "reason": "the vendor needs more time", "actor": "dpo-one"}
    for _ in range(2):  # a retried activity extends nothing twice and adds no second row
        ledger.extend(request_id, 10, "extended:1", AT, detail)
    ledger.on_hold(request_id, "partial", ["KB-2026-000999"])
    ledger.on_hold(request_id, "partial", ["KB-2026-000999"])

    steps = [(s.state, s.actor, s.reason) for s in ledger.timeline(request_id)]

    extended = [s for s in steps if s[0] == "extended"]
    assert len(extended) == 1 and extended[0][1] == "dpo-one"
    assert extended[0][2].startswith("deadline moved by 10 days to ") and "the vendor needs more time" in extended[0][2]
    refused = [s for s in steps if s[0] == "partially_refused"]
    assert len(refused) == 1 and "Art. 17(3)(e)" in refused[0][2] and "KB-2026-000999" in refused[0][2]
    assert ledger.request(request_id).state == "on_hold"
