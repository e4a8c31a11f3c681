"""A court order end to end on the real Temporal dev server, Postgres and moto's S3."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from evidence.dsse import Envelope
from evidence.statement import parse_statement
from examples.estate import CHILD, count_rows
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
        "user_id": ["'; DROP TABLE users; --", "*", "%", "../"],
        "email": ["%@example.org", "*@example.org", "x'; DROP TABLE users; --@example.org"],
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
