"""The files of a Delta table's `_delta_log/` as the protocol names them, and what they refer to.

A clean-up below a checkpoint at version N removes every file of an earlier version in any of the protocol's forms
("Metadata Cleanup" in PROTOCOL.md): commits, version checksums (Spark writes `allFiles[].stats` into them), classic,
multi-part and UUID-named (v2) checkpoints, log compactions, staged commits. delta-rs's `cleanup_metadata` knows only
the first and the classic checkpoint, hence this module. Sidecars carry no version: they go with the checkpoints that
name them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LOG_DIR = "_delta_log/"
SIDECAR_DIR = "_sidecars/"

_V = r"(?P<version>\d{20})"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_VERSIONED = (
    re.compile(rf"{_V}\.json"),  # commit
    re.compile(rf"{_V}\.crc"),  # version checksum
    re.compile(rf"{_V}\.checkpoint\.parquet"),  # classic checkpoint
    re.compile(rf"{_V}\.checkpoint\.\d{{10}}\.\d{{10}}\.parquet"),  # multi-part checkpoint: part o of p
    re.compile(rf"{_V}\.checkpoint\.{_UUID}\.(?:json|parquet)"),  # UUID-named (v2) checkpoint
    re.compile(rf"{_V}\.\d{{20}}\.compacted\.json"),  # log compaction x.y, by its first version x
    re.compile(rf"_staged_commits/{_V}\.{_UUID}\.json"),  # staged commit
)
_V2_CHECKPOINT = re.compile(rf"\d{{20}}\.checkpoint\.{_UUID}\.(?:json|parquet)")
_FILE_ACTIONS = ("add", "remove", "cdc")


def version_of(name: str) -> int | None:
    """The version a log file belongs to (`name` relative to `_delta_log/`), or None for unversioned files such as
    `_last_checkpoint` and sidecars."""
    for pattern in _VERSIONED:
        if match := pattern.fullmatch(name):
            return int(match["version"])
    return None


def is_sidecar(name: str) -> bool:
    return name.startswith(SIDECAR_DIR) and "/" not in name.removeprefix(SIDECAR_DIR)


def is_v2_checkpoint(name: str) -> bool:
    return bool(_V2_CHECKPOINT.fullmatch(name))


def sidecars_named(name: str, body: bytes) -> set[str]:
    """The sidecar files a v2 checkpoint refers to, as names relative to `_delta_log/`."""
    return {SIDECAR_DIR + path.rsplit("/", 1)[-1] for path in action_paths(name, body, ("sidecar",))}


def data_paths(name: str, body: bytes) -> set[str]:
    """The data and change-data files a log file names (add, remove and cdc actions; a checksum's `allFiles`), as
    the log writes them: relative and percent-encoded, or absolute URIs."""
    if name.endswith(".crc"):
        files = _json_object(body.decode("utf-8", "replace")).get("allFiles")
        files = files if isinstance(files, list) else []
        return {f["path"] for f in files if isinstance(f, dict) and isinstance(f.get("path"), str)}
    return set(action_paths(name, body, _FILE_ACTIONS))


def without_tombstones(checkpoint: bytes, gone: set[str]) -> tuple[bytes, int] | None:
    """A classic checkpoint without the remove actions of the `gone` paths (as the log writes them), and its number of
    actions; None when it has none of them. A tombstone only tells VACUUM which file to delete; one whose file is gone is of no use, and in a
    table partitioned by the key its path and partition values still name the key."""
    table = pq.read_table(io.BytesIO(checkpoint))
    if "remove" not in table.column_names:
        return None
    removed = pc.struct_field(table.column("remove"), "path")
    drop = pc.fill_null(pc.is_in(removed, pa.array(sorted(gone), pa.string())), False)
    if not pc.any(drop).as_py():
        return None
    kept = table.filter(pc.invert(drop))
    out = pa.BufferOutputStream()
    pq.write_table(kept, out)
    return out.getvalue().to_pybytes(), kept.num_rows


def action_paths(name: str, body: bytes, actions: tuple[str, ...]) -> Iterator[str]:
    """The `path` of each action of the given kinds in a JSON log file or a Parquet checkpoint."""
    if name.endswith(".parquet"):
        table = pq.read_table(io.BytesIO(body))
        for action in actions:
            if action in table.column_names:
                paths = pc.struct_field(table.column(action), "path").drop_null()
                yield from (str(p) for p in paths.to_pylist())
        return
    for line in body.decode("utf-8", "replace").splitlines():
        entry = _json_object(line)
        for action in actions:
            value = entry.get(action)
            if isinstance(value, dict) and isinstance(value.get("path"), str):
                yield value["path"]


def _json_object(line: str) -> dict[str, Any]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def with_deletion_vectors(checkpoint: bytes) -> set[str]:
    """The live files of a classic checkpoint that carry a deletion vector: their Parquet still holds the rows the
    vector hides."""
    table = pq.read_table(io.BytesIO(checkpoint), columns=["add"])
    adds = table.column("add")
    if "deletionVector" not in {field.name for field in adds.type}:
        return set()
    marked = pc.is_valid(pc.struct_field(adds, "deletionVector"))
    return {str(p) for p in pc.struct_field(adds, "path").filter(marked).drop_null().to_pylist()}
