"""Reading a person's YAML file strictly, and naming, in their terms, what is wrong with it.

YAML forgives too much for an order that erases a child's records: it keeps the last of two duplicate keys (a pasted
second `subject:` silently replaces the first), expands anchors into places the reader does not see, and decodes
escapes into control characters. The loader here refuses each of these with the file, the line or field, and why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from domain.errors import InvalidInput

MAX_FILE_BYTES = 1_048_576  # an order or a catalogue is a few kilobytes: anything past 1 MiB is not one

# C0 and C1 controls and DEL; tab, line feed and carriage return only as YAML's own layout, never inside a value
_CONTROL_IN_FILE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_IN_VALUE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class _Refused(Exception):
    def __init__(self, line: int, problem: str) -> None:
        self.line = line
        self.problem = problem


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
    """SafeLoader that refuses duplicate keys and, unless allowed, anchors and aliases."""

    allow_aliases = False

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if not self.allow_aliases and (isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)):
            raise _Refused(event.start_mark.line + 1, "anchors and aliases are not allowed")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with `<<` may be overridden: that is what a merge is for
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: the base constructor names the problem
            if key in seen:
                raise _Refused(key_node.start_mark.line + 1, f"key {str(key)[:40]!r} is repeated")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _AliasLoader(_StrictLoader):
    allow_aliases = True


def read_yaml(path: Path, *, allow_aliases: bool) -> Any:
    """The file's one YAML document, refusing what a careless or hostile writer could slip past a reader."""
    return parse_yaml(_read_bytes(path), str(path), allow_aliases=allow_aliases)


def parse_yaml(raw: bytes, source: str, *, allow_aliases: bool) -> Any:
    """One YAML (or JSON) document from `source` (a file's path, an HTTP body), refused as `read_yaml` refuses."""
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(source, "(file)", f"is too large: expected at most {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(source, f"line {line}", "is not UTF-8 text") from None
    control = _CONTROL_IN_FILE.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        raise InvalidInput(source, f"line {line}", f"holds a control character (U+{ord(control[0]):04X})")
    try:
        data = yaml.load(text, Loader=_AliasLoader if allow_aliases else _StrictLoader)
    except _Refused as exc:
        raise InvalidInput(source, f"line {exc.line}", exc.problem) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise InvalidInput(source, where, "is not valid YAML") from None
    for field, value in _strings(data, ""):
        if _CONTROL_IN_VALUE.search(value):
            raise InvalidInput(source, field or "(top level)", "must not contain control characters")
    return data


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(str(path), "(file)", f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(str(path), "(file)", f"is too large: expected at most {MAX_FILE_BYTES} bytes")
    return raw


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string of the document, keys included, with its field path as `describe` writes it."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield path, key  # a bad key is named by where it stands, never echoed
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            name = item.get("name") if isinstance(item, dict) else None
            label = name if isinstance(name, str) and not _CONTROL_IN_VALUE.search(name) else index
            yield from _strings(item, f"{path}[{label}]")


def describe(exc: ValidationError, data: Any) -> tuple[str, str]:
    """The first error as (field path, problem), with system names in place of list positions."""
    error = exc.errors(include_url=False, include_input=False)[0]
    parts: list[str] = []
    node: Any = data
    for loc in error["loc"]:
        if isinstance(loc, int) and isinstance(node, list) and loc < len(node):
            item = node[loc]
            name = item.get("name") if isinstance(item, dict) else None
            parts.append(f"[{name}]" if isinstance(name, str) else f"[{loc}]")
            node = item
        else:
            parts.append(f".{loc}" if parts else str(loc))
            node = node.get(loc) if isinstance(node, dict) else None
    field = "".join(parts) or "(top level)"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return field, message[0].lower() + message[1:] if message else message
