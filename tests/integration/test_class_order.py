"""Class orders end to end on the real dev server and Postgres: a class resolved at a snapshot, its boundary
neighbours untouched, batches per system with one receipt each, continue-as-new, pause and resume."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from activities.class_order import SEALED_CLASS, tlog_name
from activities.contracts import OperatorDecision
from domain.classes import batch_count
from erasure.class_intake import resolve_class, submit_class, validate_class
from erasure.export import export_bundle
from erasure.status import request_status
from evidence._json import canonical
from evidence.batch_receipt import batch_path
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from evidence.errors import VerificationError
from evidence.verify import verify_bundle
from tests.integration.approval import SUBMITTER, approve, awaiting_approval
from tests.integration.conftest import Harness
from tests.integration.shredding import assert_shredded
from workflows.class_order import BATCHES_PER_RUN, CANCEL_UPDATE, PAUSE_UPDATE, PROGRESS_QUERY, RESUME_UPDATE
from workflows.request import APPROVE_UPDATE, REJECT_UPDATE

CUTOFF = date(2026, 11, 1)
CHILDREN = 1200  # under 13 on the cutoff, tenant "uk"


def born(years_before: int, days: int = 0) -> date:
    return date(CUTOFF.year - years_before, CUTOFF.month, CUTOFF.day) + timedelta(days=days)


def plant(database_url: str, schema: str, children: int = CHILDREN) -> dict[str, list[int]]:
    """Children of the class and their neighbours: a 13th birthday on the cutoff, another tenant, look-alike ids."""
    groups: dict[str, list[int]] = {"child": [], "birthday_on_cutoff": [], "other_tenant": [], "older": []}
    rows = []
    for n in range(children):
        uid = 1 + n
        rows.append((uid, f"kid{uid}@example.org", born(12, -(n % 300)), "uk"))
        groups["child"].append(uid)
    for n in range(20):
        uid = 10_000 + n  # born exactly 13 years before the cutoff: 13 on the day, outside the class
        rows.append((uid, f"kid{1 + n}@example.org.uk", born(13), "uk"))
        groups["birthday_on_cutoff"].append(uid)
    for n in range(20):
        uid = 20_000 + n
        rows.append((uid, f"Kid{1 + n}@example.org", born(12), "us"))  # same age, other tenant, case look-alike
        groups["other_tenant"].append(uid)
    for n in range(20):
        uid = 10 * (1 + n) + 100_000  # look-alike ids: a prefix of a child's id never reaches them
        rows.append((uid, f"teen{n}@example.org", born(15), "uk"))
        groups["older"].append(uid)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {s}.users (id bigint PRIMARY KEY, email text, birth_date date NOT NULL, tenant text); "
                "CREATE TABLE {s}.videos (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES {s}.users (id))"
            ).format(s=sql.Identifier(schema))
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {}.users VALUES (%s, %s, %s, %s)").format(sql.Identifier(schema)), rows
            )
            cur.execute(
                sql.SQL("INSERT INTO {s}.videos (user_id) SELECT id FROM {s}.users, generate_series(1, 2)").format(
                    s=sql.Identifier(schema)
                )
            )
    return groups


def catalogue(schema: str, batch_size: int) -> dict[str, Any]:
    fast = {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S"}
    return {
        "systems": [
            {
                "name": "app_db",
                "connector": "postgres",
                "category": "storage",
                "identifiers": ["user_id", "email"],
                "connection": {"dsn_env": "APP_DATABASE_URL"},
                "mapping": {
                    "schema": schema,
                    "subject": {"table": "users", "key": "id", "match": {"user_id": "id", "email": "email"}},
                    "tables": [{"table": "videos", "key": "id", "references": {"user_id": "users"}}],
                },
                "retry": fast,
                "batch_size": batch_size,
            }
        ],
        "identity_sources": [
            {"name": "accounts", "system": "app_db", "table": "users", "columns": {"user_id": "id", "email": "email"}}
        ],
        "classes": [
            {
                "name": "under_13",
                "source": "accounts",
                "birth_date_column": "birth_date",
                "under_years": 13,
                "where": {"tenant": "uk"},
            }
        ],
        "max_concurrency": 8,
    }


def order() -> dict[str, Any]:
    received = datetime.now(UTC).date() - timedelta(days=3)
    return {
        "kind": "class_order",
        "legal_basis": "Consent decree; COPPA 312.10",
        "received": received.isoformat(),
        "deadline": (received + timedelta(days=60)).isoformat(),
        "regulator": "Federal Trade Commission",
        "subjects": {"class": "under_13", "cutoff": CUTOFF.isoformat()},
    }


def remaining(database_url: str, schema: str, ids: list[int]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.users WHERE id = ANY(%s)").format(sql.Identifier(schema)), [ids]
        ).fetchone()
    assert row is not None
    return int(row[0])


async def submit(harness: Harness, schema: str, batch_size: int) -> tuple[str, int]:
    order_path = harness.write_yaml("class-order.yaml", order())
    catalogue_path = harness.write_yaml("systems.yaml", catalogue(schema, batch_size))
    parsed, systems = validate_class(order_path, catalogue_path)
    resolved = resolve_class(order_path, parsed, systems)
    submission = await submit_class(harness.services, harness.client, parsed, systems, resolved)
    return submission.request_id, submission.subjects


async def settled(harness: Harness, handle: WorkflowHandle[Any, Any], request_id: str) -> int:
    """How many batches the order has started, once each of them is done."""
    for _ in range(600):
        progress = await handle.query(PROGRESS_QUERY)
        done = sum(1 for b in harness.services.classes.batches(request_id) if b.state == "done")
        if progress["phase"] == "executing" and done == progress["started"]:
            return done
        await asyncio.sleep(0.2)
    raise AssertionError(f"the started batches never finished: {progress}, {done} done")


@pytest.fixture
def app_schema(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    return f"app_{uuid.uuid4().hex[:12]}"


async def test_a_class_is_erased_in_batches_and_its_neighbours_survive(
    harness: Harness, database_url: str, app_schema: str, tmp_path: Path
) -> None:
    groups = plant(database_url, app_schema)
    batch_size = 10  # 120 batches: more than one run of the order's workflow
    async with harness.worker():
        request_id, count = await submit(harness, app_schema, batch_size)
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id, timeout_s=240)
    assert count == CHILDREN
    assert status["state"] == "certified" and status["outcome"] == "complete"
    assert remaining(database_url, app_schema, groups["child"]) == 0
    for neighbours in ("birthday_on_cutoff", "other_tenant", "older"):
        assert remaining(database_url, app_schema, groups[neighbours]) == 20, neighbours

    batches = harness.services.classes.batches(request_id)
    assert len(batches) == batch_count(CHILDREN, batch_size) > BATCHES_PER_RUN
    assert sum(b.subjects for b in batches) == CHILDREN
    assert sum(b.records_before or 0 for b in batches) == CHILDREN * 3  # the user and two videos each
    assert all(b.records_after == 0 and b.evidence_level == "verified_absent" for b in batches)
    receipts = [r for r in harness.services.tlog.receipts(request_id) if r.action == "erase"]
    assert sorted(r.system for r in receipts) == sorted(tlog_name(b.system, b.batch) for b in batches)
    by_name = {r.system: r.envelope for r in receipts}
    for b in batches[:3]:
        statement = json.loads(Envelope.from_json(by_name[tlog_name(b.system, b.batch)]).payload)
        assert statement["subject"][0]["digest"]["rfc9162_sha256"] == b.batch_root.hex()

    progress = request_status(harness.services.ledger, request_id).progress
    assert [(p.system, p.batches_done, p.subjects_done) for p in progress] == [("app_db", len(batches), CHILDREN)]
    assert progress[0].subjects_per_s and progress[0].seconds_left == 0

    signer = harness.services.tlog.signer
    bundle = export_bundle(harness.services, request_id, tmp_path / "bundle.zip")
    assert sorted(bundle.receipts) == sorted(batch_path(b.system, b.batch) for b in batches)
    verified = verify_bundle(tmp_path / "bundle.zip", trusted_keys=[signer.public_key])
    assert verified.outcome == "complete"
    # the operator's own key re-signs a certificate without the last batch: the class's count gives it away
    statement = json.loads(Envelope.from_json(bundle.certificate).payload)
    last = batch_path("app_db", len(batches) - 1)
    statement["subject"] = [s for s in statement["subject"] if s["name"] != last]
    statement["predicate"]["class"]["batches"]["app_db"] -= 1
    forged = dataclasses.replace(
        bundle,
        certificate=sign_envelope(canonical(statement), IN_TOTO_PAYLOAD_TYPE, signer).to_json(),
        receipts={path: r for path, r in bundle.receipts.items() if path != last},
        proofs={path: p for path, p in bundle.proofs.items() if path != last},
    )
    forged.sign(signer)
    forged.write(tmp_path / "forged.zip")
    with pytest.raises(VerificationError, match="batches hold another number of subjects"):
        verify_bundle(tmp_path / "forged.zip", trusted_keys=[signer.public_key])

    history = await harness.client.get_workflow_handle(request_id).fetch_history()
    assert len(history.events) < 1000  # the run continued as new; its last history is small
    record = harness.services.classes.record(request_id)
    assert record is not None and record.subject_count == CHILDREN and record.source == "class:under_13"


async def test_a_paused_class_order_starts_no_batch_until_resumed(
    harness: Harness, database_url: str, app_schema: str
) -> None:
    groups = plant(database_url, app_schema)
    async with harness.worker():
        request_id, _ = await submit(harness, app_schema, 100)
        handle = harness.client.get_workflow_handle(request_id)
        await handle.execute_update(PAUSE_UPDATE)
        await approve(harness.client, request_id)
        started = await settled(harness, handle, request_id)  # the batches started before the pause have finished
        await asyncio.sleep(2)
        assert await settled(harness, handle, request_id) == started  # and no other batch started since
        assert started < batch_count(CHILDREN, 100)
        await handle.execute_update(RESUME_UPDATE)
        status = await harness.wait_certified(request_id, timeout_s=120)
    assert status["outcome"] == "complete"
    assert remaining(database_url, app_schema, groups["child"]) == 0


async def test_a_cancelled_class_order_ends_cancelled_with_its_done_batches_evidenced(
    harness: Harness, database_url: str, app_schema: str
) -> None:
    groups = plant(database_url, app_schema)
    async with harness.worker():
        request_id, _ = await submit(harness, app_schema, 10)
        handle = harness.client.get_workflow_handle(request_id)
        await handle.execute_update(PAUSE_UPDATE)  # so the cancel lands mid-way, whatever the machine's speed
        await approve(harness.client, request_id)
        await settled(harness, handle, request_id)
        await handle.execute_update(RESUME_UPDATE)
        while sum(1 for b in harness.services.classes.batches(request_id) if b.state == "done") < 3:
            await asyncio.sleep(0.1)
        await handle.execute_update(CANCEL_UPDATE, "the court stayed the order pending appeal")
        assert await handle.result() is None  # no certificate, no result
    status = request_status(harness.services.ledger, request_id)
    assert status.state == "cancelled" and status.outcome is None
    cancelled = [e for e in status.events if e.kind == "cancelled"]
    assert len(cancelled) == 1 and cancelled[0].detail["reason"] == "the court stayed the order pending appeal"
    erased = [r for r in harness.services.tlog.receipts(request_id) if r.action == "erase"]
    done = [b for b in harness.services.classes.batches(request_id) if b.state == "done"]
    assert 3 <= cancelled[0].detail["batches_done"] == len(erased) == len(done) < batch_count(CHILDREN, 10)
    assert cancelled[0].detail["batches"] == batch_count(CHILDREN, 10)
    logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
    assert ("*", "certificate") not in logged
    statement = json.loads(Envelope.from_json(logged[("*", "cancellation")]).payload)
    assert sorted(s["name"] for s in statement["subject"]) == sorted(batch_path(b.system, b.batch) for b in done)
    assert statement["predicate"]["batches_done"] == len(done)
    left = remaining(database_url, app_schema, groups["child"])
    assert left == CHILDREN - 10 * len(done)  # the done batches' children are gone, the others untouched
    for neighbours in ("birthday_on_cutoff", "other_tenant", "older"):
        assert remaining(database_url, app_schema, groups[neighbours]) == 20, neighbours
    assert_shredded(harness.services, request_id, SEALED_CLASS, "cancelled")  # the class's subjects are unreadable


async def test_a_class_order_waits_for_a_second_operator_and_a_rejection_erases_nothing(
    harness: Harness, database_url: str, app_schema: str
) -> None:
    groups = plant(database_url, app_schema)
    async with harness.worker():
        request_id, _ = await submit(harness, app_schema, 100)
        await awaiting_approval(harness.client, request_id)
        handle = harness.client.get_workflow_handle(request_id)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(APPROVE_UPDATE, OperatorDecision(actor=SUBMITTER), result_type=str)
        assert "four eyes" in str(refused.value.cause)
        await asyncio.sleep(1)  # a run that did not wait would be erasing by now
        assert remaining(database_url, app_schema, groups["child"]) == CHILDREN
        assert all(b.state != "done" for b in harness.services.classes.batches(request_id))
        waiting = request_status(harness.services.ledger, request_id)
        assert waiting.state == "awaiting_approval"
        previewed = [e for e in waiting.events if e.kind == "previewed"]
        assert [e.detail["systems"] for e in previewed] == [
            {"app_db": {"batches": batch_count(CHILDREN, 100), "subjects": CHILDREN}}
        ]
        decision = OperatorDecision(actor="approver-two", reason="the order names the wrong class")
        assert await handle.execute_update(REJECT_UPDATE, decision, result_type=str) == "rejected by approver-two"
        assert await handle.result() is None
    status = request_status(harness.services.ledger, request_id)
    assert status.state == "rejected"
    rejected = [e for e in status.events if e.kind == "rejected"]
    assert len(rejected) == 1 and rejected[0].detail["actor"] == "approver-two"
    assert rejected[0].detail["submitted_by"] == SUBMITTER and rejected[0].detail["record_sha256"]
    assert remaining(database_url, app_schema, groups["child"]) == CHILDREN
    assert not [r for r in harness.services.tlog.receipts(request_id) if r.action == "erase"]
    assert_shredded(harness.services, request_id, SEALED_CLASS, "rejected")


async def test_a_bad_subject_file_stores_nothing(harness: Harness, tmp_path: Path, app_schema: str) -> None:
    (tmp_path / "children.csv").write_text("email\nkid1@example.org\nnot an address\n")
    data = {**order(), "subjects": {"file": "children.csv"}}
    from domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as raised:
        validate_class(
            harness.write_yaml("class-order.yaml", data), harness.write_yaml("systems.yaml", catalogue(app_schema, 10))
        )
    assert raised.value.field == "row 3, column email"
    assert harness.services.ledger.requests() == []
