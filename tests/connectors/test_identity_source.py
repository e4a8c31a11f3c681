"""The postgres identity source against a real Postgres: exact rows by the database's equality, near-matches by
the normal forms of domain.identifiers, neighbours never, hostile values nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from connectors.postgres import PostgresIdentitySource, PostgresSettings
from domain.errors import TerminalError
from domain.model import IdentifierType, Subject
from examples.estate import APP_MAPPING, CHILD, NEIGHBOURS, create_app_schema, seed_people
from tests.connectors.test_postgres import citext_url  # noqa: F401  # the fixture, shared

COLUMNS = {IdentifierType(k): v for k, v in APP_MAPPING["subject"]["match"].items()}


def source(schema: str) -> PostgresIdentitySource:
    settings = PostgresSettings.model_validate(
        {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": schema, **APP_MAPPING}}
    )
    return PostgresIdentitySource("app_accounts", settings, "users", COLUMNS)


@pytest.fixture
def accounts(database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[PostgresIdentitySource]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    yield source(schema)


def user_ids(rows: tuple[dict[IdentifierType, str], ...] | tuple[object, ...]) -> set[str]:
    return {row[IdentifierType.USER_ID] for row in rows}  # type: ignore[index]


def test_an_email_finds_the_child_exactly_and_her_lookalikes_as_near_matches(accounts: PostgresIdentitySource) -> None:
    found = accounts.lookup(Subject.of(email=[CHILD.email or ""]))
    assert [dict(row) for row in found.exact] == [
        {IdentifierType.USER_ID: "1", IdentifierType.EMAIL: CHILD.email, IdentifierType.PHONE: CHILD.phone}
    ]
    assert user_ids(found.near) == {"10", "100"}  # the other case; the same mailbox without the tag; never user 11


def test_a_phone_written_otherwise_is_a_near_match_not_an_exact_one(accounts: PostgresIdentitySource) -> None:
    found = accounts.lookup(Subject.of(phone=["+447700900123"]))
    assert found.exact == ()
    assert user_ids(found.near) == {"1"}


def test_a_user_id_has_no_near_matches_and_hostile_values_find_nothing(accounts: PostgresIdentitySource) -> None:
    assert user_ids(accounts.lookup(Subject.of(user_id=["1"])).exact) == {"1"}
    assert accounts.lookup(Subject.of(user_id=["1"])).near == ()
    for hostile in ("%@example.org", "*@example.org", "x'--@example.org", "sunny.day%@example.org"):
        assert accounts.lookup(Subject.of(email=[hostile])) == accounts.lookup(Subject.of(user_id=["999"]))


def test_an_identifier_shared_by_too_many_rows_is_refused(
    accounts: PostgresIdentitySource, database_url: str, schema: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for n in range(PostgresIdentitySource.MAX_ROWS + 1):
            conn.execute(
                f'INSERT INTO "{schema}".users (id, username, email) VALUES (%s, %s, %s)',
                [5000 + n, f"shared{n}", "shared@example.org"],
            )
    with pytest.raises(TerminalError, match="more than 20 rows"):
        accounts.lookup(Subject.of(email=["shared@example.org"]))


def test_on_citext_the_database_decides_case_and_only_the_untagged_mailbox_is_near(
    citext_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(citext_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        create_app_schema(conn, schema)
        conn.execute(f'ALTER TABLE "{schema}".users ALTER COLUMN email TYPE citext')
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
        monkeypatch.setenv("APP_DATABASE_URL", citext_url)
        try:
            found = source(schema).lookup(Subject.of(email=["SUNNY.DAY+CLIPS@EXAMPLE.ORG"]))
            assert user_ids(found.exact) == {"1", "10"}
            assert user_ids(found.near) == {"100"}
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
