"""The ledger: requests, their per-system tasks and events, in Postgres. No identifier is ever written here.

Every write is idempotent (an update to a known row, or an insert keyed by a natural key), because activities that
write it may run more than once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool


class RequestState:
    RECEIVED = "received"
    EXECUTING = "executing"
    CERTIFIED = "certified"
    CLOSED = "closed"  # the request's data key is destroyed

    SETTLED = (CERTIFIED, CLOSED)


class TaskState:
    PLANNED = "planned"
    LOCATING = "locating"
    ERASING = "erasing"
    WAITING_VENDOR = "waiting_vendor"
    VERIFYING = "verifying"
    DONE = "done"
    NOT_APPLICABLE = "not_applicable"  # the request has no identifier of a type the system is keyed by


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    kind: str
    legal_basis: str
    reference: str
    requester: dict[str, Any]
    received_on: date
    deadline: date
    scope: Any
    catalogue_sha256: str
    state: str
    outcome: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TaskRecord:
    request_id: str
    system: str
    category: str
    connector: str
    state: str
    evidence_level: str | None
    records_before: int | None
    records_after: int | None
    counts_before: dict[str, int] | None
    counts_after: dict[str, int] | None
    deleted: int | None
    blocked: int
    key_commitment: str | None
    key_count: int
    vendor_job_id: str | None
    vendor_status: str | None
    detail: str
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class EventRecord:
    system: str | None
    kind: str
    detail: dict[str, Any]
    at: datetime


_REQUEST_COLUMNS = ", ".join(f.name for f in fields(RequestRecord)).replace("request_id", "request_id::text")
_TASK_COLUMNS = ", ".join(f.name for f in fields(TaskRecord)).replace("request_id", "request_id::text")
_TASK_FIELDS = {f.name for f in fields(TaskRecord)} - {"request_id", "system", "updated_at"}


class Ledger:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- requests ---------------------------------------------------------------------------------------------

    def create_request(self, conn: Connection[Any], record: dict[str, Any], catalogue: dict[str, Any]) -> None:
        conn.execute(
            "INSERT INTO requests (request_id, kind, legal_basis, reference, requester, received_on, deadline, "
            "scope, catalogue, catalogue_sha256, state) VALUES (%(request_id)s, %(kind)s, %(legal_basis)s, "
            "%(reference)s, %(requester)s, %(received_on)s, %(deadline)s, %(scope)s, %(catalogue)s, "
            "%(catalogue_sha256)s, %(state)s)",
            {
                **record,
                "requester": Jsonb(record["requester"]),
                "scope": Jsonb(record["scope"]),
                "catalogue": Jsonb(catalogue),
                "state": RequestState.RECEIVED,
            },
        )

    def add_pseudonyms(self, conn: Connection[Any], request_id: str, pseudonyms: list[tuple[str, str]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO subject_pseudonyms (request_id, identifier_type, pseudonym) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(request_id, kind, value) for kind, value in pseudonyms],
            )

    def add_task(
        self,
        conn: Connection[Any],
        request_id: str,
        system: str,
        category: str,
        connector: str,
        state: str = TaskState.PLANNED,
        detail: str = "",
    ) -> None:
        conn.execute(
            "INSERT INTO system_tasks (request_id, system, category, connector, state, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [request_id, system, category, connector, state, detail],
        )

    def delete_request(self, request_id: str) -> None:
        """Undo an intake whose workflow could not be started: nothing of it stays behind."""
        with self.pool.connection() as conn, conn.transaction():
            for table in ("events", "system_tasks", "subject_pseudonyms", "vault_items", "vault_keys"):
                conn.execute(f"DELETE FROM {table} WHERE request_id = %s", [request_id])
            conn.execute("DELETE FROM requests WHERE request_id = %s", [request_id])

    def request(self, request_id: str) -> RequestRecord | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(RequestRecord)) as cur:
            cur.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE request_id = %s", [request_id])
            return cur.fetchone()

    def requests(self, limit: int = 50) -> list[RequestRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(RequestRecord)) as cur:
            cur.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests ORDER BY created_at DESC LIMIT %s", [limit])
            return cur.fetchall()

    def catalogue_snapshot(self, request_id: str) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT catalogue FROM requests WHERE request_id = %s", [request_id]).fetchone()
        if row is None:
            raise KeyError(request_id)
        snapshot: dict[str, Any] = row[0]
        return snapshot

    def set_state(self, request_id: str, state: str, outcome: str | None = None) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE requests SET state = %s, outcome = COALESCE(%s, outcome), updated_at = now() "
                "WHERE request_id = %s",
                [state, outcome, request_id],
            )

    # -- tasks ------------------------------------------------------------------------------------------------

    def tasks(self, request_id: str) -> list[TaskRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(TaskRecord)) as cur:
            cur.execute(f"SELECT {_TASK_COLUMNS} FROM system_tasks WHERE request_id = %s ORDER BY system", [request_id])
            return cur.fetchall()

    def task(self, request_id: str, system: str) -> TaskRecord:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(TaskRecord)) as cur:
            cur.execute(
                f"SELECT {_TASK_COLUMNS} FROM system_tasks WHERE request_id = %s AND system = %s", [request_id, system]
            )
            record = cur.fetchone()
        if record is None:
            raise KeyError(system)
        return record

    def update_task(self, request_id: str, system: str, **changes: Any) -> None:
        unknown = set(changes) - _TASK_FIELDS
        if unknown:
            raise ValueError(f"unknown task fields: {', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{name} = %({name})s" for name in changes)
        values = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in changes.items()}
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE system_tasks SET {assignments}, updated_at = now() "
                "WHERE request_id = %(request_id)s AND system = %(system)s",
                {**values, "request_id": request_id, "system": system},
            )

    # -- events -----------------------------------------------------------------------------------------------

    def record_event(
        self,
        request_id: str,
        system: str | None,
        kind: str,
        event_key: str,
        at: datetime,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Once per (request, event_key): a retried activity records nothing twice."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO events (request_id, system, kind, event_key, detail, at) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id, event_key) DO NOTHING",
                [request_id, system, kind, event_key, Jsonb(detail or {}), at],
            )

    def events(self, request_id: str) -> list[EventRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(EventRecord)) as cur:
            cur.execute(
                "SELECT system, kind, detail, at FROM events WHERE request_id = %s ORDER BY at, id", [request_id]
            )
            return cur.fetchall()


def to_json(record: object) -> dict[str, Any]:
    """A record as JSON-ready data (dates as ISO strings)."""
    out: dict[str, Any] = json.loads(json.dumps(record.__dict__, default=lambda v: v.isoformat()))
    return out
