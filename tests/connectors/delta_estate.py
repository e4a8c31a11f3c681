"""Delta tables of the Clipstream estate on moto's S3, for the delta connector's tests, and an inspector of every
byte left under a table's prefix.

Each table is written in several commits with a checkpoint in between, so that old data files, old commits (add
statistics) and an old checkpoint all hold the child's keys before erasure. Data files are written uncompressed so
that a byte scan can see their values; the parsed scan does not depend on that.

`add_spark_log` adds what Spark and Databricks write beside delta-rs's log, built from the protocol (PROTOCOL.md):
version checksums with `allFiles[].stats`, a multi-part checkpoint, a log compaction, a UUID-named (v2) checkpoint with
its sidecar and a staged commit. `write_dv_table` writes a table with deletion vectors (the Delta 3.x and Databricks
default) by hand, as the protocol lays them out: a RoaringTreemap in a `deletion_vector_<uuid>.bin` file.
"""

from __future__ import annotations

import io
import json
import struct
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, QueryBuilder, WriterProperties, write_deltalake

from domain.model import Subject
from examples.estate import CHILD, NEIGHBOURS

ENDPOINT_ENV = "DELTA_TEST_S3_ENDPOINT"

CHILD_IDS = (str(CHILD.user_id), "u_1")
CHILD_EMAIL = CHILD.email or ""
SUBJECT = Subject.of(user_id=CHILD_IDS, email=[CHILD_EMAIL])

# rows per key: the child's keys and look-alikes that must survive with exactly these counts
EVENT_ROWS: Mapping[str, int] = {"1": 3, "u_1": 2, "10": 2, "100": 2, "11": 1, "U_1": 1, " 1": 1, "1 ": 1}
SIGNUP_ROWS: Mapping[str, int] = {
    CHILD_EMAIL: 2,
    NEIGHBOURS[0].email or "": 1,  # the same address in another case
    NEIGHBOURS[1].email or "": 1,  # without the plus tag
    CHILD_EMAIL.upper(): 1,
}
# values an unsafe predicate would read as SQL or as a pattern, each beside neighbours it would catch
HOSTILE = ("'; DROP TABLE users; --", "' OR '1'='1", "%", "*", "../", "1' OR user_id LIKE '%")
HOSTILE_ROWS: Mapping[str, int] = {
    **{value: 1 for value in HOSTILE},
    "1": 2,
    "10": 1,
    "%%": 1,
    "a%": 1,
    "**": 1,
    "../x": 1,
    "'": 1,
    "' OR '1'='1 ": 1,
    "users": 1,
}


def storage_options(moto_url: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": moto_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}


def write_table(
    uri: str,
    rows: Mapping[str, int],
    options: dict[str, str],
    *,
    key_column: str = "user_id",
    commits: int = 3,
    partition_by: list[str] | None = None,
    configuration: Mapping[str, str] | None = None,
) -> None:
    """Spread each key's rows round-robin over `commits` appends; checkpoint after the second. `configuration`: the
    owner's table properties, set when the table is created."""
    keys = [key for key, count in rows.items() for _ in range(count)]
    uncompressed = WriterProperties(compression="UNCOMPRESSED")
    for commit in range(commits):
        part = keys[commit::commits]
        data = pa.table({key_column: pa.array(part, pa.string()), "seq": pa.array(range(len(part)), pa.int64())})
        write_deltalake(
            uri,
            data,
            mode="append",
            partition_by=partition_by,
            storage_options=options,
            writer_properties=uncompressed,
            configuration=dict(configuration or {}) if commit == 0 else None,
        )
        if commit == 1:
            DeltaTable(uri, storage_options=options).create_checkpoint()


def key_counts(uri: str, options: dict[str, str], key_column: str = "user_id") -> dict[str, int]:
    """Live rows per key, read by delta-rs's own engine (it applies deletion vectors)."""
    table = DeltaTable(uri, storage_options=options)
    column = pa.table(QueryBuilder().register("t", table).execute(f'SELECT "{key_column}" FROM t').read_all())
    counts: dict[str, int] = {}
    for key in column.column(0).cast(pa.string()).to_pylist():
        counts[key] = counts.get(key, 0) + 1
    return counts


# --- what Spark writes beside the log ------------------------------------------------------------------------------


def add_spark_log(s3: Any, bucket: str, path: str) -> dict[str, str]:
    """Spark-style log files for every version of a table written by `write_table` (checkpoint at version 1), by kind:
    `crc` (one per version, the newest named), `multi_part`, `compacted`, `v2_checkpoint`, `sidecar`, `staged`."""
    log = f"{path}/_delta_log/"
    commits = sorted(
        o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=log)["Contents"] if o["Key"].endswith(".json")
    )
    live: dict[str, dict[str, Any]] = {}
    protocol_and_metadata: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for version, key in enumerate(commits):
        actions = [json.loads(line) for line in _get(s3, bucket, key).decode().splitlines() if line.strip()]
        protocol_and_metadata += [a for a in actions if "protocol" in a or "metaData" in a]
        for action in actions:
            if "add" in action:
                live[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
        checksum = {
            "txnId": str(uuid.uuid4()),
            "tableSizeBytes": sum(a["size"] for a in live.values()),
            "numFiles": len(live),
            "numMetadata": 1,
            "numProtocol": 1,
            "allFiles": [{**a, "dataChange": False} for a in live.values()],
        }
        names["crc"] = f"{log}{version:020d}.crc"
        _put(s3, bucket, names["crc"], json.dumps(checksum).encode())
    classic = pq.read_table(io.BytesIO(_get(s3, bucket, f"{log}{1:020d}.checkpoint.parquet")))
    half = classic.num_rows // 2
    for part, rows in ((1, classic.slice(0, half)), (2, classic.slice(half))):
        names["multi_part"] = f"{log}{1:020d}.checkpoint.{part:010d}.{2:010d}.parquet"
        _put(s3, bucket, names["multi_part"], _parquet(rows))
    names["compacted"] = f"{log}{0:020d}.{1:020d}.compacted.json"
    _put(s3, bucket, names["compacted"], b"\n".join(_get(s3, bucket, key).strip() for key in commits[:2]))
    sidecar = f"{uuid.uuid4()}.parquet"
    adds = classic.filter(pa.compute.is_valid(classic.column("add"))).select(["add"])
    names["sidecar"] = f"{log}_sidecars/{sidecar}"
    sidecar_body = _parquet(adds)
    _put(s3, bucket, names["sidecar"], sidecar_body)
    reference = {"path": sidecar, "sizeInBytes": len(sidecar_body), "modificationTime": int(time.time() * 1000)}
    top = [{"checkpointMetadata": {"version": 1}}, *protocol_and_metadata[:2], {"sidecar": reference}]
    names["v2_checkpoint"] = f"{log}{1:020d}.checkpoint.{uuid.uuid4()}.json"
    _put(s3, bucket, names["v2_checkpoint"], "\n".join(json.dumps(a) for a in top).encode())
    names["staged"] = f"{log}_staged_commits/{2:020d}.{uuid.uuid4()}.json"
    _put(s3, bucket, names["staged"], _get(s3, bucket, commits[0]))  # its statistics hold the child's keys
    return names


# --- deletion vectors ----------------------------------------------------------------------------------------------

_DV_MAGIC = 1681511377
_Z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"


def write_dv_table(s3: Any, bucket: str, path: str, files: Sequence[tuple[Sequence[str], Sequence[int]]]) -> list[str]:
    """A table of `user_id` strings in one commit: per file its rows and the row positions its deletion vector hides
    (none: no vector). Returns the deletion vector files' keys."""
    now = int(time.time() * 1000)
    schema = {"type": "struct", "fields": [{"name": "user_id", "type": "string", "nullable": True, "metadata": {}}]}
    actions: list[dict[str, Any]] = [
        {"commitInfo": {"timestamp": now, "operation": "WRITE", "engineInfo": "Apache-Spark/3.5.1 Delta-Lake/3.2.0"}},
        {
            "protocol": {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["deletionVectors"],
                "writerFeatures": ["deletionVectors"],
            }
        },
        {
            "metaData": {
                "id": str(uuid.uuid4()),
                "format": {"provider": "parquet", "options": {}},
                "schemaString": json.dumps(schema),
                "partitionColumns": [],
                "configuration": {"delta.enableDeletionVectors": "true"},
                "createdTime": now,
            }
        },
    ]
    vectors = []
    for number, (rows, hidden) in enumerate(files):
        name = f"part-{number:05d}-{uuid.uuid4()}-c000.snappy.parquet"
        body = _parquet(pa.table({"user_id": pa.array(list(rows), pa.string())}))
        _put(s3, bucket, f"{path}/{name}", body)
        stats = {"numRecords": len(rows), "minValues": {"user_id": min(rows)}, "maxValues": {"user_id": max(rows)}}
        add: dict[str, Any] = {
            "path": name,
            "partitionValues": {},
            "size": len(body),
            "modificationTime": now,
            "dataChange": True,
            "stats": json.dumps({**stats, "nullCount": {"user_id": 0}, "tightBounds": not hidden}),
        }
        if hidden:
            vector_id = uuid.uuid4()
            bitmap = struct.pack("<I", _DV_MAGIC) + _roaring_treemap(hidden)
            content = b"\x01" + struct.pack(">I", len(bitmap)) + bitmap + struct.pack(">I", zlib.crc32(bitmap))
            vectors.append(f"{path}/deletion_vector_{vector_id}.bin")
            _put(s3, bucket, vectors[-1], content)
            add["deletionVector"] = {
                "storageType": "u",
                "pathOrInlineDv": _z85(vector_id.bytes),
                "offset": 1,
                "sizeInBytes": len(bitmap),
                "cardinality": len(hidden),
            }
        actions.append({"add": add})
    _put(s3, bucket, f"{path}/_delta_log/{0:020d}.json", "\n".join(json.dumps(a) for a in actions).encode())
    return vectors


def _roaring_treemap(positions: Sequence[int]) -> bytes:
    """The portable RoaringTreemap of small row positions: one 32-bit bitmap, one array container, no run container."""
    values = sorted(positions)
    assert values[-1] < 1 << 16
    header = struct.pack("<II", 12346, 1) + struct.pack("<HH", 0, len(values) - 1)
    container = struct.pack(f"<{len(values)}H", *values)
    bitmap = header + struct.pack("<I", len(header) + 4) + container
    return struct.pack("<Q", 1) + struct.pack("<I", 0) + bitmap


def _z85(data: bytes) -> str:
    out = []
    for start in range(0, len(data), 4):
        number = int.from_bytes(data[start : start + 4], "big")
        digits = []
        for _ in range(5):
            number, digit = divmod(number, 85)
            digits.append(_Z85[digit])
        out.extend(reversed(digits))
    return "".join(out)


def _parquet(table: pa.Table) -> bytes:
    out = pa.BufferOutputStream()
    pq.write_table(table, out, compression="NONE")
    return bytes(out.getvalue().to_pybytes())


def _get(s3: Any, bucket: str, key: str) -> bytes:
    body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _put(s3: Any, bucket: str, key: str, body: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def objects(s3: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """Every object version under the prefix, by "key#version"."""
    found: dict[str, bytes] = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            key, version_id = version["Key"], version["VersionId"]
            body = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)["Body"].read()
            found[f"{key}#{version_id}"] = body
    return found


def byte_traces(found: Mapping[str, bytes], values: tuple[str, ...]) -> list[str]:
    """Objects whose raw bytes hold a value as JSON (once or twice encoded) or as a Parquet PLAIN string."""
    needles = [n for v in values for n in _needles(v)]
    return sorted(name for name, body in found.items() if any(n in body for n in needles))


def parsed_traces(found: Mapping[str, bytes], values: tuple[str, ...]) -> list[str]:
    """Objects whose decoded contents hold a value: any Parquet cell, any JSON leaf (nested JSON parsed), a recorded
    predicate's literal, or a Hive partition segment of the object key."""
    wanted = set(values)
    traces = []
    for name, body in found.items():
        key = name.partition("#")[0]
        segments = {unquote(s.partition("=")[2]) for s in key.split("/") if "=" in s}
        decoded = _decode(key, body)
        literals = {"'" + v.replace("'", "''") + "'" for v in values}
        in_predicate = any(lit in text for text in _predicates(decoded) for lit in literals)
        if wanted & (segments | set(_leaves(decoded))) or in_predicate:
            traces.append(name)
    return sorted(traces)


def _needles(value: str) -> list[bytes]:
    once = json.dumps(value)
    raw = value.encode()
    return [once.encode(), json.dumps(once)[1:-1].encode(), len(raw).to_bytes(4, "little") + raw]


def _decode(key: str, body: bytes) -> list[Any]:
    if key.endswith(".bin"):
        return []  # a deletion vector: row positions only (its key is still checked for partition segments)
    if key.endswith(".parquet"):
        rows: list[Any] = pq.read_table(io.BytesIO(body)).to_pylist()
        return rows
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def _leaves(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k
            yield from _leaves(v)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _leaves(item)
    elif isinstance(node, str):
        yield node
        if node[:1] in ("{", "["):
            try:
                yield from _leaves(json.loads(node))
            except ValueError:
                pass


def _predicates(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "predicate" and isinstance(v, str):
                yield v
            else:
                yield from _predicates(v)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _predicates(item)
