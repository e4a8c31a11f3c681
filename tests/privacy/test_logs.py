"""Logs: identifier fields dropped, identifier-shaped values masked, our own ids kept; JSON lines on disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import structlog

from erasure.logs import configure, get_logger, mask


def test_values_shaped_like_identifiers_are_masked() -> None:
    text = "mail Sunny.Day+clips@example.org, call +44 7700 900123 or (555) 010-9999, idfa 6D92078A-8246-4BA4-AE5B-76104861E7DC"
    masked = mask(text)
    assert "example.org" not in masked and "7700" not in masked and "010-9999" not in masked
    assert "6D92078A" not in masked
    assert masked.count("[email]") == 1 and masked.count("[phone]") == 2 and masked.count("[id]") == 1
    assert (
        mask("deleted 18 rows in 3 tables at 2026-11-29T14:00:00Z")
        == "deleted 18 rows in 3 tables at 2026-11-29T14:00:00Z"
    )


def test_identifier_shapes_inside_tokens_are_masked() -> None:
    masked = mask(
        "ERR_7391827364 ERR7391827364 code=7391827364; user-7391827364 "
        "ad_6D92078A-8246-4BA4-AE5B-76104861E7DC_x key:Mia.Child@example.org"
    )

    assert "7391827364" not in masked and "6D92078A" not in masked and "example.org" not in masked
    assert masked.startswith("ERR_[phone] ERR[phone] code=[phone]; user-[phone] ad_[id]_x key:[email]")
    # our own figures stay: a digest's digits, a timestamp, a duration
    kept = "sha256 ab73918273645cd at 2026-11-29T14:00:00Z took 7391827364ms"
    assert mask(kept) == kept


def test_log_files_hold_json_lines_without_identifiers(tmp_path: Path) -> None:
    path = configure(tmp_path / "logs", "test")
    try:
        log = get_logger("erasure.test")
        structlog.contextvars.bind_contextvars(request_id="0b6f8a52-6c59-4d8e-9d4e-1c2f3a4b5c6d")
        log.info(
            "looked for sunny.day@example.org",
            email="sunny.day@example.org",
            user_id="1042",
            advertising_id="6D92078A-8246-4BA4-AE5B-76104861E7DC",
            rows=3,
        )
        logging.getLogger("somelibrary").warning("request for +44 7700 900123 failed")
        structlog.contextvars.clear_contextvars()
    finally:
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_erasure", False):
                logging.getLogger().removeHandler(handler)
                handler.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    text = path.read_text()
    assert "example.org" not in text and "1042" not in text and "6D92078A" not in text and "7700" not in text
    ours, library = lines
    assert ours["email"] == ours["user_id"] == ours["advertising_id"] == "[redacted]"
    assert ours["event"] == "looked for [email]"
    assert ours["rows"] == 3
    assert ours["request_id"] == "0b6f8a52-6c59-4d8e-9d4e-1c2f3a4b5c6d"  # our own random id stays readable
    assert library["event"] == "request for [phone] failed"
    assert library["level"] == "warning"
