"""Delta tables of the Clipstream estate on moto's S3, for the delta connector's tests, and an inspector of every
byte left under a table's prefix.

Each table is written in several commits with a checkpoint in between, so that old data files, old commits (add
statistics) and an old checkpoint all hold the child's keys before erasure. Data files are written uncompressed so
that a byte scan can see their values; the parsed scan does not depend on that.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake

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
) -> None:
    """Spread each key's rows round-robin over `commits` appends; checkpoint after the second."""
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
        )
        if commit == 1:
            DeltaTable(uri, storage_options=options).create_checkpoint()


def key_counts(uri: str, options: dict[str, str], key_column: str = "user_id") -> dict[str, int]:
    column = DeltaTable(uri, storage_options=options).to_pyarrow_table(columns=[key_column]).column(key_column)
    counts: dict[str, int] = {}
    for key in column.to_pylist():
        counts[key] = counts.get(key, 0) + 1
    return counts


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
