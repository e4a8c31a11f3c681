"""The ledger's part of class orders: the class's size and Merkle root, and one row per (system, batch).

It owns the tables `class_orders` and `class_batches` (migration 0012). No identifier and no pseudonym list is
written here: a class is its count and root, a batch its index, size, root and counts. Every write is idempotent
(an insert keyed by its natural key, or an update that keeps what a first attempt recorded where that matters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

PLANNED, RUNNING, DONE = "planned", "running", "done"


@dataclass(frozen=True)
class ClassRecord:
    request_id: str
    subject_count: int
    merkle_root: bytes
    source: str
    cutoff: date | None
    snapshot_at: datetime
    paused: bool


@dataclass(frozen=True)
class BatchRecord:
    """One (system, batch): shaped like a system's task where the receipt reads it (evidence.notary.TaskFacts)."""

    request_id: str
    system: str
    batch: int
    subjects: int
    batch_root: bytes
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
    detail: str
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class SystemProgress:
    system: str
    batches: int
    batches_done: int
    subjects: int
    subjects_done: int
    first_started: datetime | None
    last_finished: datetime | None

    @property
    def rate(self) -> float | None:
        """Subjects done per second since the system's first batch started."""
        if not self.subjects_done or self.first_started is None or self.last_finished is None:
            return None
        seconds = (self.last_finished - self.first_started).total_seconds()
        return self.subjects_done / seconds if seconds > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.rate
        return (self.subjects - self.subjects_done) / rate if rate else None


_CLASS_COLUMNS = ", ".join(f.name for f in fields(ClassRecord)).replace("request_id", "request_id::text")
_BATCH_COLUMNS = ", ".join(f.name for f in fields(BatchRecord)).replace("request_id", "request_id::text")


class ClassLedger:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def create(
        self,
        conn: Connection[Any],
        request_id: str,
        *,
        subject_count: int,
        merkle_root: bytes,
        source: str,
        cutoff: date | None,
        snapshot_at: datetime,
    ) -> None:
        conn.execute(
            "INSERT INTO class_orders (request_id, subject_count, merkle_root, source, cutoff, snapshot_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [request_id, subject_count, merkle_root, source, cutoff, snapshot_at],
        )

    def plan_batches(self, request_id: str, system: str, roots: Sequence[tuple[int, bytes]]) -> None:
        """The system's batches as (size, root), in order; planned again by a retried activity, changed by none."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO class_batches (request_id, system, batch, subjects, batch_root, state) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [(request_id, system, n, size, root, PLANNED) for n, (size, root) in enumerate(roots)],
            )

    def delete(self, conn: Connection[Any], request_id: str) -> None:
        """Undo an intake whose workflow could not be started, inside the caller's transaction."""
        conn.execute("DELETE FROM class_batches WHERE request_id = %s", [request_id])
        conn.execute("DELETE FROM class_orders WHERE request_id = %s", [request_id])

    def record(self, request_id: str) -> ClassRecord | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(ClassRecord)) as cur:
            cur.execute(f"SELECT {_CLASS_COLUMNS} FROM class_orders WHERE request_id = %s", [request_id])
            return cur.fetchone()

    def set_paused(self, request_id: str, paused: bool) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE class_orders SET paused = %s WHERE request_id = %s", [paused, request_id])

    def batch(self, request_id: str, system: str, batch: int) -> BatchRecord:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(BatchRecord)) as cur:
            cur.execute(
                f"SELECT {_BATCH_COLUMNS} FROM class_batches WHERE request_id = %s AND system = %s AND batch = %s",
                [request_id, system, batch],
            )
            record = cur.fetchone()
        if record is None:
            raise KeyError(f"{system} batch {batch}")
        return record

    def batches(self, request_id: str) -> list[BatchRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(BatchRecord)) as cur:
            cur.execute(
                f"SELECT {_BATCH_COLUMNS} FROM class_batches WHERE request_id = %s ORDER BY system, batch",
                [request_id],
            )
            return cur.fetchall()

    def located(self, request_id: str, system: str, batch: int, counts: Mapping[str, int], at: datetime) -> None:
        """The batch's baseline, kept from the first attempt: a retry after a crash finds less, not the baseline."""
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE class_batches SET state = %s, started_at = COALESCE(started_at, %s), "
                "records_before = COALESCE(records_before, %s), counts_before = COALESCE(counts_before, %s) "
                "WHERE request_id = %s AND system = %s AND batch = %s",
                [RUNNING, at, sum(counts.values()), Jsonb(dict(counts)), request_id, system, batch],
            )

    def erased(
        self,
        request_id: str,
        system: str,
        batch: int,
        *,
        deleted: int,
        blocked: int,
        key_commitment: str | None,
        remaining: Mapping[str, int],
        level: str,
        detail: str,
    ) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE class_batches SET deleted = %s, blocked = %s, key_commitment = %s, key_count = %s, "
                "records_after = %s, counts_after = %s, evidence_level = %s, detail = %s "
                "WHERE request_id = %s AND system = %s AND batch = %s",
                [
                    deleted,
                    blocked,
                    key_commitment,
                    deleted,
                    sum(remaining.values()),
                    Jsonb(dict(remaining)),
                    level,
                    detail,
                    request_id,
                    system,
                    batch,
                ],
            )

    def done(self, request_id: str, system: str, batch: int, level: str, detail: str, at: datetime) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE class_batches SET state = %s, evidence_level = %s, detail = %s, "
                "finished_at = COALESCE(finished_at, %s) WHERE request_id = %s AND system = %s AND batch = %s",
                [DONE, level, detail, at, request_id, system, batch],
            )

    def progress(self, request_id: str) -> list[SystemProgress]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT system, count(*), count(*) FILTER (WHERE state = %s), sum(subjects), "
                "COALESCE(sum(subjects) FILTER (WHERE state = %s), 0), min(started_at), max(finished_at) "
                "FROM class_batches WHERE request_id = %s GROUP BY system ORDER BY system",
                [DONE, DONE, request_id],
            ).fetchall()
        return [SystemProgress(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5], r[6]) for r in rows]
