"""The transparency log in Postgres: append-only RFC 9162 tree of signed envelopes, with signed checkpoints.

It owns the `receipts` table: which statement was logged for which (request, system, action), and where.

Only the hashes of complete perfect subtrees are stored (about two per leaf), so roots and proofs for a log of a
million entries read a few dozen of them, in one query, never a rehash of the leaves. One head row, locked for
update, serialises appends: concurrent workers queue on it and the tree never forks. Many entries append in one
transaction (`notarise_many`, `append_entries`): their leaves, nodes and receipt rows are written with COPY, and the
tree is the same as if they had been appended one by one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from psycopg import Connection
from psycopg_pool import ConnectionPool

from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from evidence.keys import Signer
from evidence.merkle import NodeSource, consistency_proof, inclusion_proof, leaf_hash, new_nodes, root

T = TypeVar("T")


class _Nodes:
    """The perfect-subtree hashes, read through one connection (and cached for one operation)."""

    def __init__(self, conn: Connection[Any]) -> None:
        self._conn = conn
        self._cache: dict[tuple[int, int], bytes] = {}

    def remember(self, level: int, index: int, value: bytes) -> None:
        """A node this transaction is about to write: later appends of the same batch read it from here."""
        self._cache[(level, index)] = value

    def preload(self, keys: Iterable[tuple[int, int]]) -> None:
        """Read these nodes in one query (a proof's O(log n) nodes: one round trip instead of one each)."""
        wanted = [key for key in set(keys) if key not in self._cache]
        if not wanted:
            return
        rows = self._conn.execute(
            "SELECT n.level, n.node_index, n.hash FROM tlog_nodes n "
            "JOIN unnest(%s::integer[], %s::bigint[]) AS w(level, node_index) USING (level, node_index)",
            [[level for level, _ in wanted], [index for _, index in wanted]],
        ).fetchall()
        for level, index, value in rows:
            self._cache[(int(level), int(index))] = bytes(value)

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
class Notarisation:
    """One statement to sign and log for (request, system, action)."""

    request_id: str
    system: str
    action: str
    statement: bytes


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

    def notarise_many(self, statements: Sequence[Notarisation]) -> list[Logged]:
        """Sign and append many statements in one transaction, each once for its (request, system, action).

        Statements already logged (a retried batch) are returned as logged and not signed again; the rest are
        signed before the head row is locked, so concurrent writers wait only for the writes.
        """
        keys = [(s.request_id, s.system, s.action) for s in statements]
        with self._pool.connection() as conn:
            logged = self._receipts_for(conn, keys)
        envelopes = {
            (s.request_id, s.system, s.action): sign_envelope(s.statement, IN_TOTO_PAYLOAD_TYPE, self.signer).to_json()
            for s in statements
            if (s.request_id, s.system, s.action) not in logged
        }
        with self._pool.connection() as conn, conn.transaction():
            size = conn.execute("SELECT size FROM tlog_head FOR UPDATE").fetchone()[0]  # type: ignore[index]
            logged |= self._receipts_for(conn, list(envelopes))  # another attempt may have won the lock
            fresh = [(key, envelope) for key, envelope in envelopes.items() if key not in logged]
            self._append(conn, size, [envelope for _, envelope in fresh])
            with (
                conn.cursor() as cur,
                cur.copy("COPY receipts (request_id, system, action, envelope, sha256, leaf_index) FROM STDIN") as copy,
            ):
                for offset, ((request_id, system, action), envelope) in enumerate(fresh):
                    index = size + offset
                    copy.write_row((request_id, system, action, envelope, hashlib.sha256(envelope).hexdigest(), index))
                    logged[(request_id, system, action)] = Logged(envelope, index)
        return [logged[key] for key in keys]

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
            self._append(conn, size, [envelope])
            conn.execute(
                "INSERT INTO receipts (request_id, system, action, envelope, sha256, leaf_index) "
                "VALUES (%s, %s, %s, %s, encode(sha256(%s), 'hex'), %s)",
                [request_id, system, action, envelope, envelope, size],
            )
            return Logged(envelope, size)

    def append_entry(self, entry: bytes) -> int:
        """Append a bare entry (benchmarks and tests); returns its leaf index."""
        return self.append_entries([entry])

    def append_entries(self, entries: Sequence[bytes]) -> int:
        """Append bare entries in one transaction (benchmarks and tests); returns the first one's leaf index."""
        with self._pool.connection() as conn, conn.transaction():
            size: int = conn.execute("SELECT size FROM tlog_head FOR UPDATE").fetchone()[0]  # type: ignore[index]
            self._append(conn, size, entries)
            return size

    def _append(self, conn: Connection[Any], first: int, entries: Sequence[bytes]) -> None:
        """Write entries as leaves first..first+len-1 with the perfect nodes they complete, and move the head."""
        if not entries:
            return
        nodes = _Nodes(conn)
        leaves: list[tuple[int, bytes, bytes]] = []
        completed: list[tuple[int, int, bytes]] = []
        for index, entry in enumerate(entries, start=first):  # before the COPY: the connection reads nothing during it
            leaf = leaf_hash(entry)
            leaves.append((index, leaf, entry))
            for level, node_index, value in new_nodes(index, leaf, nodes):
                nodes.remember(level, node_index, value)
                completed.append((level, node_index, value))
        with conn.cursor() as cur:
            with cur.copy("COPY tlog_leaves (leaf_index, leaf_hash, entry) FROM STDIN") as copy:
                for leaf_row in leaves:
                    copy.write_row(leaf_row)
            with cur.copy("COPY tlog_nodes (level, node_index, hash) FROM STDIN") as copy:
                for node_row in completed:
                    copy.write_row(node_row)
        conn.execute("UPDATE tlog_head SET size = %s", [first + len(entries)])

    def _receipt(self, conn: Connection[Any], request_id: str, system: str, action: str) -> Logged | None:
        row = conn.execute(
            "SELECT envelope, leaf_index FROM receipts WHERE request_id = %s AND system = %s AND action = %s",
            [request_id, system, action],
        ).fetchone()
        return Logged(bytes(row[0]), int(row[1])) if row else None

    def _receipts_for(
        self, conn: Connection[Any], keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Logged]:
        if not keys:
            return {}
        rows = conn.execute(
            "SELECT r.request_id::text, r.system, r.action, r.envelope, r.leaf_index FROM receipts r "
            "JOIN unnest(%s::uuid[], %s::text[], %s::text[]) AS k(request_id, system, action) "
            "USING (request_id, system, action)",
            [[k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]],
        ).fetchall()
        return {(str(r), str(s), str(a)): Logged(bytes(e), int(i)) for r, s, a, e, i in rows}

    # -- reading ----------------------------------------------------------------------------------------------

    def receipt(self, request_id: str, system: str, action: str) -> Logged | None:
        """The statement logged for (request, system, action), if any."""
        with self._pool.connection() as conn:
            return self._receipt(conn, request_id, system, action)

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
            return _in_one_query(conn, lambda nodes: root(size, nodes))

    def inclusion_proof(self, leaf_index: int, size: int) -> list[bytes]:
        with self._pool.connection() as conn:
            return _in_one_query(conn, lambda nodes: inclusion_proof(leaf_index, size, nodes))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._pool.connection() as conn:
            return _in_one_query(conn, lambda nodes: consistency_proof(old_size, new_size, nodes))

    def checkpoint(self) -> tuple[Checkpoint, str]:
        """Sign (once per size) and return the checkpoint of the log as it stands."""
        with self._pool.connection() as conn:
            size = int(conn.execute("SELECT size FROM tlog_head").fetchone()[0])  # type: ignore[index]
            row = conn.execute("SELECT note FROM tlog_checkpoints WHERE tree_size = %s", [size]).fetchone()
            checkpoint = Checkpoint(self.origin, size, _in_one_query(conn, lambda nodes: root(size, nodes)))
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


class _Wanted:
    """Records which nodes a computation reads: which nodes a root or proof needs does not depend on their hashes."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def node(self, level: int, index: int) -> bytes:
        self.keys.append((level, index))
        return bytes(32)


def _in_one_query(conn: Connection[Any], compute: Callable[[NodeSource], T]) -> T:
    """Run `compute` once to learn the nodes it reads, fetch them all in one query, and run it on them."""
    wanted = _Wanted()
    compute(wanted)
    nodes = _Nodes(conn)
    nodes.preload(wanted.keys)
    return compute(nodes)
