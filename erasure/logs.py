"""Logging: JSON lines under `$ERASURE_HOME/logs/`, readable lines on a terminal, and no identifier in either.

A processor drops fields named like identifiers and masks values shaped like emails, phone numbers and advertising
ids (UUID-shaped) anywhere else, except in the fields that carry our own random ids.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

from stores.keys import ensure_private_dir

IDENTIFIER_FIELDS = frozenset(
    {"email", "phone", "user_id", "device_id", "advertising_id", "username", "identifier", "identifiers", "subject"}
)
# Our own random ids are UUID-shaped like advertising ids; these fields may keep them.
OWN_ID_FIELDS = frozenset({"request_id", "workflow_id", "run_id", "activity_id", "vendor_job_id", "task_queue"})

# An identifier hides inside a token as easily as between spaces (ERR_7391827364, ERR7391827364, id=...), so a shape
# is masked wherever it stands, except where that would eat our own figures: a phone-shaped run of digits is left
# when a hex digit or a decimal point comes before it (part of a digest or a number), or a letter or digit after it
# (a timestamp's date before its T, a duration).
_EMAIL = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_PHONE = re.compile(r"(?<![0-9A-Fa-f.])\+?\d[\d ().-]{6,}\d(?![^\W_])(?!\.\d)")


def mask(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _UUID.sub("[id]", text)
    return _PHONE.sub("[phone]", text)


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key in IDENTIFIER_FIELDS:
            event[key] = "[redacted]"
        elif key not in OWN_ID_FIELDS and isinstance(event[key], str):
            event[key] = mask(event[key])
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    redact,
]


def configure(logs_dir: Path, component: str, *, level: int = logging.INFO) -> Path:
    """Send every log record (ours and the libraries') through the redaction processor to both outputs."""
    ensure_private_dir(logs_dir)  # what the redaction misses is still read by this user only
    path = logs_dir / f"{component}.jsonl"
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=_SHARED,
        )
    )
    handlers: list[logging.Handler] = [file_handler]
    if sys.stderr.isatty():
        console = logging.StreamHandler()
        console.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=True),
                ],
                foreign_pre_chain=_SHARED,
            )
        )
        handlers.append(console)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_erasure", False):
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        handler._erasure = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs whole URLs at INFO, and some vendors take tokens in the query string
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return path


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
