"""The transparency log in Postgres: append-only RFC 9162 tree of signed envelopes, with signed checkpoints.

It owns the `receipts` table: which statement was logged for which (request, system, action), and where.

Only the hashes of complete perfect subtrees are stored (about two per leaf), so roots and proofs for a log of a
million entries need a few dozen indexed lookups, never a rehash of the leaves. One head row, locked for update,
serialises appends: concurrent workers queue on it and the tree never forks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg_pool import ConnectionPool

from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from evidence.keys import Signer
from evidence.merkle import consistency_proof, inclusion_proof, leaf_hash, new_nodes, root


class _Nodes:
    """The perfect-subtree hashes, read through one connection (and cached for one operation)."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn
        self._cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            row = self._conn.execute(
                "SELECT hash FROM tlog_nodes WHERE level = %s AND node_index = %s", [level, index]
            ).fetchone()
            if row is None:
                raise LookupError(f"transparency log has no node at level {level}, index {index}")
            self._cache[key] = bytes(row[0])
        return self._cache[key]


@dataclass(frozen=True)
class Logged:
    envelope: bytes
    leaf_index: int


@dataclass(frozen=True)
class LoggedReceipt:
    system: str
    action: str
    envelope: bytes
    leaf_index: int


class TransparencyLog:
    def __init__(self, pool: ConnectionPool, signer: Signer, origin: str) -> None:
        self._pool = pool
        self.signer = signer
        self.origin = origin

    def notarise(self, request_id: str, system: str, action: str, make_statement: Callable[[], bytes]) -> Logged:
        """Sign the statement in a DSSE envelope and append it once for (request, system, action)."""
        return self.append_once(
            request_id,
            system,
            action,
            lambda: sign_envelope(make_statement(), IN_TOTO_PAYLOAD_TYPE, self.signer).to_json(),
        )

    def append_once(self, request_id: str, system: str, action: str, make_envelope: Callable[[], bytes]) -> Logged:
        """Sign and append the statement for (request, system, action) unless it is already logged.

        The envelope, its leaf and its receipt row commit together, so a retried activity never appends twice.
        """
        with self._pool.connection() as conn, conn.transaction():
            existing = self._receipt(conn, request_id, system, action)
            if existing is not None:
                return existing
            size = conn.execute("SELECT size FROM tlog_head FOR UPDATE").fetchone()[0]  # type: ignore[index]
            existing = self._receipt(conn, request_id, system, action)  # another attempt may have won the lock
            if existing is not None:
                return existing
            envelope = make_envelope()
            self._append(conn, size, envelope)
            conn.execute(
                "INSERT INTO receipts (request_id, system, action, envelope, sha256, leaf_index) "
                "VALUES (%s, %s, %s, %s, encode(sha256(%s), 'hex'), %s)",
                [request_id, system, action, envelope, envelope, size],
            )
            return Logged(envelope, size)

    def append_entry(self, entry: bytes) -> int:
        """Append a bare entry (benchmarks and tests); returns its leaf index."""
        with self._pool.connection() as conn, conn.transaction():
            size: int = conn.execute("SELECT size FROM tlog_head FOR UPDATE").fetchone()[0]  # type: ignore[index]
            self._append(conn, size, entry)
            return size

    def _append(self, conn: Connection[Any], index: int, entry: bytes) -> None:
        leaf = leaf_hash(entry)
        conn.execute("INSERT INTO tlog_leaves (leaf_index, leaf_hash, entry) VALUES (%s, %s, %s)", [index, leaf, entry])
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO tlog_nodes (level, node_index, hash) VALUES (%s, %s, %s)",
                new_nodes(index, leaf, _Nodes(conn)),
            )
        conn.execute("UPDATE tlog_head SET size = %s", [index + 1])

    def _receipt(self, conn: Connection[Any], request_id: str, system: str, action: str) -> Logged | None:
        row = conn.execute(
            "SELECT envelope, leaf_index FROM receipts WHERE request_id = %s AND system = %s AND action = %s",
            [request_id, system, action],
        ).fetchone()
        return Logged(bytes(row[0]), int(row[1])) if row else None

    # -- reading ----------------------------------------------------------------------------------------------

    def receipts(self, request_id: str) -> list[LoggedReceipt]:
        """Every statement logged for the request (receipts, certificate, shredding), in log order."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT system, action, envelope, leaf_index FROM receipts WHERE request_id = %s ORDER BY leaf_index",
                [request_id],
            ).fetchall()
        return [LoggedReceipt(str(s), str(a), bytes(e), int(i)) for s, a, e, i in rows]

    def size(self) -> int:
        with self._pool.connection() as conn:
            return int(conn.execute("SELECT size FROM tlog_head").fetchone()[0])  # type: ignore[index]

    def root(self, size: int) -> bytes:
        with self._pool.connection() as conn:
            return root(size, _Nodes(conn))

    def inclusion_proof(self, leaf_index: int, size: int) -> list[bytes]:
        with self._pool.connection() as conn:
            return inclusion_proof(leaf_index, size, _Nodes(conn))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._pool.connection() as conn:
            return consistency_proof(old_size, new_size, _Nodes(conn))

    def checkpoint(self) -> tuple[Checkpoint, str]:
        """Sign (once per size) and return the checkpoint of the log as it stands."""
        with self._pool.connection() as conn:
            size = int(conn.execute("SELECT size FROM tlog_head").fetchone()[0])  # type: ignore[index]
            row = conn.execute("SELECT note FROM tlog_checkpoints WHERE tree_size = %s", [size]).fetchone()
            checkpoint = Checkpoint(self.origin, size, root(size, _Nodes(conn)))
            if row is not None:
                return checkpoint, str(row[0])
            note = sign_checkpoint(checkpoint, self.signer, self.origin)
            conn.execute(
                "INSERT INTO tlog_checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s) "
                "ON CONFLICT (tree_size) DO NOTHING",
                [size, checkpoint.root_hash, note],
            )
            stored = conn.execute("SELECT note FROM tlog_checkpoints WHERE tree_size = %s", [size]).fetchone()
            return checkpoint, str(stored[0])  # type: ignore[index]

    def earlier_checkpoint_sizes(self, before: int, limit: int) -> list[int]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT tree_size FROM tlog_checkpoints WHERE tree_size > 0 AND tree_size < %s "
                "ORDER BY tree_size DESC LIMIT %s",
                [before, limit],
            ).fetchall()
        return [int(r[0]) for r in rows]
