"""The suppression list: keyed hashes of erased subjects' identifiers, so that ingestion can refuse their data.

It owns the `suppression` table and the `suppression_key` row. The hashes are HMACs under a long-lived key of their
own, kept apart from every other key: in production stored only wrapped by the KMS master key (like the vault's data
keys), in development a 0600 file in a directory of its own. A row holds the identifier type and the hash only: no
request id and no time. (Postgres itself still orders rows by when they were added, in the table's physical order and
its rows' transaction ids: whoever reads the live database can guess when a row came, not from the row's contents.)
Nothing asked of the list is stored or logged.
"""

from __future__ import annotations

import secrets

from psycopg_pool import ConnectionPool

from domain.errors import TerminalError
from domain.model import IdentifierType, Subject
from stores.pseudonyms import Pseudonymizer
from stores.vault import MasterKey

KEY_BYTES = 32
_WRAPPING_CONTEXT = "suppression-list"  # never a request id (a UUID): a request's data key cannot be swapped in


class SuppressionList:
    def __init__(self, pool: ConnectionPool, key: bytes) -> None:
        self._pool = pool
        self._hashes = Pseudonymizer(key, purpose="suppression")

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


def wrapped_key(pool: ConnectionPool, master: MasterKey, *, create: bool = True) -> bytes:
    """The list's key as the master key (KMS) unwraps it from the ledger; made and stored wrapped the first time
    (unless `create` is false: a read-only command never makes a key)."""
    with pool.connection() as conn:
        row = conn.execute(_READ_KEY).fetchone()
        if row is None and not create:
            raise TerminalError("the suppression list has no key yet: nothing was ever suppressed")
        if row is None:  # of two processes starting at once, the first insert wins and both read it back
            conn.execute(
                "INSERT INTO suppression_key (wrapped_key, wrapping) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [master.wrap(secrets.token_bytes(KEY_BYTES), _WRAPPING_CONTEXT), master.wrapping],
            )
            row = conn.execute(_READ_KEY).fetchone()
    if row is None:
        raise TerminalError("the suppression list's key could not be stored")
    return master.unwrap(bytes(row[0]), _WRAPPING_CONTEXT, row[1])


_READ_KEY = "SELECT wrapped_key, wrapping FROM suppression_key"
