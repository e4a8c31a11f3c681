"""A class of subjects read from an identity source's table at one snapshot (stores/catalogue.py `ClassSpec`).

One read-only REPEATABLE READ transaction: every row is read at the same snapshot, whose time (the transaction's
`now()`) is recorded with the order. The query's shape comes from the validated catalogue (names quoted with
`psycopg.sql.Identifier`); the order contributes only the cutoff date, and the catalogue's fixed `where` values,
all as bound parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg import sql

from connectors.base import secret_from_env
from connectors.postgres import _map_error
from domain.errors import TerminalError
from domain.identifiers import problem as identifier_problem
from domain.model import IdentifierType, Subject
from domain.settings.postgres import PostgresSettings


@dataclass(frozen=True)
class ClassMembers:
    snapshot_at: datetime
    subjects: list[Subject]
    ignored: int  # values the table holds that are not well-formed identifiers of their type (never used)


def class_members(
    settings: PostgresSettings,
    table: str,
    columns: Mapping[IdentifierType, str],
    *,
    birth_date_column: str,
    under_years: int,
    where: Mapping[str, str],
    cutoff: date,
) -> ClassMembers:
    """Everyone in `table` younger than `under_years` on `cutoff` (born after the day `under_years` before it)."""
    kinds = list(columns)
    conditions = [sql.SQL("{} > (%s::date - make_interval(years => %s))").format(sql.Identifier(birth_date_column))]
    params: list[object] = [cutoff, under_years]
    for column, value in where.items():
        conditions.append(sql.SQL("{}::text = %s").format(sql.Identifier(column)))
        params.append(value)
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(sql.Identifier(columns[k]) for k in kinds),
        sql.Identifier(settings.mapping.schema_name, table),
        sql.SQL(" AND ").join(conditions),
    )
    dsn = secret_from_env(settings.connection.dsn_env)
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.cursor() as cur:
                cur.execute("SELECT now()")
                snapshot = cur.fetchone()
                cur.execute(query, params)
                rows = cur.fetchall()
    except psycopg.Error as exc:
        raise _map_error(f"class source {table}", exc) from exc
    if snapshot is None:
        raise TerminalError("class source: expected the snapshot's time, got none")
    subjects, ignored = [], 0
    for row in rows:
        values: dict[IdentifierType, tuple[str, ...]] = {}
        for kind, value in zip(kinds, row, strict=True):
            if value is None:
                continue
            text = str(value)
            if identifier_problem(kind, text) is not None:
                ignored += 1
                continue
            values[kind] = (text,)
        if values:
            subjects.append(Subject(values))
    return ClassMembers(snapshot_at=snapshot[0], subjects=subjects, ignored=ignored)
