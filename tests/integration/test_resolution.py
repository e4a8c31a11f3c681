"""Identity resolution and near-match review on the real stack: Temporal dev server, Postgres, moto's S3, the CLI.

The estate holds the child (user 1, `Sunny.Day+clips@example.org`) beside look-alike neighbours: user 10 has her
address in another case, user 100 the same mailbox without its plus tag. Both are other people until a reviewer
says otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from activities.contracts import ReviewDecision
from erasure.status import StatusReport, request_status
from evidence.dsse import Envelope
from evidence.statement import parse_statement
from examples.estate import CHILD, NEIGHBOURS, upload_keys
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys
from workflows.request import REVIEW_QUERY, REVIEW_UPDATE

REASON = "another person's account: a look-alike address"


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


async def wait_for(harness: Harness, request_id: str, done: Callable[[StatusReport], bool]) -> StatusReport:
    for _ in range(600):
        report = request_status(harness.services.ledger, request_id)
        if done(report):
            return report
        await asyncio.sleep(0.1)
    raise AssertionError(f"request never reached the expected state: {report.state}")


async def groups(harness: Harness, request_id: str) -> dict[str, dict[str, Any]]:
    """The review groups by their rules, e.g. {'email letter_case': {...}}."""
    answer = await harness.client.get_workflow_handle(request_id).query(REVIEW_QUERY)
    return {" ".join(f"{k} {r}" for k, r in g["rules"].items()) or g["kind"]: g for g in answer["groups"]}


async def decide(harness: Harness, request_id: str, group: str, decision: str) -> None:
    handle = harness.client.get_workflow_handle(request_id)
    await handle.execute_update(
        REVIEW_UPDATE, ReviewDecision(group, decision, REASON, "test reviewer"), result_type=str
    )


def users(database_url: str, schema: str) -> set[int]:
    with psycopg.connect(database_url) as conn:
        return {row[0] for row in conn.execute(f"SELECT id FROM {schema}.users").fetchall()}


def certificate(harness: Harness, request_id: str) -> dict[str, Any]:
    with harness.services.pool.connection() as conn:
        row = conn.execute(
            "SELECT envelope FROM receipts WHERE request_id = %s AND action = 'certificate'", [request_id]
        ).fetchone()
    assert row is not None
    predicate: dict[str, Any] = parse_statement(Envelope.from_json(bytes(row[0])).payload)["predicate"]
    return predicate


async def test_an_email_only_order_erases_the_user_id_keyed_systems_and_excluded_lookalikes_survive(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    order_path = harness.write_yaml("order.yaml", court_order({"email": [CHILD.email or ""]}))
    catalogue_path = harness.write_yaml("systems.yaml", catalogue(schema, bucket_name, identity=True))
    env = harness.process_env()
    async with harness.worker():
        submitted = await harness.cli(env, "submit", str(order_path), "--catalogue", str(catalogue_path))
        assert submitted.returncode == 0, submitted.stderr
        request_id = submitted.stdout.strip()
        waiting = await wait_for(harness, request_id, lambda r: r.state == "awaiting_review")
        stopped = await harness.cli(env, "status", request_id, "--wait", "--timeout", "60")
        assert stopped.returncode == 1 and "awaiting review" in stopped.stderr
        found = await groups(harness, request_id)
        assert set(found) == {"email letter_case", "email plus_tag"}
        assert all(g["source"] == "app_accounts" and g["decision"] is None for g in found.values())
        # nothing runs before the reviewer decides; resolution already made the uploads bucket applicable
        assert {s.state for s in waiting.systems} == {"planned"}
        for group in found.values():
            reviewed = await harness.cli(
                env, "review", request_id, "--group", group["group"], "--decision", "exclude", "--reason", REASON
            )
            assert reviewed.returncode == 0, reviewed.stderr
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id)

    systems = {s["system"]: s for s in status["systems"]}
    assert systems["uploads"]["evidence_level"] == "verified_absent"
    assert systems["uploads"]["records_before"] == 8  # every version and marker under uploads/1/ and avatars/1
    assert systems["app_db"]["records_before"] == 18
    assert status["outcome"] == "complete"
    assert users(database_url, schema) == {p.user_id for p in NEIGHBOURS}
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()

    predicate = certificate(harness, request_id)
    identity = predicate["identity"]
    assert identity["ordered"] == {"email": 1}
    assert identity["found_by"] == {"app_accounts": {"email": 1, "phone": 1, "user_id": 1}}
    assert identity["identifiers"] == {"email": 1, "phone": 1, "user_id": 1}
    assert [(r["rules"], r["decision"]) for r in sorted(predicate["reviews"], key=lambda r: r["rules"])] == [
        ("email letter_case", "exclude"),
        ("email plus_tag", "exclude"),
    ]
    assert {r["reviewer"] for r in predicate["reviews"]} == {harness_user()}
    # the receipts say so too, and neither names a value
    with harness.services.pool.connection() as conn:
        row = conn.execute("SELECT envelope FROM receipts WHERE request_id = %s AND system = 'uploads'", [request_id])
        receipt = parse_statement(Envelope.from_json(bytes(row.fetchone()[0])).payload)["predicate"]  # type: ignore[index]
    assert any(n.startswith("identity: resolved") for n in receipt["notes"])
    assert sum(n.startswith("review near-") for n in receipt["notes"]) == 2
    everything = str(predicate) + str(receipt)
    for person in (CHILD, *NEIGHBOURS):
        assert (person.email or "@@") not in everything and (person.phone or "++") not in everything


def harness_user() -> str:
    import getpass
    import os

    return os.environ.get("ERASURE_REVIEWER") or getpass.getuser()


async def test_an_included_near_match_is_erased_like_an_exact_match_and_refusals_are_one_line(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    order_path = harness.write_yaml("order.yaml", court_order({"user_id": ["1"]}))
    env = harness.process_env()
    async with harness.worker():
        request_id = (
            await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name, identity=True))
        ).request_id
        await wait_for(harness, request_id, lambda r: r.state == "awaiting_review")
        found = await groups(harness, request_id)
        case_variant, no_tag = found["email letter_case"]["group"], found["email plus_tag"]["group"]
        refusals = [
            ("--group", "near-99", "--decision", "exclude", "--reason", REASON),  # no such group
            ("--group", case_variant, "--decision", "confirm_nothing_found", "--reason", REASON),  # wrong kind
            ("--group", case_variant, "--decision", "delete", "--reason", REASON),  # no such decision
            ("--group", case_variant, "--decision", "exclude", "--reason", ""),  # no reason
            ("--group", case_variant, "--decision", "exclude", "--reason", "it is x@example.org"),  # an identifier
        ]
        for args in refusals:
            refused = await harness.cli(env, "review", request_id, *args)
            assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
            assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert (await groups(harness, request_id))["email letter_case"]["decision"] is None
        await decide(harness, request_id, case_variant, "include")
        again = await harness.cli(
            env, "review", request_id, "--group", case_variant, "--decision", "exclude", "--reason", REASON
        )
        assert again.returncode == 2 and "already decided" in again.stderr
        await decide(harness, request_id, no_tag, "exclude")
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id)

    assert order_path.exists()
    systems = {s["system"]: s for s in status["systems"]}
    assert systems["app_db"]["evidence_level"] == "verified_absent"
    assert systems["uploads"]["evidence_level"] == "verified_absent"
    assert status["outcome"] == "complete"
    # user 10 (included) is gone with the child, everywhere; user 100 (excluded) and user 11 remain
    assert users(database_url, schema) == {100, 11}
    kept = {p for p in NEIGHBOURS if p.user_id != 10}
    assert surviving_keys(s3_client, bucket_name) == {k for p in kept for k in upload_keys(p)}
    decisions = {r["rules"]: r["decision"] for r in certificate(harness, request_id)["reviews"]}
    assert decisions == {"email letter_case": "include", "email plus_tag": "exclude"}


async def test_a_subject_no_identity_source_knows_waits_for_confirmation_and_is_not_complete_without_it(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    order = court_order({"email": ["nobody.known@example.net"]})
    async with harness.worker():
        request_id = (await harness.submit(order, catalogue(schema, bucket_name, identity=True))).request_id
        await wait_for(harness, request_id, lambda r: r.state == "awaiting_review")
        found = await groups(harness, request_id)
        assert list(found) == ["nothing_found"]
        await asyncio.sleep(2)  # it stays waiting: no certificate, no outcome, nothing searched
        waiting = request_status(harness.services.ledger, request_id)
        assert (waiting.state, waiting.outcome) == ("awaiting_review", None)
        assert {s.state for s in waiting.systems} == {"planned", "not_applicable"}
        events = {e.kind: e.detail for e in waiting.events}
        assert events["identity_resolved"]["known"] is False
        assert events["review_required"]["groups"][0]["kind"] == "nothing_found"
        await decide(harness, request_id, found["nothing_found"]["group"], "confirm_nothing_found")
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id)

    systems = {s["system"]: s for s in status["systems"]}
    assert systems["app_db"]["evidence_level"] == "verified_absent" and systems["app_db"]["records_before"] == 0
    assert systems["uploads"]["state"] == "not_applicable"
    assert "identity sources (app_accounts) hold no identifier" in systems["uploads"]["detail"]
    predicate = certificate(harness, request_id)
    assert [r["decision"] for r in predicate["reviews"]] == ["confirm_nothing_found"]
    assert predicate["identity"]["known"] is False
    assert len(users(database_url, schema)) == 4
