"""Canonical JSON out, strict JSON in: the evidence formats hash and sign exact bytes, so neither side may guess."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evidence.errors import VerificationError


def canonical(document: object) -> bytes:
    """Sorted keys, compact separators, UTF-8: the same document always gives the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def loads_strict(data: bytes, what: str) -> Any:
    """Parse UTF-8 JSON, rejecting duplicate keys and NaN/Infinity, which parsers disagree on."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise VerificationError(f"{what} is not valid json: {_reason(exc)}") from exc


def exact_fields(value: object, fields: set[str], what: str) -> dict[str, Any]:
    """The object itself if it has exactly these fields, else a VerificationError naming the difference."""
    if not isinstance(value, dict):
        raise VerificationError(f"{what} has wrong type: expected object, got {type(value).__name__}")
    if set(value) != fields:
        missing, extra = sorted(fields - set(value)), sorted(set(value) - fields)
        raise VerificationError(f"{what} has wrong fields: expected {sorted(fields)}, missing {missing}, extra {extra}")
    return value


def typed(document: Mapping[str, Any], key: str, kind: type, what: str) -> Any:
    """document[key], which must exist and be of this type (bool is not accepted as an int)."""
    value = document.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        got = "nothing" if key not in document else type(value).__name__
        raise VerificationError(f"{what} field {key!r} has wrong type: expected {kind.__name__}, got {got}")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate object key")
    return dict(pairs)


def _no_constant(name: str) -> None:
    raise ValueError(f"non-standard constant {name}")


def _reason(exc: Exception) -> str:
    # JSONDecodeError's own text carries only a reason and a position, never the document.
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid utf-8 at byte {exc.start}"
    return str(exc)
