"""An application database in Postgres: the subject's rows across tables linked by foreign keys.

Each system's connections come from a bounded pool shared by the worker's steps (a connection per step cost more
than the step's queries): `close_pools` closes them when the worker stops.

The mapping names a subject table (matched by identifier columns) and the tables that reference it, directly or
through each other. Scope is computed parents first (the keys of the subject's rows, then the rows that reference
them, and so on); deletion runs children first, in one transaction. Every value travels as a bound parameter; table
and column names come from the validated catalogue and are quoted with `psycopg.sql.Identifier`.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg_pool import ConnectionPool

from connectors.base import UNRECORDED, Connector, secret_from_env
from domain.errors import TerminalError, TransientError
from domain.identifiers import near_key
from domain.model import EvidenceLevel, IdentifierType, Inventory, Journal, Outcome, Subject, Verification
from domain.resolution import Lookup
from domain.settings.postgres import KIND, PostgresConnection, PostgresSettings

_INTEGER_TYPES = {"int2", "int4", "int8"}
_TEXT_TYPES = {"text", "varchar", "bpchar"}
_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]{0,18})")


@dataclass(frozen=True)
class _ColumnType:
    """A column's type as the catalog names it, a domain resolved to its base type (`citext`, not USER-DEFINED)."""

    schema: str
    name: str

    def values_param(self) -> sql.Composable:
        """The placeholder for an array of values; citext values are bound as citext so that its equality decides."""
        if self.name == "citext":
            return sql.SQL("%s::{}[]").format(sql.Identifier(self.schema, self.name))
        return sql.SQL("%s")


@dataclass(frozen=True)
class _Scope:
    """Rows in scope per table (counts) and the keys that child tables are matched against."""

    counts: dict[str, int]
    keys: dict[str, list[Any]]


class PostgresConnector(Connector):
    kind = "postgres"
    spec = KIND
    settings: PostgresSettings

    def __init__(self, system: str, settings: PostgresSettings) -> None:
        super().__init__(system, settings)
        self._dsn = secret_from_env(settings.connection.dsn_env)
        self._linked = {t.table: t for t in settings.mapping.tables}

    # -- protocol --------------------------------------------------------------------------------------------

    def locate(self, subject: Subject) -> Inventory:
        with self._transaction() as cur:
            scope = self._scope(cur, subject, lock=False)
        found = sum(scope.counts.values())
        return Inventory(counts=scope.counts, note="" if found else "nothing of the subject found")

    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        # Idempotent by construction: a second run finds an empty scope and deletes nothing.
        deleted_keys: list[str] = []
        with self._transaction() as cur:
            scope = self._scope(cur, subject, lock=True)
            for table in reversed(self._tables()):  # children before parents
                predicate, params = self._predicate(table, scope.keys)
                if predicate is None:
                    continue
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} RETURNING {}").format(
                        self._qualified(table), predicate, self._row_label(table)
                    ),
                    params,
                )
                deleted_keys.extend(f"{table}:{row[0]}" for row in cur.fetchall())
            journal.intend(deleted_keys)  # before the commit: the deletion is never durable without its record
        return Outcome(level=EvidenceLevel.VERIFIED_ABSENT, deleted=len(deleted_keys), deleted_keys=tuple(deleted_keys))

    def verify(self, subject: Subject) -> Verification:
        with self._transaction() as cur:
            scope = self._scope(cur, subject, lock=False)
        remaining = sum(scope.counts.values())
        if remaining == 0:
            return Verification(level=EvidenceLevel.VERIFIED_ABSENT, remaining=scope.counts)
        return Verification(
            level=EvidenceLevel.FAILED, remaining=scope.counts, detail=f"{remaining} row(s) of the subject remain"
        )

    # -- scope -----------------------------------------------------------------------------------------------

    def _tables(self) -> list[str]:
        return [self.settings.mapping.subject.table, *self._linked]

    def _scope(self, cur: psycopg.Cursor[Any], subject: Subject, *, lock: bool) -> _Scope:
        """Walk the tables parents first, collecting the keys of every row in scope."""
        root = self.settings.mapping.subject
        types = self._column_types(cur)
        for_update = sql.SQL(" FOR UPDATE") if lock else sql.SQL("")
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        # The subject's own key values stay in scope even when its row is gone, so that verify still finds rows
        # left behind in tables that reference it without a foreign key constraint.
        own_keys: list[Any] = []
        for kind, column in root.match.items():
            column_type = types[(root.table, column)]
            values = _typed_values(subject.values(kind), column_type)
            if values:
                clauses.append(sql.SQL("{} = ANY({})").format(sql.Identifier(column), column_type.values_param()))
                params.append(values)
                if column == root.key:
                    own_keys.extend(values)
        if not clauses:
            # a search over nothing proves nothing: never let it read as "verified absent"
            raise TerminalError(
                f"postgres {self.system}: no identifier value of the subject can be compared with a mapped column of "
                f"{root.table}: nothing would be searched"
            )
        cur.execute(
            sql.SQL("SELECT {} FROM {} WHERE {}{}").format(
                sql.Identifier(root.key), self._qualified(root.table), sql.SQL(" OR ").join(clauses), for_update
            ),
            params,
        )
        found = [row[0] for row in cur.fetchall()]
        counts = {root.table: len(found)}
        keys = {root.table: found + [k for k in own_keys if k not in found]}
        for table, linked in self._linked.items():
            predicate, params = self._predicate(table, keys)
            if predicate is None:
                counts[table], keys[table] = 0, []
                continue
            target = sql.Identifier(linked.key) if linked.key else sql.SQL("NULL")
            cur.execute(
                sql.SQL("SELECT {} FROM {} WHERE {}{}").format(target, self._qualified(table), predicate, for_update),
                params,
            )
            rows = cur.fetchall()
            counts[table] = len(rows)
            keys[table] = [row[0] for row in rows] if linked.key else []
        return _Scope(counts=counts, keys=keys)

    def _predicate(self, table: str, keys: Mapping[str, list[Any]]) -> tuple[sql.Composable | None, list[Any]]:
        """`col = ANY(%s) OR ...` over the columns whose referenced table has keys in scope."""
        root = self.settings.mapping.subject
        references = {root.key: root.table} if table == root.table else self._linked[table].references
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for column, parent in references.items():
            if keys.get(parent):
                clauses.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
                params.append(keys[parent])
        if not clauses:
            return None, []
        return sql.SQL(" OR ").join(clauses), params

    def _row_label(self, table: str) -> sql.Composable:
        """What a deleted row is called in the key commitment: its key, or its reference columns."""
        root = self.settings.mapping.subject
        if table == root.table:
            return sql.Identifier(root.key)
        linked = self._linked[table]
        if linked.key:
            return sql.Identifier(linked.key)
        columns = [sql.Identifier(c) for c in linked.references]
        return sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(columns))

    def _column_types(self, cur: psycopg.Cursor[Any]) -> dict[tuple[str, str], _ColumnType]:
        cur.execute(_COLUMN_TYPES, [self.settings.mapping.schema_name, self._tables()])
        types = {(t, c): _ColumnType(schema, name) for t, c, schema, name in cur.fetchall()}
        root = self.settings.mapping.subject
        for column in root.match.values():
            if (root.table, column) not in types:
                raise TerminalError(f"postgres {self.system}: column {root.table}.{column} does not exist")
        return types

    def _qualified(self, table: str) -> sql.Composable:
        return sql.Identifier(self.settings.mapping.schema_name, table)

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        with _transaction(_pool(self.system, self._dsn), self.system, self.settings.connection) as cur:
            yield cur


class PostgresIdentitySource:
    """An identity source: one table of a postgres system whose columns tie identifiers together. Read only.

    A row is found exactly by the database's own equality on a column (a `citext` column folds case itself), or
    as a near-match by the normal form of its type (domain.identifiers: the mailbox of an address, the E.164 form of
    a phone), computed by SQL on the column and compared with bound normal forms: never a pattern from input.
    """

    MAX_ROWS = 20  # one subject is a handful of accounts; more means an identifier shared too widely to resolve

    def __init__(
        self, name: str, settings: PostgresSettings, table: str, columns: Mapping[IdentifierType, str]
    ) -> None:
        self.name = name
        self._dsn = secret_from_env(settings.connection.dsn_env)
        self._connection = settings.connection
        self._schema = settings.mapping.schema_name
        self._table = table
        self._columns = dict(columns)

    def lookup(self, subject: Subject) -> Lookup:
        with _transaction(_pool(self.name, self._dsn), self.name, self._connection, read_only=True) as cur:
            cur.execute(_COLUMN_TYPES, [self._schema, [self._table]])
            types = {c: _ColumnType(schema, name) for _, c, schema, name in cur.fetchall()}
            exact, exact_params, near, near_params = self._predicates(subject, types)
            if not exact and not near:
                return Lookup(exact=(), near=())
            kinds = list(self._columns)
            is_exact = sql.SQL(" OR ").join(exact) if exact else sql.SQL("false")
            cur.execute(
                sql.SQL("SELECT {}, ({}) FROM {} WHERE ({}) OR ({}) LIMIT %s").format(
                    sql.SQL(", ").join(sql.Identifier(self._columns[k]) for k in kinds),
                    is_exact,
                    sql.Identifier(self._schema, self._table),
                    is_exact,
                    sql.SQL(" OR ").join(near) if near else sql.SQL("false"),
                ),
                [*exact_params, *exact_params, *near_params, self.MAX_ROWS + 1],
            )
            rows = cur.fetchall()
        if len(rows) > self.MAX_ROWS:
            raise TerminalError(
                f"identity source {self.name}: more than {self.MAX_ROWS} rows match the subject: an identifier is "
                "shared too widely to resolve safely"
            )
        found = [({k: str(v) for k, v in zip(kinds, row[:-1], strict=True) if v is not None}, row[-1]) for row in rows]
        return Lookup(
            exact=tuple(values for values, exactly in found if exactly),
            near=tuple(values for values, exactly in found if not exactly),
        )

    def _predicates(
        self, subject: Subject, types: Mapping[str, _ColumnType]
    ) -> tuple[list[sql.Composable], list[Any], list[sql.Composable], list[Any]]:
        exact: list[sql.Composable] = []
        exact_params: list[Any] = []
        near: list[sql.Composable] = []
        near_params: list[Any] = []
        for kind, column in self._columns.items():
            if column not in types:
                raise TerminalError(f"identity source {self.name}: column {self._table}.{column} does not exist")
            column_type = types[column]
            values = _typed_values(subject.values(kind), column_type)
            if values:
                exact.append(sql.SQL("{} = ANY({})").format(sql.Identifier(column), column_type.values_param()))
                exact_params.append(values)
            normal = sorted({k for v in subject.values(kind) if (k := near_key(kind, v)) is not None})
            if normal and kind in _NEAR_FORMS and (column_type.name in _TEXT_TYPES or column_type.name == "citext"):
                near.append(sql.SQL(_NEAR_FORMS[kind]).format(sql.Identifier(column)))
                near_params.append(normal)
        return exact, exact_params, near, near_params


# The normal forms of domain.identifiers.near_key, computed on a column (constant patterns, bound values).
_NEAR_FORMS = {
    IdentifierType.EMAIL: r"regexp_replace(lower(btrim({}::text)), '\+[^@]*@', '@') = ANY(%s::text[])",
    IdentifierType.PHONE: r"regexp_replace(btrim({}::text), '[ ().-]', '', 'g') = ANY(%s::text[])",
}


# Per system: a worker runs at most a few steps of one system at once (the catalogue's max_concurrency, the
# activity threads); a step that finds every connection taken waits, then is retried as transient.
POOL_SIZE = 8
POOL_WAIT_S = 30.0
_pools: dict[tuple[str, str], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(system: str, dsn: str) -> ConnectionPool:
    """The system's pool, opened on first use; a catalogue that names another database gets a pool of its own."""
    with _pools_lock:
        pool = _pools.get((system, dsn))
        if pool is None:
            pool = ConnectionPool(
                dsn,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=POOL_WAIT_S,
                kwargs={"connect_timeout": 10, "application_name": f"erasure {system}"[:63]},
                check=ConnectionPool.check_connection,  # a server restarted since: a new connection, not a failure
                name=f"postgres {system}",
                open=True,
            )
            _pools[(system, dsn)] = pool
        return pool


def close_pools() -> None:
    """Close every system's connections (the worker stops)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


@contextmanager
def _transaction(
    pool: ConnectionPool, system: str, timeouts: PostgresConnection, *, read_only: bool = False
) -> Iterator[psycopg.Cursor[Any]]:
    """One transaction with bounded lock and statement waits; errors mapped at this edge."""
    try:
        with pool.connection() as conn:
            conn.read_only = read_only  # set on every use: a pooled connection keeps its last setting
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                    [f"{timeouts.lock_timeout_ms}ms", f"{timeouts.statement_timeout_ms}ms"],
                )
                yield cur
    except psycopg.Error as exc:
        raise _map_error(system, exc) from exc


# Each column's type from pg_catalog, domains followed down to their base type: information_schema says only
# USER-DEFINED for an extension's type such as citext.
_COLUMN_TYPES = """
WITH RECURSIVE columns AS (
    SELECT c.relname AS table_name, a.attname AS column_name, a.atttypid AS type_oid
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %s AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
    SELECT columns.table_name, columns.column_name, t.typbasetype
    FROM columns JOIN pg_type t ON t.oid = columns.type_oid
    WHERE t.typtype = 'd'
)
SELECT columns.table_name, columns.column_name, n.nspname, t.typname
FROM columns
JOIN pg_type t ON t.oid = columns.type_oid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE t.typtype <> 'd'
"""

_TRANSIENT = (
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.TooManyConnections,
)


def _map_error(system: str, exc: psycopg.Error) -> Exception:
    """Postgres messages can quote row values (\"Key (id)=(...)\"), so only the SQLSTATE and class travel on."""
    what = f"postgres {system}: {type(exc).__name__} (sqlstate {exc.sqlstate or 'none'})"
    if isinstance(exc, _TRANSIENT) or isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None:
        return TransientError(what)
    if isinstance(exc, pg_errors.ForeignKeyViolation):
        # a reference the catalogue does not map: retrying cannot help until the mapping is fixed
        return TerminalError(f"{what}: a table that references the subject is missing from the mapping")
    return TerminalError(what)


def _typed_values(values: Sequence[str], column_type: _ColumnType) -> list[Any]:
    """Convert identifier values to the column's type without ever widening the match.

    Only canonical spellings convert: "01" is not the integer 1, so it cannot match user 1. Values that cannot be
    the column's type cannot match any row and are dropped.
    """
    if column_type.name in _TEXT_TYPES or column_type.name == "citext":
        return list(values)
    if column_type.name in _INTEGER_TYPES:
        return [int(v) for v in values if _CANONICAL_INT.fullmatch(v)]
    if column_type.name == "uuid":
        out = []
        for v in values:
            try:
                parsed = uuid.UUID(v)
            except ValueError:
                continue
            if str(parsed) == v.lower():
                out.append(parsed)
        return out
    raise TerminalError(f"unsupported column type for matching identifiers: {column_type.name}")
