"""The ledger database: a connection pool bound to the ledger's schema, and versioned migrations.

Only `migrate` creates or alters anything; opening a pool never does, so a role with SELECT alone can read.
"""

from __future__ import annotations

import re
from importlib import resources

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from domain.errors import InvalidInput

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def open_pool(database_url: str, schema: str, *, max_size: int = 8, read_only: bool = False) -> ConnectionPool:
    """Every connection of the pool works in `schema` (search_path), so the SQL stays unqualified.

    `read_only`: every transaction is read-only, so a reading command cannot write even by mistake.
    """
    if not _SCHEMA.fullmatch(schema):
        raise InvalidInput("configuration", "ledger_schema", f"not a schema name: {schema!r}")
    if not database_url:
        raise InvalidInput("configuration", "DATABASE_URL", "is not set and no dev stack is running")
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        kwargs={"options": f"-c search_path={schema}" + (" -c default_transaction_read_only=on" if read_only else "")},
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


def migrate(database_url: str, schema: str) -> list[str]:
    """Apply the migrations not yet applied, in order, each in its own transaction; returns their names."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"erasure-migrate:{schema}"])
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations "
                    "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(sql.Identifier(schema))
            )
            done = {
                row[0]
                for row in conn.execute(
                    sql.SQL("SELECT name FROM {}.schema_migrations").format(sql.Identifier(schema))
                ).fetchall()
            }
            for name, text in _migrations():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
                    conn.execute(text.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", [name])
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"erasure-migrate:{schema}"])
    return applied


def check_migrated(pool: ConnectionPool, schema: str) -> None:
    """InvalidInput unless every migration of this code is applied in `schema`; reads only."""
    with pool.connection() as conn:
        row = conn.execute("SELECT to_regclass(%s)", [f"{schema}.schema_migrations"]).fetchone()
        table_exists = row is not None and row[0] is not None
        applied = (
            {r[0] for r in conn.execute("SELECT name FROM schema_migrations").fetchall()} if table_exists else set()
        )
    names = [name for name, _ in _migrations()]
    missing = [name for name in names if name not in applied]
    if missing:
        raise InvalidInput(
            "configuration",
            "ERASURE_LEDGER_SCHEMA",
            f"the ledger in schema {schema} is not migrated: expected {len(names)} migrations, "
            f"got {len(names) - len(missing)}; run `erasure db migrate`",
        )


def _migrations() -> list[tuple[str, str]]:
    files = resources.files("stores.migrations")
    found = sorted(f.name for f in files.iterdir() if f.name.endswith(".sql"))
    return [(name, files.joinpath(name).read_text(encoding="utf-8")) for name in found]
