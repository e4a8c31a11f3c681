"""Reading a person's YAML file and naming, in their terms, what is wrong with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from domain.errors import InvalidInput


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(str(path), "(file)", f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise InvalidInput(str(path), where, "is not valid YAML") from None


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
