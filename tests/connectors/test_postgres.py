"""The postgres connector against a real Postgres: scope, order, neighbours and hostile values."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from connectors.postgres import PostgresConnector, PostgresSettings
from domain.errors import TerminalError, TransientError
from domain.model import EvidenceLevel, Subject
from examples.estate import APP_MAPPING, CHILD, NEIGHBOURS, count_rows, create_app_schema, seed_people
from tests.servers import start_system_postgres

FULL = {"users": 4, "videos": 9, "comments": 12, "follows": 12, "device_tokens": 5}
AFTER_CHILD = {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3}


@pytest.fixture
def app_db(database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
        monkeypatch.setenv("APP_DATABASE_URL", database_url)
        yield conn


@pytest.fixture
def connector(schema: str, app_db: psycopg.Connection) -> PostgresConnector:
    settings = PostgresSettings.model_validate(
        {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": schema, **APP_MAPPING}}
    )
    return PostgresConnector("app_db", settings)


def test_locate_counts_every_linked_table(connector: PostgresConnector) -> None:
    inventory = connector.locate(Subject.of(user_id=["1"]))
    assert dict(inventory.counts) == {"users": 1, "videos": 3, "comments": 6, "follows": 6, "device_tokens": 2}


def test_erase_deletes_children_before_parents_and_spares_neighbours(
    connector: PostgresConnector, app_db: psycopg.Connection, schema: str
) -> None:
    assert count_rows(app_db, schema) == FULL
    outcome = connector.erase(Subject.of(user_id=["1"], email=[CHILD.email or ""]), "k1")
    assert outcome.deleted == 18
    assert len(outcome.deleted_keys) == 18
    assert count_rows(app_db, schema) == AFTER_CHILD
    survivors = {r[0] for r in app_db.execute(f'SELECT id FROM "{schema}".users').fetchall()}
    assert survivors == {10, 100, 11}
    verification = connector.verify(Subject.of(user_id=["1"], email=[CHILD.email or ""]))
    assert verification.level is EvidenceLevel.VERIFIED_ABSENT
    assert verification.total_remaining == 0


def test_erase_twice_is_harmless(connector: PostgresConnector, app_db: psycopg.Connection, schema: str) -> None:
    subject = Subject.of(user_id=["1"])
    assert connector.erase(subject, "k").deleted == 18
    again = connector.erase(subject, "k")
    assert again.deleted == 0
    assert count_rows(app_db, schema) == AFTER_CHILD


def test_email_matches_exactly_not_case_folded_or_plus_stripped(
    connector: PostgresConnector, app_db: psycopg.Connection, schema: str
) -> None:
    connector.erase(Subject.of(email=["Sunny.Day+clips@example.org"]), "k")
    survivors = {r[0] for r in app_db.execute(f'SELECT id FROM "{schema}".users').fetchall()}
    assert survivors == {10, 100, 11}


@pytest.mark.parametrize(
    "values",
    [
        {"email": ["%", "*", "../", "'; DROP TABLE users; --", "%@example.org"]},
        {"phone": ["%"], "username": ["*"]},
    ],
)
def test_hostile_values_are_data(
    connector: PostgresConnector, app_db: psycopg.Connection, schema: str, values: dict[str, list[str]]
) -> None:
    subject = Subject.of(**values)
    assert connector.locate(subject).total == 0
    assert connector.erase(subject, "k").deleted == 0
    assert count_rows(app_db, schema) == FULL


@pytest.mark.parametrize("values", [["'; DROP TABLE users; --"], ["01", "1.0", " 1", "1 OR 1=1"]])
def test_values_no_column_can_hold_search_nothing_and_fail(
    connector: PostgresConnector, app_db: psycopg.Connection, schema: str, values: list[str]
) -> None:
    """No user id here can be a bigint: the search would run over nothing, which must never read as absent."""
    subject = Subject.of(user_id=values)
    for step in (connector.locate, connector.verify, lambda s: connector.erase(s, "k")):
        with pytest.raises(TerminalError, match="nothing would be searched") as info:
            step(subject)
        assert not any(v in str(info.value) for v in values if len(v) > 1)
    assert count_rows(app_db, schema) == FULL


def test_rows_left_without_a_parent_are_still_found(
    connector: PostgresConnector, app_db: psycopg.Connection, schema: str
) -> None:
    """A child table row that references the subject's id after the user row is gone is found by verify."""
    connector.erase(Subject.of(user_id=["1"]), "k")
    app_db.execute(f'ALTER TABLE "{schema}".device_tokens DROP CONSTRAINT device_tokens_user_id_fkey')
    app_db.execute(f"INSERT INTO \"{schema}\".device_tokens (id, user_id, token) VALUES (9999, 1, 'late')")
    verification = connector.verify(Subject.of(user_id=["1"]))
    assert verification.level is EvidenceLevel.FAILED
    assert verification.remaining["device_tokens"] == 1


def test_lock_timeout_is_transient(connector: PostgresConnector, database_url: str, schema: str) -> None:
    with psycopg.connect(database_url) as blocker:
        blocker.execute(f'LOCK TABLE "{schema}".device_tokens IN ACCESS EXCLUSIVE MODE')
        settings = connector.settings.model_copy(
            update={"connection": connector.settings.connection.model_copy(update={"lock_timeout_ms": 200})}
        )
        with pytest.raises(TransientError, match="LockNotAvailable") as info:
            PostgresConnector("app_db", settings).erase(Subject.of(user_id=["1"]), "k")
    assert "1" not in str(info.value).replace("55P03", "")


def test_missing_column_is_terminal_and_names_no_identifier(schema: str, app_db: psycopg.Connection) -> None:
    mapping = {**APP_MAPPING, "subject": {"table": "users", "key": "id", "match": {"email": "mail"}}}
    settings = PostgresSettings.model_validate(
        {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": schema, **mapping}}
    )
    with pytest.raises(TerminalError, match="users.mail does not exist") as info:
        PostgresConnector("app_db", settings).locate(Subject.of(email=["child@example.org"]))
    assert "child@example.org" not in str(info.value)


def test_mapping_rejects_references_to_unknown_tables() -> None:
    with pytest.raises(ValueError, match="not a keyed table"):
        PostgresSettings.model_validate(
            {
                "connection": {"dsn_env": "X"},
                "mapping": {
                    "subject": {"table": "users", "key": "id", "match": {"user_id": "id"}},
                    "tables": [{"table": "comments", "references": {"video_id": "videos"}}],
                },
            }
        )


# -- citext and domains: the database's own equality decides ----------------------------------------------------


def _postgres_with_citext() -> Path | None:
    """The bin folder of an installed Postgres whose contrib extensions include citext."""
    candidates = [shutil.which("pg_config"), *map(str, Path("/usr/lib/postgresql").glob("*/bin/pg_config"))]
    for pg_config in filter(None, candidates):
        share = subprocess.run([pg_config, "--sharedir"], capture_output=True, text=True).stdout.strip()
        if (Path(share) / "extension" / "citext.control").exists():
            return Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
    return None


@pytest.fixture(scope="module")
def citext_url(database_url: str) -> Iterator[str]:
    """The session's Postgres if it offers citext (the embedded one does not), else an installed one."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'citext'").fetchone():
            yield database_url
            return
    bin_dir = _postgres_with_citext()
    if bin_dir is None:
        pytest.skip("no Postgres with the citext extension is installed on this machine")
    with start_system_postgres(bin_dir) as url:
        yield url


@pytest.mark.parametrize(
    ("email_type", "asked", "survivors"),
    [
        # citext says the child's address and user 10's are equal: both go, the address without its tag stays
        ("citext", "SUNNY.DAY+CLIPS@EXAMPLE.ORG", {100, 11}),
        ("ci_email", "SUNNY.DAY+CLIPS@EXAMPLE.ORG", {100, 11}),  # a domain over citext compares as citext
        ("plain_email", "SUNNY.DAY+CLIPS@EXAMPLE.ORG", {1, 10, 100, 11}),  # a domain over text stays exact
        ("plain_email", "Sunny.Day+clips@example.org", {10, 100, 11}),
    ],
)
def test_citext_and_domains_compare_as_the_database_defines(
    citext_url: str, monkeypatch: pytest.MonkeyPatch, email_type: str, asked: str, survivors: set[int]
) -> None:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(citext_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        create_app_schema(conn, schema)
        conn.execute(f'CREATE DOMAIN "{schema}".ci_email AS citext')
        conn.execute(f'CREATE DOMAIN "{schema}".plain_email AS text')
        column_type = "citext" if email_type == "citext" else f'"{schema}".{email_type}'
        conn.execute(f'ALTER TABLE "{schema}".users ALTER COLUMN email TYPE {column_type}')
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
        monkeypatch.setenv("APP_DATABASE_URL", citext_url)
        settings = PostgresSettings.model_validate(
            {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": schema, **APP_MAPPING}}
        )
        try:
            connector = PostgresConnector("app_db", settings)
            subject = Subject.of(email=[asked])
            assert connector.locate(subject).counts["users"] == 4 - len(survivors)
            connector.erase(subject, "k")
            assert {r[0] for r in conn.execute(f'SELECT id FROM "{schema}".users').fetchall()} == survivors
            assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT
        finally:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _sessions(conn: psycopg.Connection) -> int:
    """Connections ever established to the database (Postgres counts them in pg_stat_database)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


def _open_connections(conn: psycopg.Connection, system: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [f"erasure {system}"]
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_steps_of_one_system_reuse_pooled_connections_until_the_pools_close(
    schema: str, app_db: psycopg.Connection
) -> None:
    from connectors.postgres import close_pools

    settings = PostgresSettings.model_validate(
        {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": schema, **APP_MAPPING}}
    )
    system = f"pooled_{uuid.uuid4().hex[:8]}"
    subject = Subject.of(user_id=["1"])
    PostgresConnector(system, settings).locate(subject)  # the system's pool opens
    before = _sessions(app_db)
    for _ in range(10):  # as the activities do: a connector per step
        with PostgresConnector(system, settings) as connector:
            connector.locate(subject)
            connector.verify(subject)
    assert _sessions(app_db) - before <= 1  # twenty steps, one connection (at most one more opened meanwhile)
    assert count_rows(app_db, schema) == FULL
    assert 1 <= _open_connections(app_db, system) <= 8

    close_pools()
    for _ in range(50):  # a closed connection's backend leaves pg_stat_activity a moment later
        if _open_connections(app_db, system) == 0:
            break
        time.sleep(0.1)
    assert _open_connections(app_db, system) == 0
    assert PostgresConnector(system, settings).locate(subject).total == 18  # a pool opens again when needed
