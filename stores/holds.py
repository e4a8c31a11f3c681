"""The hold registry: legal holds (litigation holds, preservation orders) that stop erasure while they are placed.

It owns the tables `holds`, `hold_subjects` and `hold_restrictions`. A hold names one request, or subjects by keyed
pseudonyms: HMACs under the suppression list's long-lived key with a purpose of their own (a request's own
pseudonyms are keyed by its data key, which does not exist before the request does, so a hold placed before a
request could never match them). The two sets of hashes cannot be joined. No identifier is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row
from psycopg_pool import ConnectionPool

from domain.model import Subject
from stores.pseudonyms import Pseudonymizer


@dataclass(frozen=True)
class HoldRecord:
    hold_id: str
    case_reference: str
    request_id: str | None
    systems: list[str]  # empty: every system
    categories: list[str]  # empty: every data category
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None

    def covers(self, system: str, category: str) -> bool:
        return (not self.systems or system in self.systems) and (not self.categories or category in self.categories)


_COLUMNS = (
    "hold_id::text, case_reference, request_id::text, systems, categories, placed_by, placed_at, released_by, "
    "released_at"
)


class HoldRegistry:
    def __init__(self, pool: ConnectionPool, key: bytes) -> None:
        self._pool = pool
        self._pseudonyms = Pseudonymizer(key, purpose="legal-hold")

    def place(
        self,
        case_reference: str,
        *,
        request_id: str | None,
        subject: Subject | None,
        systems: Sequence[str],
        categories: Sequence[str],
        placed_by: str,
        at: datetime,
    ) -> str:
        """A new hold on one request or on a subject's identifiers; returns its id."""
        hold_id = str(uuid.uuid4())
        pseudonyms = list(self._pseudonyms.of_subject(subject)) if subject is not None else []
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO holds (hold_id, case_reference, request_id, systems, categories, placed_by, placed_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [hold_id, case_reference, request_id, list(systems), list(categories), placed_by, at],
            )
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO hold_subjects (hold_id, identifier_type, pseudonym) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING",
                    [(hold_id, kind.value, pseudonym) for kind, pseudonym in pseudonyms],
                )
        return hold_id

    def release(self, hold_id: str, released_by: str, at: datetime) -> HoldRecord | None:
        """Release the hold (once: a second release changes nothing); None if there is no such hold."""
        with self._pool.connection() as conn:
            conn.execute(
                "UPDATE holds SET released_by = %s, released_at = %s WHERE hold_id = %s AND released_at IS NULL",
                [released_by, at, hold_id],
            )
        return self.hold(hold_id)

    def hold(self, hold_id: str) -> HoldRecord | None:
        with self._pool.connection() as conn, conn.cursor(row_factory=class_row(HoldRecord)) as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM holds WHERE hold_id = %s", [hold_id])
            return cur.fetchone()

    def placed_on(self, request_id: str, subject: Subject, system: str, category: str) -> list[HoldRecord]:
        """The holds in place that cover the request's system: on the request itself, or on any of its subject's
        identifiers (matched by pseudonym)."""
        pseudonyms = [f"{kind.value}:{p}" for kind, p in self._pseudonyms.of_subject(subject)]
        with self._pool.connection() as conn, conn.cursor(row_factory=class_row(HoldRecord)) as cur:
            cur.execute(
                f"SELECT {_COLUMNS} FROM holds h WHERE released_at IS NULL AND (request_id = %s OR EXISTS ("
                "SELECT 1 FROM hold_subjects s WHERE s.hold_id = h.hold_id "
                "AND s.identifier_type || ':' || s.pseudonym = ANY(%s))) ORDER BY placed_at, hold_id",
                [request_id, pseudonyms],
            )
            return [h for h in cur.fetchall() if h.covers(system, category)]

    # -- what a restriction put in place ------------------------------------------------------------------------

    def restricted(self, request_id: str, system: str, tokens: Iterable[bytes]) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO hold_restrictions (request_id, system, token) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(request_id, system, token) for token in tokens],
            )

    def restrictions(self, request_id: str, system: str) -> set[bytes]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT token FROM hold_restrictions WHERE request_id = %s AND system = %s", [request_id, system]
            ).fetchall()
        return {bytes(row[0]) for row in rows}

    def lifted(self, request_id: str, system: str) -> None:
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM hold_restrictions WHERE request_id = %s AND system = %s", [request_id, system])
