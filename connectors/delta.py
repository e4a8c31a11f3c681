"""Delta Lake tables on S3 (package `deltalake`, delta-rs): delete a subject's rows and prove nothing of them is left.

A row deleted from a Delta table lives on in three places (four in a versioned bucket), so `erase` works through all,
without changing the owner's table properties and without touching files a concurrent writer has not committed yet:

1. Rows: a MERGE with `WHEN MATCHED DELETE` joins the table to an Arrow table of the subject's keys. The keys travel
   as Arrow data, never as SQL text, so no value can widen the predicate (delta-rs takes predicates only as SQL
   strings; the merge predicate here holds nothing but validated column names). On a table with deletion vectors the
   merge rewrites each file holding a live row of the subject without the vector; rows a vector already hides stay in
   their Parquet file, which delta-rs cannot purge: that is a refusal naming the operator's step.
2. The transaction log: old commits carry the keys in add-action statistics (and in partition values and paths when
   the table is partitioned by the key), and the MERGE commit records key literals in its predicate. A checkpoint is
   written at a version after that commit (an empty append if no other commit followed), and every log file of an
   earlier version is deleted by name, in each form the protocol knows (`connectors.delta_log`). Time travel before
   that version ends there; the outcome says so.
3. Data files: files the log names (tombstoned, or added by a cut-off version) that hold a trace are deleted at once;
   files the log never named only past a safe age, since a concurrent writer may not have committed them yet. Live
   files and deletion-vector files are never deleted. The checkpoint drops the tombstones of deleted files.
4. Old object versions: in a versioned bucket the deletions of steps 2 and 3 only lay delete markers; the old
   versions holding a trace are deleted by version id.

Concurrent erasures on one table conflict on commit or find a file gone under another's clean-up: both are transient,
and the retried erase converges.

`verify` trusts none of that: it reads the table again, then lists every object version under the table's prefix and
reads each Parquet data file (key column and statistics) and each log file (JSON commits, checkpoints) for a trace.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from deltalake import DeltaTable, QueryBuilder
from deltalake.exceptions import CommitFailedError, DeltaError, DeltaProtocolError, TableNotFoundError
from deltalake.schema import PrimitiveType

from connectors import aws, delta_log
from connectors.aws import AwsClient, ObjectVersion
from connectors.base import UNRECORDED, Connector
from domain.errors import ErasureError, TerminalError, Throttled, TransientError
from domain.model import EvidenceLevel, IdentifierType, Inventory, Journal, Outcome, Subject, Verification
from domain.settings.delta import KIND, Connection, DeltaSettings, DeltaTableMapping

_LOG_DIR = delta_log.LOG_DIR
_SOURCE_KEY = "erasure_key"  # the merge source's only column
_TRUNCATED_STAT_MIN = 32  # the shortest cut of a long string statistic (Spark's; delta-rs cuts longer)
_VANISHED_CODES = {"NoSuchKey", "NoSuchVersion", "404"}
_LEASE_NAME = "_erasure_lease"
_LEASE = timedelta(minutes=15)  # longer than an erase attempt may run (the activity's start-to-close, 10 minutes)
_TAKEN_CODES = {
    "PreconditionFailed",
    "ConditionalRequestConflict",
    "412",
    "409",
}  # removed meanwhile, by another request's clean-up
# reader features the pyarrow dataset refuses but delta-rs's own engine reads
_ENGINE_ONLY_FEATURES = {"deletionVectors"}


class DeltaConnector(Connector):
    kind = "delta"
    # one MERGE per table holds the batch in memory as its Arrow source; past a few thousand keys the min..max range
    # delta-rs derives from them for file pruning spans most files anyway
    spec = KIND

    def __init__(self, system: str, settings: Any) -> None:
        self.settings: DeltaSettings = DeltaSettings.model_validate(settings)
        super().__init__(system, self.settings)
        self._endpoint = _endpoint(self.settings.connection)
        self._s3: AwsClient | None = None

    def locate(self, subject: Subject) -> Inventory:
        counts: dict[str, int] = {}
        for table, values in self._targets(subject):
            with _mapped_errors(table.path):
                counts[table.path] = sum(self._key_counts(table, values).values()) if values else 0
        return Inventory(counts)

    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        """Delete, then clear the data files and the log history of every mapped table. `idempotency_key` is not
        needed: a second run's merge finds nothing and its clean-up finds nothing left, so repeating is safe."""
        deleted = 0
        keys: list[str] = []
        cut: dict[str, int] = {}
        for table, values in self._targets(subject):
            if not values:
                continue
            with _mapped_errors(table.path), self._turn(table):
                rows, present = self._merge(table, values, journal)
                deleted += rows
                cut[table.path] = self._clean_table(table, _Needle(frozenset(values), table.key_column))
            keys.extend(present)
        return Outcome(
            level=EvidenceLevel.VERIFIED_ABSENT,  # provisional: verify decides
            deleted=deleted,
            deleted_keys=tuple(keys),
            facts={cut_fact(path): version for path, version in cut.items()},
            detail=f"deleted {deleted} rows; files holding them removed; time travel cut ({_cuts(cut)})",
        )

    def erase_batch(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        """A class order's batch: the MERGE only. The old files and log history still hold the rows until the
        system's one `clean_up` after all batches: a clean-up per batch would rewrite the checkpoint and read every
        object version under the table once per batch."""
        deleted = 0
        keys: list[str] = []
        for table, values in self._targets(subject):
            if not values:
                continue
            with _mapped_errors(table.path), self._turn(table):
                rows, present = self._merge(table, values, journal)
            deleted += rows
            keys.extend(present)
        return Outcome(
            level=EvidenceLevel.VERIFIED_ABSENT,  # provisional: verify_batch decides
            deleted=deleted,
            deleted_keys=tuple(keys),
            detail=f"deleted {deleted} rows from the current version; old files and log history wait for the clean-up",
        )

    def verify_batch(self, subject: Subject) -> Verification:
        """The current version only: what the MERGE removes. Old files and log history are the clean-up's to show."""
        remaining: dict[str, int] = {}
        for table, values in self._targets(subject):
            with _mapped_errors(table.path):
                remaining[table.path] = sum(self._key_counts(table, values).values()) if values else 0
        level = EvidenceLevel.FAILED if any(remaining.values()) else EvidenceLevel.VERIFIED_ABSENT
        detail = (
            f"read the current version of {len(remaining)} tables: {sum(remaining.values())} rows remain; old files "
            "and log history are removed and checked by the system's clean-up receipt"
        )
        return Verification(level=level, remaining=remaining, detail=detail)

    def clean_up(self, subject: Subject) -> Verification:
        """After every batch's MERGE: one checkpoint, file and log clean-up per table for all of `subject`'s values
        (the class's), then `verify` reads every object version under the tables for a trace of any of them."""
        cut: dict[str, int] = {}
        for table, values in self._targets(subject):
            if values:
                with _mapped_errors(table.path), self._turn(table):
                    cut[table.path] = self._clean_table(table, _Needle(frozenset(values), table.key_column))
        verified = self.verify(subject)
        facts = {cut_fact(path): version for path, version in cut.items()}
        detail = f"time travel cut ({_cuts(cut)}); {verified.detail}"
        return Verification(level=verified.level, remaining=verified.remaining, detail=detail, facts=facts)

    def _merge(self, table: DeltaTableMapping, values: list[str], journal: Journal) -> tuple[int, list[str]]:
        """The MERGE deleting the values' rows, after the journal holds the rows it is about to delete."""
        dt = self._open(table)
        # rows have no key of their own: the commitment covers each row as its key and its rank among equals
        present = [
            f"{table.path}:{key}#{n}"
            for key, count in sorted(self._key_counts(table, values, dt).items())
            for n in range(count)
        ]
        journal.intend(present)
        # the merge runs whatever the count said: it alone decides which rows go, by exact equality
        return _delete_rows(dt, table.key_column, values), present

    def _clean_table(self, table: DeltaTableMapping, needle: _Needle) -> int:
        """Checkpoint, file and log clean-up, then old versions: returns the first version the table keeps."""
        version = self._clean_up(table, needle)
        self._purge_old_versions(table, needle)
        return version

    def verify(self, subject: Subject) -> Verification:
        remaining: dict[str, int] = {}
        scanned = 0
        for table, values in self._targets(subject):
            if not values:
                remaining.update({table.path: 0, f"{table.path}:data_files": 0, f"{table.path}:log_files": 0})
                continue
            with _mapped_errors(table.path):
                rows = sum(self._key_counts(table, values).values())
                versions = list(self._versions(table))
                needle = _Needle(frozenset(values), table.key_column)
                holding = [v for v in versions if self._holds(table, v, needle)]
            in_log = sum(1 for v in holding if _in_log(table, v))
            remaining[table.path] = rows
            remaining[f"{table.path}:data_files"] = len(holding) - in_log
            remaining[f"{table.path}:log_files"] = in_log
            scanned += len(versions)
        level = EvidenceLevel.FAILED if any(remaining.values()) else EvidenceLevel.VERIFIED_ABSENT
        traces = sum(n for name, n in remaining.items() if name.endswith("_files"))
        tables = len(self.settings.mapping.tables)
        detail = f"read {scanned} object versions under {tables} table prefixes; {traces} hold a trace"
        return Verification(level=level, remaining=remaining, detail=detail)

    def close(self) -> None:
        if self._s3 is not None:
            self._s3.close()
            self._s3 = None

    def _targets(self, subject: Subject) -> list[tuple[DeltaTableMapping, list[str]]]:
        """Each table with the subject's values for its identifier, all checked before any table is touched."""
        targets = [(table, _subject_values(subject, table.identifier)) for table in self.settings.mapping.tables]
        if not any(values for _, values in targets):
            # a search over no key proves nothing: never let it read as "verified absent"
            raise TerminalError(
                f"delta {self.system}: the subject has no value of any mapped table's identifier type: "
                "nothing would be searched"
            )
        return targets

    # --- Delta ---------------------------------------------------------------------------------------------------

    def _open(self, table: DeltaTableMapping) -> DeltaTable:
        return DeltaTable(table.uri, storage_options=self._storage_options())

    def _storage_options(self) -> dict[str, str]:
        # No AWS_S3_ALLOW_UNSAFE_RENAME and no locking provider: delta-rs 1.x commits with conditional puts
        # (If-None-Match), which S3 honours since 2024, so a concurrent writer's commit is never overwritten.
        # Retries are bounded (object_store's default is 10 over 180 s): Temporal retries the whole activity.
        options = {"AWS_REGION": self.settings.connection.region, "max_retries": "3", "retry_timeout": "60s"}
        if self._endpoint:
            options["AWS_ENDPOINT_URL"] = self._endpoint
        if self.settings.connection.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return options

    def _key_counts(self, table: DeltaTableMapping, values: list[str], dt: DeltaTable | None = None) -> dict[str, int]:
        """Rows per subject value in the current version, by exact equality and without SQL.

        Files are pruned in delta-rs by partition values and min/max statistics (tuple filters, whose values are
        data); rows are compared in Arrow after a cast to plain strings, because delta-rs writes string_view columns,
        and pyarrow has no comparison kernels for those (so no filter is pushed into the pyarrow dataset either).
        """
        dt = dt or self._open(table)
        _require_text_key(dt, table)
        wanted = pa.array(values, pa.string())
        counts: Counter[str] = Counter()
        for batch in _key_batches(dt, table.key_column, values):
            keys = batch.column(0).cast(pa.string())
            counts.update(keys.filter(pc.is_in(keys, wanted)).to_pylist())
        return dict(counts)

    @contextmanager
    def _turn(self, table: DeltaTableMapping) -> Iterator[None]:
        """Erasures of one table take turns, under a lease taken with a conditional put.

        A merge that loses a commit race leaves its rewritten files behind, never committed, and they still hold the
        rows of the winning request's subject. Nothing tells them apart from the files of a writer that will commit
        later, which must not be touched, so two erasures must not race. A held lease is a transient error (erase
        again later); an expired one, of a worker that died, is taken over. A name starting with "_" at the table
        root is ignored by Delta readers and by VACUUM.
        """
        key, client = f"{table.path}/{_LEASE_NAME}", self._client()
        lease = json.dumps({"expires": (_now() + _LEASE).isoformat()}).encode()
        try:
            client.put_object(Bucket=table.bucket, Key=key, Body=lease, IfNoneMatch="*")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _TAKEN_CODES:
                raise
            held = json.loads(self._read(table.bucket, key))
            if datetime.fromisoformat(held["expires"]) < _now():
                client.delete_object(Bucket=table.bucket, Key=key)  # the next attempt takes it
            raise TransientError(f"another erasure of delta table {table.path} is running; erase again") from None
        try:
            yield
        finally:
            client.delete_object(Bucket=table.bucket, Key=key)

    def _clean_up(self, table: DeltaTableMapping, needle: _Needle) -> int:
        """Checkpoint after the deletion, delete the files holding a trace and every log file before the checkpoint.
        Returns the checkpoint's version: time travel to any earlier version ends here. Safe to repeat."""
        dt = self._open(table)
        if needle.in_lines(self._read(table.bucket, _log_key(table, f"{dt.version():020d}.json"))):
            _commit_nothing(dt)  # the newest commit holds a trace (the merge's predicate or a removed key partition)
            dt = self._open(table)
        dt.create_checkpoint()
        version = dt.version()
        checkpoint_name = f"{version:020d}.checkpoint.parquet"
        checkpoint = self._read(table.bucket, _log_key(table, checkpoint_name))
        objects = {v.key: v for v in self._versions(table) if v.is_latest and not v.is_delete_marker}
        self._refuse_hidden_rows(table, checkpoint, objects, needle)
        live = {_object_key(table, p) for p in delta_log.action_paths(checkpoint_name, checkpoint, ("add",))}
        log = {key: v for key, v in objects.items() if _in_log(table, v)}
        bodies = {key: self._read(table.bucket, key, v.version_id) for key, v in log.items() if _parsed(table, key)}
        named = {_object_key(table, p) for key, body in bodies.items() for p in delta_log.data_paths(key, body)}
        cutoff = _now() - timedelta(hours=self.settings.orphan_min_age_hours)
        doomed = [
            v
            for key, v in objects.items()
            if key not in log
            and key not in live
            and not _is_deletion_vector(key)
            and (key in named or _older(v, cutoff))  # a file no commit names may be a writer's, not yet committed
            and self._holds(table, v, needle)
        ]
        self._delete_keys(table, [v.key for v in doomed])
        remaining = set(objects) - {v.key for v in doomed}
        self._drop_tombstones(table, version, checkpoint, remaining)
        self._delete_keys(table, _old_log(table, version, log, bodies, cutoff))
        return version

    def _refuse_hidden_rows(
        self, table: DeltaTableMapping, checkpoint: bytes, objects: dict[str, ObjectVersion], needle: _Needle
    ) -> None:
        """After the merge no live row is the subject's; a live file whose deletion vector hides one still holds it."""
        marked = [
            objects[key]
            for p in delta_log.with_deletion_vectors(checkpoint)
            if (key := _object_key(table, p)) in objects
        ]
        hiding = sum(1 for v in marked if self._data_file_holds(table, v, needle))
        if hiding:
            raise TerminalError(
                f"delta table {table.path}: {hiding} data files keep rows of the subject hidden by deletion vectors, "
                f"which delta-rs cannot purge; run REORG TABLE delta.`{table.uri}` APPLY (PURGE) in Spark or "
                "Databricks, then erase again"
            )

    def _drop_tombstones(self, table: DeltaTableMapping, version: int, checkpoint: bytes, remaining: set[str]) -> None:
        """Rewrite the checkpoint without the tombstones of files that are gone, and `_last_checkpoint` to match."""
        name = f"{version:020d}.checkpoint.parquet"
        removed = set(delta_log.action_paths(name, checkpoint, ("remove",)))
        rewritten = delta_log.without_tombstones(
            checkpoint, {p for p in removed if _object_key(table, p) not in remaining}
        )
        if rewritten is None:
            return
        body, actions = rewritten
        self._client().put_object(Bucket=table.bucket, Key=_log_key(table, name), Body=body)
        hint_key = _log_key(table, "_last_checkpoint")
        hint = json.loads(self._read(table.bucket, hint_key))
        if hint.get("version") == version:
            hint.update({"size": actions, "sizeInBytes": len(body)})
            self._client().put_object(Bucket=table.bucket, Key=hint_key, Body=json.dumps(hint).encode())

    def _delete_keys(self, table: DeltaTableMapping, keys: list[str]) -> None:
        """Delete current objects by key: in a versioned bucket this lays delete markers (old versions go later)."""
        aws.add_delete_markers(self._client(), table.bucket, keys)

    def _read(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        extra = {"VersionId": version_id} if version_id else {}
        body: bytes = self._client().get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        return body

    # --- S3 ------------------------------------------------------------------------------------------------------

    def _client(self) -> AwsClient:
        if self._s3 is None:
            self._s3 = aws.client("s3", endpoint_url=self._endpoint, region=self.settings.connection.region)
        return self._s3

    def _versions(self, table: DeltaTableMapping) -> Iterator[ObjectVersion]:
        """Every version and delete marker under the table prefix: current, noncurrent, referenced or orphaned.
        Versions, not just objects: in a versioned bucket a deleted file lives on as a noncurrent version."""
        return aws.list_versions(self._client(), table.bucket, f"{table.path}/")

    def _holds(self, table: DeltaTableMapping, version: ObjectVersion, needle: _Needle) -> bool:
        """Whether an object version holds a trace of the subject. Objects outside the log that are not Parquet
        (deletion vectors hold row positions only) and delete markers are judged by their path."""
        if _in_log(table, version):
            return not version.is_delete_marker and self._log_file_holds(table.bucket, version, needle)
        if needle.in_path(version.key.removeprefix(f"{table.path}/"), decode=1):
            return True
        is_parquet = not version.is_delete_marker and version.key.endswith(".parquet")
        return is_parquet and self._data_file_holds(table, version, needle)

    def _purge_old_versions(self, table: DeltaTableMapping, needle: _Needle) -> None:
        """In a versioned bucket, vacuum and log clean-up only lay delete markers over the files: the old versions
        keep the rows, the statistics and the predicate. Delete every old version and marker holding a trace (the
        others stay: they are the table owner's). Nothing is old in an unversioned bucket."""
        old = [v for v in self._versions(table) if v.is_delete_marker or not v.is_latest]
        doomed = [v for v in old if self._holds(table, v, needle)]
        # versions before markers: a marker removed first would make an old version current again if its own
        # deletion then failed
        for markers in (False, True):
            batch = [v for v in doomed if v.is_delete_marker is markers]
            deletion = aws.delete_versions(self._client(), table.bucket, batch)
            codes = [r.code for r in deletion.refused if r.code not in _VANISHED_CODES]
            if codes:
                # a legal hold or retention is a person's decision, as is a missing permission
                raise aws.refusal_error(f"deleting {len(codes)} old object versions under {table.path}", codes)

    def _log_file_holds(self, bucket: str, version: ObjectVersion, needle: _Needle) -> bool:
        try:
            body = self._read(bucket, version.key, version.version_id)
        except ClientError as exc:
            if _vanished(exc):
                return False  # deleted meanwhile (another request's clean-up): it holds nothing any more
            raise
        if version.key.endswith(".parquet"):  # a checkpoint (classic, multi-part or a v2 sidecar)
            try:
                rows: list[Any] = pq.read_table(io.BytesIO(body)).to_pylist()
            except (pa.ArrowException, OSError):
                return True  # unreadable: absence cannot be shown, so it counts as a trace
            return needle.in_node(rows)
        # JSON commits, _last_checkpoint, .crc files, leftovers of failed commits: one JSON document per line
        return needle.in_lines(body)

    def _data_file_holds(self, table: DeltaTableMapping, version: ObjectVersion, needle: _Needle) -> bool:
        """Read the key column and its row-group statistics; Parquet pages are compressed, so bytes prove nothing."""
        try:
            parquet = pq.ParquetFile(_S3Range(self._client(), table.bucket, version))
            if table.key_column not in parquet.schema_arrow.names:
                return False  # a partition column (checked in the path) or a file older than the column
            index = parquet.schema_arrow.get_field_index(table.key_column)
            column = parquet.read(columns=[table.key_column]).column(table.key_column).cast(pa.string())
        except ClientError as exc:  # raised through pyarrow by the range reader
            if _vanished(exc):
                return False  # deleted meanwhile (another request's clean-up): it holds nothing any more
            raise
        except (pa.ArrowException, OSError):
            return True  # unreadable: fail closed
        found = pc.any(pc.is_in(column, pa.array(sorted(needle.values), pa.string()))).as_py()
        return bool(found) or any(needle.in_value(stat) for stat in _statistics(parquet, index))


# --- erasure steps -------------------------------------------------------------------------------------------------


def _delete_rows(dt: DeltaTable, key_column: str, keys: list[str]) -> int:
    """MERGE ... WHEN MATCHED DELETE against the keys as Arrow data: exact equality, and no value in SQL text.

    `streamed_exec=False` lets delta-rs derive a file-pruning predicate from the source (so only files whose
    statistics may hold a key are rewritten). It records that predicate, key literals included, in the commit;
    the clean-up removes that commit with the rest of the old log.
    """
    source = pa.table({_SOURCE_KEY: pa.array(keys, pa.string())})
    metrics = (
        dt.merge(
            source=source,
            predicate=f'target."{key_column}" = source."{_SOURCE_KEY}"',  # validated identifiers only
            source_alias="source",
            target_alias="target",
            streamed_exec=False,
        )
        .when_matched_delete()
        .execute()
    )
    return int(metrics["num_target_rows_deleted"])


def _commit_nothing(dt: DeltaTable) -> None:
    """An empty append: a new version that changes no data and no property, so that a checkpoint can stand after the
    merge commit (the protocol keeps the commit at the checkpoint's version)."""
    partitions = list(dt.metadata().partition_columns)
    dt.create_write_transaction([], mode="append", schema=dt.schema(), partition_by=partitions or None)


def _key_batches(dt: DeltaTable, key_column: str, values: list[str]) -> Iterator[pa.RecordBatch]:
    """The key column of the current version. The pyarrow dataset prunes files by statistics (tuple filters, whose
    values are data) but refuses deletion vectors; delta-rs's own engine applies them, reading every file."""
    if _ENGINE_ONLY_FEATURES & set(dt.protocol().reader_features or ()):
        query = QueryBuilder().register("t", dt).execute(f'SELECT "{key_column}" FROM t')  # a validated name only
        yield from pa.RecordBatchReader.from_stream(query)
        return
    dataset = dt.to_pyarrow_dataset(file_pruning_predicate=[(key_column, "in", values)])
    yield from dataset.to_batches(columns=[key_column])


# --- values and traces ---------------------------------------------------------------------------------------------


def _subject_values(subject: Subject, identifier: IdentifierType) -> list[str]:
    """The subject's values of one type, refusing any that could match more than the subject or nothing provably."""
    values = sorted(set(subject.values(identifier)))
    if "" in values:
        raise TerminalError(f"an empty {identifier} value was refused: it would match every row with an empty key")
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Delta strings are UTF-8: such a value cannot be stored, so nothing could be shown absent for it
            raise TerminalError(f"a {identifier} value is not valid unicode text and cannot be matched") from None
    return values


def _require_text_key(dt: DeltaTable, table: DeltaTableMapping) -> None:
    """Only text keys: a number or date column would make "01" and "1" the same key."""
    types = {field.name: field.type for field in dt.schema().fields}
    if table.key_column not in types:
        raise TerminalError(f"delta table {table.path} has no column {table.key_column}")
    if (key_type := types[table.key_column]) != PrimitiveType("string"):
        raise TerminalError(f"key column {table.key_column} of {table.path} is {key_type}; expected text")


@dataclass(frozen=True)
class _Needle:
    """The subject's values in one table, and the key column whose name says where they may stand.

    Equal values under other columns' names are not traces: `plan = "1"` in the statistics is not user "1".
    """

    values: frozenset[str]
    column: str

    def in_node(self, node: Any) -> bool:
        """In a parsed log entry: under the key column's name (statistics, partition values and their parsed
        forms), in a key column path segment, or as a literal in text such as a recorded predicate."""
        if isinstance(node, dict):
            return any(self._in_entry(name, value) for name, value in node.items())
        if isinstance(node, tuple) and len(node) == 2:  # pyarrow reads a Parquet map entry as a (key, value) pair
            return self._in_entry(node[0], node[1])
        if isinstance(node, list):
            return any(self.in_node(item) for item in node)
        return isinstance(node, str) and self._in_text(node)

    def in_lines(self, body: bytes) -> bool:
        """In a log file of JSON documents, one per line."""
        return any(self.in_node(_json_or_text(line)) for line in body.decode("utf-8", "replace").splitlines())

    def in_value(self, text: str) -> bool:
        """Equal to a value, or a statistic cut from one: writers cut long strings to a prefix (a maximum with its
        last character bumped up). Spark cuts at 32 characters; nothing shorter is cut."""
        if text in self.values:
            return True
        if len(text) < _TRUNCATED_STAT_MIN:
            return False
        head, last = text[:-1], text[-1]
        return any(len(v) > len(text) and v.startswith(head) and last >= v[len(head)] for v in self.values)

    def in_path(self, path: str, decode: int) -> bool:
        """In a Hive partition segment of the key column (`user_id=…/`), percent-decoded up to `decode` times."""
        for segment in path.split("/"):
            name, sep, raw = segment.partition("=")
            forms = {raw}
            for _ in range(decode):
                raw = unquote(raw)
                forms.add(raw)
            if sep and name == self.column and not self.values.isdisjoint(forms):
                return True
        return False

    def _in_entry(self, name: Any, value: Any) -> bool:
        if name == self.column and isinstance(value, str) and self.in_value(value):
            return True
        return self.in_node(value)

    def _in_text(self, text: str) -> bool:
        if text[:1] in ("{", "[") and not isinstance(parsed := _json_or_text(text), str):
            return self.in_node(parsed)  # stats and operationParameters hold JSON documents in strings
        # a logged path encodes the already encoded object key, hence two decodings
        return self.in_path(text, decode=2) or any(form in text for form in self._literals)

    @cached_property
    def _literals(self) -> list[str]:
        """The values as literals inside text: in SQL (a recorded predicate, quotes doubled), or JSON-encoded once
        or twice (a line that did not parse)."""
        forms = []
        for value in self.values:
            once = json.dumps(value)
            forms += ["'" + value.replace("'", "''") + "'", once, json.dumps(once)[1:-1]]
        return forms


def _cuts(cut: dict[str, int]) -> str:
    return ", ".join(f"{path} before version {version}" for path, version in sorted(cut.items())) or "no table"


def cut_fact(path: str) -> str:
    """The receipt's fact naming the first version a table keeps: time travel before it was cut. Fact names are
    lowercase words and dots, so the table path's slashes become dots."""
    return "history_cut_before." + re.sub(r"[^a-z0-9_.]", "_", path.lower().replace("/", "."))[:61]


def _in_log(table: DeltaTableMapping, version: ObjectVersion) -> bool:
    return version.key.startswith(f"{table.path}/{_LOG_DIR}")


def _log_key(table: DeltaTableMapping, name: str) -> str:
    return f"{table.path}/{_LOG_DIR}{name}"


def _log_name(table: DeltaTableMapping, key: str) -> str:
    return key.removeprefix(f"{table.path}/{_LOG_DIR}")


def _parsed(table: DeltaTableMapping, key: str) -> bool:
    """Log files that name data files or sidecars: versioned files of every form, and sidecars."""
    name = _log_name(table, key)
    return delta_log.version_of(name) is not None or delta_log.is_sidecar(name)


def _object_key(table: DeltaTableMapping, path: str) -> str:
    """The object key of a path as the log writes it: relative to the table and percent-encoded, or an absolute URI."""
    absolute = f"s3://{table.bucket}/"
    return unquote(path.removeprefix(absolute)) if path.startswith(absolute) else f"{table.path}/{unquote(path)}"


def _is_deletion_vector(key: str) -> bool:
    """A deletion vector file holds row positions only; a live file may still need it, so it is never deleted."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith("deletion_vector_") and name.endswith(".bin")


def _old_log(
    table: DeltaTableMapping, version: int, log: dict[str, ObjectVersion], bodies: dict[str, bytes], cutoff: datetime
) -> list[str]:
    """Every log file of a version before `version`, and the sidecars no kept checkpoint names: at once those of a
    deleted checkpoint, past the safe age those no checkpoint names (a writer may be writing its checkpoint)."""
    names = {_log_name(table, key): key for key in log}
    old = {name for name in names if (v := delta_log.version_of(name)) is not None and v < version}
    named_by: dict[bool, set[str]] = {True: set(), False: set()}  # by whether the naming checkpoint is deleted
    for name in names:
        if delta_log.is_v2_checkpoint(name) and names[name] in bodies:
            named_by[name in old] |= delta_log.sidecars_named(name, bodies[names[name]])
    sidecars = {name for name in names if delta_log.is_sidecar(name)} - named_by[False]
    stale = {name for name in sidecars if name in named_by[True] or _older(log[names[name]], cutoff)}
    return sorted(names[name] for name in old | stale)


def _older(version: ObjectVersion, cutoff: datetime) -> bool:
    return version.last_modified is not None and version.last_modified < cutoff


def _now() -> datetime:
    return datetime.now(UTC)


def _vanished(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _VANISHED_CODES


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _statistics(parquet: pq.ParquetFile, index: int) -> Iterable[str]:
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is not None and stats.has_min_max:
            for bound in (stats.min, stats.max):
                yield bound.decode("utf-8", "replace") if isinstance(bound, bytes) else str(bound)


class _S3Range(io.RawIOBase):
    """One S3 object version as a seekable file read by byte ranges, so pyarrow fetches only the Parquet footer and
    the key column's chunks instead of the whole file."""

    def __init__(self, client: AwsClient, bucket: str, version: ObjectVersion) -> None:
        super().__init__()
        self._client, self._bucket, self._version = client, bucket, version
        self._size = version.size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._position + len(view), self._size)
        if end <= self._position:
            return 0
        byte_range = f"bytes={self._position}-{end - 1}"
        response = self._client.get_object(
            Bucket=self._bucket, Key=self._version.key, VersionId=self._version.version_id, Range=byte_range
        )
        data = response["Body"].read()
        view[: len(data)] = data
        self._position += len(data)
        return len(data)


# --- configuration and errors --------------------------------------------------------------------------------------


def _endpoint(connection: Connection) -> str | None:
    if connection.endpoint_url_env is None:
        return None
    endpoint = aws.endpoint_from_env(connection.endpoint_url_env) or ""
    if endpoint.startswith("http://") and not connection.allow_http:
        raise TerminalError(f"endpoint in {connection.endpoint_url_env} is plain http but allow_http is false")
    return endpoint


# HTTP statuses as object_store prints them ("503 Service Unavailable"), so a duration such as "in 503.2ms" is not one
_THROTTLED = re.compile(r"\b(429|503) [a-z]|slowdown|throttl|too many requests|requestlimitexceeded", re.I)
_UNAVAILABLE = re.compile(r"\b5\d\d [a-z]|error sending request|connection|timed out|timeout|broken pipe", re.I)
_DENIED = re.compile(r"\b403 [a-z]|accessdenied|invalidaccesskeyid|signaturedoesnotmatch|expiredtoken", re.I)
_NO_BUCKET = re.compile(r"nosuchbucket", re.I)
_MISSING = re.compile(r"\b404 [a-z]|nosuchkey|not found", re.I)


@contextmanager
def _mapped_errors(location: str) -> Iterator[None]:
    """Map delta-rs, pyarrow and boto3 errors to the project's, by kind only: their texts can hold response bodies
    and SQL with key literals, so no part of them reaches a message."""
    try:
        with aws.mapped_errors(f"s3 request for delta table {location}"):
            try:
                yield
            except ClientError as exc:
                if _vanished(exc):  # a file removed by another request's clean-up: erase again
                    raise TransientError(f"a file of delta table {location} is gone; erase again") from exc
                raise
    except ErasureError:
        raise
    except TableNotFoundError as exc:
        raise TerminalError(f"delta table {location} not found") from exc
    except CommitFailedError as exc:
        raise TransientError(f"a concurrent commit on delta table {location} conflicted; erase again") from exc
    except DeltaProtocolError as exc:
        raise TerminalError(f"delta table {location} uses a table feature this connector cannot read") from exc
    except (DeltaError, OSError) as exc:
        raise _from_text(location, str(exc)) from exc
    except pa.ArrowException as exc:
        raise TerminalError(f"reading delta table {location} failed: {type(exc).__name__}") from exc


def _from_text(location: str, text: str) -> ErasureError:
    # checked in this order: a 404 inside a throttling retry message is still throttling
    if _THROTTLED.search(text):
        return Throttled(f"s3 throttled delta table {location}")
    if _UNAVAILABLE.search(text):
        return TransientError(f"s3 unavailable or unreachable for delta table {location}")
    if _DENIED.search(text):
        return TerminalError(f"s3 access denied for delta table {location}")
    if _NO_BUCKET.search(text):
        return TerminalError(f"the bucket of delta table {location} was not found")
    if _MISSING.search(text):
        # the table exists (else TableNotFoundError): a file went under another request's clean-up
        return TransientError(f"a file of delta table {location} was not found; another clean-up may have removed it")
    if "scheme is not allowed" in text:
        return TerminalError(f"plain http to the endpoint of delta table {location} needs allow_http")
    return TerminalError(f"delta operation failed on table {location}")
