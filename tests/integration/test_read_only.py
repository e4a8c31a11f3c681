"""Reading commands open the ledger read-only: they never migrate, never write, never mint a key."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue


@pytest.fixture
def reader_url(harness: Harness, database_url: str) -> Iterator[str]:
    """A role that may read the ledger's schema and nothing more: no CREATE anywhere, no write."""
    role, schema = f"reader_{uuid.uuid4().hex[:12]}", harness.config.ledger_schema
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'reader'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(role)
            )
        )
    yield make_conninfo(database_url, user=role, password="reader")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_status_works_for_a_ledger_user_without_create_rights(
    harness: Harness, reader_url: str, schema: str, tmp_path: Path
) -> None:
    submission = await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, "unused-bucket"))
    home = tmp_path / "reader-home"  # no keys: a reading command must not need, or make, any
    env = {**harness.process_env(), "ERASURE_HOME": str(home), "DATABASE_URL": reader_url}

    status = await harness.cli(env, "status", submission.request_id, "--json")
    listed = await harness.cli(env, "list", "--json")

    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["request_id"] == submission.request_id
    assert {s["system"] for s in report["systems"]} == {"app_db", "uploads"}
    assert listed.returncode == 0, listed.stderr
    assert [r["request_id"] for r in json.loads(listed.stdout)] == [submission.request_id]
    assert not (home / "keys").exists()


async def test_suppression_check_reads_with_the_deployments_key_only(
    harness: Harness, reader_url: str, tmp_path: Path
) -> None:
    env = {**harness.process_env(), "DATABASE_URL": reader_url}
    checked = await harness.cli(env, "suppression", "check", "email", stdin="nobody@example.org\n")
    assert checked.returncode == 3, checked.stderr  # 3: not suppressed
    assert checked.stdout.strip() == "not suppressed"

    keyless = await harness.cli(
        {**env, "ERASURE_HOME": str(tmp_path / "empty")}, "suppression", "check", "user_id", stdin="1\n"
    )
    assert keyless.returncode == 1
    assert "suppression.key is missing" in keyless.stderr
    assert not (tmp_path / "empty" / "keys").exists()
    assert not (tmp_path / "empty" / "suppression-key").exists()


async def test_a_worker_migrates_the_ledger_when_it_starts(harness: Harness, database_url: str, tmp_path: Path) -> None:
    fresh = f"ledger_{uuid.uuid4().hex[:12]}"
    env = {**harness.process_env(tmp_path / "home"), "ERASURE_LEDGER_SCHEMA": fresh}
    log = tmp_path / "home" / "logs" / "worker.jsonl"
    worker = harness.start_worker(env)
    try:
        for _ in range(600):
            if log.exists() and "worker started" in log.read_text():
                break
            assert worker.poll() is None, "the worker exited"
            await asyncio.sleep(0.1)
        listed = await harness.cli(env, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == []
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))


async def test_a_ledger_never_migrated_gets_one_line_until_db_migrate(
    harness: Harness, database_url: str, tmp_path: Path
) -> None:
    fresh = f"ledger_{uuid.uuid4().hex[:12]}"
    migrations = sorted(f.name for f in resources.files("stores.migrations").iterdir() if f.name.endswith(".sql"))
    env = {**harness.process_env(tmp_path / "home"), "ERASURE_LEDGER_SCHEMA": fresh}
    try:
        for args in (("status", str(uuid.uuid4())), ("list",)):
            refused = await harness.cli(env, *args)
            assert refused.returncode == 2
            assert refused.stderr.strip() == (
                f"error: configuration: ERASURE_LEDGER_SCHEMA: the ledger in schema {fresh} is not migrated: "
                f"expected {len(migrations)} migrations, got 0; run `erasure db migrate`"
            )
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT to_regnamespace(%s)", [fresh]).fetchone() == (None,)  # nothing created

        migrated = await harness.cli(env, "db", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.strip() == f"applied: {', '.join(migrations)}"
        listed = await harness.cli(env, "list", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == []
        again = await harness.cli(env, "db", "migrate")
        assert again.stdout.strip() == "the ledger is up to date"
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh)))
