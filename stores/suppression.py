"""The suppression list: keyed hashes of erased subjects' identifiers, so that ingestion can refuse their data.

It owns the `suppression` table. The hashes are HMACs under a long-lived key of their own (not the ledger's), and
nothing asked of the list is stored or logged.
"""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from domain.model import IdentifierType, Subject
from stores.pseudonyms import Pseudonymizer


class SuppressionList:
    def __init__(self, pool: ConnectionPool, hashes: Pseudonymizer) -> None:
        self._pool = pool
        self._hashes = hashes

    def add(self, subject: Subject) -> None:
        """The subject's identifiers join the list; adding them again changes nothing."""
        rows = [(kind.value, digest) for kind, digest in self._hashes.of_subject(subject)]
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO suppression (identifier_type, digest) VALUES (%s, %s) ON CONFLICT DO NOTHING", rows
            )

    def contains(self, kind: IdentifierType, value: str) -> bool:
        digest = self._hashes.pseudonym(kind, value)
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM suppression WHERE identifier_type = %s AND digest = %s", [kind.value, digest]
            ).fetchone()
        return row is not None
