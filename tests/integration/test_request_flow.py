"""A court order end to end on the real Temporal dev server, Postgres and moto's S3."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from evidence.dsse import Envelope
from evidence.statement import parse_statement
from examples.estate import CHILD, count_rows
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


def by_system(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["system"]: s for s in status["systems"]}


async def test_court_order_erases_every_system_and_spares_neighbours(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    status = await harness.run(court_order({"user_id": ["1"], "email": [CHILD.email]}), catalogue(schema, bucket_name))

    assert status["state"] == "certified"
    assert status["outcome"] == "complete"
    systems = by_system(status)
    assert systems["app_db"]["evidence_level"] == "verified_absent"
    assert (systems["app_db"]["records_before"], systems["app_db"]["records_after"]) == (18, 0)
    assert systems["uploads"]["evidence_level"] == "verified_absent"
    # clip-0: three versions and a delete marker; clip-1: a version and a marker; clip-2 and the avatar: one each
    assert (systems["uploads"]["records_before"], systems["uploads"]["records_after"]) == (8, 0)

    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema) == {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys()

    # the signed receipt states the counts per table, before and after
    with harness.services.pool.connection() as conn:
        row = conn.execute("SELECT envelope FROM receipts WHERE system = 'app_db'").fetchone()
    assert row is not None
    predicate = parse_statement(Envelope.from_json(bytes(row[0])).payload)["predicate"]
    assert predicate["evidence_level"] == "verified_absent"
    assert predicate["locations"]["comments"] == {"before": 6, "after": 0}
    assert predicate["locations"]["users"] == {"before": 1, "after": 0}


async def test_legal_hold_leaves_the_request_blocked_not_complete(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name, object_lock=True)
    head = s3_client.head_object(Bucket=bucket_name, Key="avatars/1.jpg")
    s3_client.put_object_legal_hold(
        Bucket=bucket_name, Key="avatars/1.jpg", VersionId=head["VersionId"], LegalHold={"Status": "ON"}
    )
    status = await harness.run(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))

    systems = by_system(status)
    assert systems["uploads"]["evidence_level"] == "blocked", systems["uploads"]
    assert systems["uploads"]["records_after"] == 2  # the held version and the delete marker that hides it
    assert "legal hold" in systems["uploads"]["detail"]
    assert systems["app_db"]["evidence_level"] == "verified_absent"
    assert status["outcome"] == "partial"
    assert surviving_keys(s3_client, bucket_name) == neighbour_keys() | {"avatars/1.jpg"}
    with pytest.raises(s3_client.exceptions.NoSuchKey):  # held, and no longer served
        s3_client.get_object(Bucket=bucket_name, Key="avatars/1.jpg")


async def test_hostile_identifier_values_never_widen_the_scope(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    before = surviving_keys(s3_client, bucket_name)
    subject = {
        # values that pass intake (one with whitespace would be refused there) yet mean something to SQL or S3
        "user_id": ["'--", "*", "%", "../"],
        "email": ["%@example.org", "*@example.org", "x'--@example.org"],
    }
    status = await harness.run(court_order(subject), catalogue(schema, bucket_name))

    systems = by_system(status)
    assert systems["app_db"]["records_before"] == 0
    assert systems["app_db"]["evidence_level"] == "verified_absent"
    # "../" cannot be one path segment: the system says so and is not done, rather than guessing
    assert systems["uploads"]["evidence_level"] == "failed"
    assert "cannot be used in key templates" in systems["uploads"]["detail"]
    assert status["outcome"] == "incomplete"
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema)["users"] == 4
    assert surviving_keys(s3_client, bucket_name) == before


async def test_a_system_keyed_by_types_the_order_lacks_is_not_searched(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    status = await harness.run(court_order({"email": [CHILD.email]}), catalogue(schema, bucket_name))
    systems = by_system(status)
    assert systems["uploads"]["state"] == "not_applicable"
    assert systems["uploads"]["evidence_level"] is None
    assert systems["app_db"]["evidence_level"] == "verified_absent"
    assert status["outcome"] == "complete"


async def test_an_order_no_system_applies_to_ends_with_a_certificate_that_says_so(
    harness: Harness, schema: str, bucket_name: str, tmp_path: Any
) -> None:
    from erasure.export import export_bundle
    from evidence.verify import verify_bundle

    status = await harness.run(court_order({"device_id": ["dev-1"]}), catalogue(schema, bucket_name))

    assert status["state"] == "certified"
    assert status["outcome"] == "incomplete"
    assert {s["state"] for s in status["systems"]} == {"not_applicable"}
    bundle = tmp_path / "bundle.zip"
    export_bundle(harness.services, status["request_id"], bundle)
    certificate = verify_bundle(bundle, trusted_keys=[harness.services.tlog.signer.public_key])
    assert certificate.outcome == "incomplete"
    with harness.services.pool.connection() as conn:
        row = conn.execute("SELECT envelope FROM receipts WHERE action = 'certificate'").fetchone()
    assert row is not None
    predicate = parse_statement(Envelope.from_json(bytes(row[0])).payload)["predicate"]
    assert predicate["outcome_reason"].startswith("no system applies")
    assert len(predicate["exceptions"]) == 2


async def test_a_past_deadline_is_accepted_only_with_the_flag_and_recorded(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    order = {**court_order({"user_id": ["1"]}), "received": "2020-01-01", "deadline": "2020-01-29"}
    order_path, catalogue_path = (
        harness.write_yaml("order.yaml", order),
        harness.write_yaml("systems.yaml", catalogue(schema, bucket_name)),
    )
    env = harness.process_env()
    refused = await harness.cli(env, "submit", str(order_path), "--catalogue", str(catalogue_path))
    assert refused.returncode == 2 and "--allow-past-deadline" in refused.stderr
    assert harness.services.ledger.requests() == []
    async with harness.worker():
        accepted = await harness.cli(
            env, "submit", str(order_path), "--catalogue", str(catalogue_path), "--allow-past-deadline"
        )
        assert accepted.returncode == 0, accepted.stderr
        request_id = accepted.stdout.strip()
        await approve(harness.client, request_id)
        await harness.wait_certified(request_id)
    events = {e.kind: e.detail for e in harness.services.ledger.events(request_id)}
    assert events["past_deadline_accepted"] == {"deadline": "2020-01-29", "accepted_with": "--allow-past-deadline"}


async def test_a_namespace_that_does_not_exist_is_one_line_and_stores_nothing(
    harness: Harness, schema: str, bucket_name: str
) -> None:
    order_path = harness.write_yaml("order.yaml", court_order({"user_id": ["1"]}))
    catalogue_path = harness.write_yaml("systems.yaml", catalogue(schema, bucket_name))
    env = {**harness.process_env(), "TEMPORAL_NAMESPACE": "no-such-namespace"}
    result = await harness.cli(env, "submit", str(order_path), "--catalogue", str(catalogue_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "namespace no-such-namespace" in result.stderr
    assert harness.services.ledger.requests() == []
