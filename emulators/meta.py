"""Meta Marketing API custom audience users (removal) and upload sessions, as a local stand-in.

Follows the Graph API reference and the official business SDK: `DELETE /v{N}/{audience_id}/users` with
`access_token`, `payload` and `session` in the query string or a form body (the SDK sends DELETE parameters in the
query string; large payloads need the body); `GET /v{N}/{audience_id}/sessions[?session_id=]` with the session fields
Meta documents (`session_id`, `start_time`, `end_time`, `num_received`, `num_matched`, `num_invalid_entries`,
`progress`, `stage`, all numeric strings). Errors have the Graph shape and, as at Meta, throttling comes back as HTTP
400 with codes 17 / 613 / 80003 and an `X-Business-Use-Case-Usage` header.

A session is "uploading" (progress "0", end_time "0") until its last batch arrives, which sets end_time (Meta:
"upload end time"); it is then "processing" until `finish_after_polls` reads of the sessions edge or `finish_after`
of real time have passed, and then "finished" with progress "100": only then are the members matching its rows
removed from the audience. Meta documents the stage "uploading" only; "processing" and "finished" are this
emulator's names for the later stages, so clients should judge completion by progress.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_ROWS = 10_000
HASHED_KEYS = frozenset(
    {"EMAIL", "PHONE", "FN", "LN", "FI", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN"}
)
UNHASHED_KEYS = frozenset({"EXTERN_ID", "MADID"})
# Graph codes the emulator can throttle with: code -> (message, subcode)
THROTTLES: dict[int, tuple[str, int | None]] = {
    17: ("User request limit reached", 2446079),
    613: ("Calls to this api have exceeded the rate limit.", 1487742),
    80003: ("There have been too many calls to this ad-account. Wait a bit and try again.", None),
}
_VERSION = re.compile(r"v\d+\.\d+")
_SHA256 = re.compile(r"[0-9a-f]{64}")

Row = tuple[str, ...]


@dataclass(frozen=True)
class Received:
    audience_id: str
    schema: tuple[str, ...]
    rows: list[Row]
    session: dict[str, Any] | None


@dataclass
class Session:
    session_id: int
    start_time: datetime
    batches: dict[int, list[Row]] = field(default_factory=dict)  # valid rows by batch_seq; a resent batch replaces
    received: dict[int, int] = field(default_factory=dict)
    invalid: dict[int, int] = field(default_factory=dict)
    last_batch_at: datetime | None = None  # the upload end time
    polls: int = 0
    processed_at: datetime | None = None
    matched: int = 0


@dataclass
class MetaState:
    access_token: str = "dev-token"  # what the dev stack gives the worker unless META_ACCESS_TOKEN is set
    # audience id -> members, each a tuple of the hashes (or unhashed ids) Meta matched them on; seeded by the test
    audiences: dict[str, set[Row]] = field(default_factory=dict)
    finish_after_polls: int | None = 2
    finish_after: timedelta | None = None
    # consumed one per call: Graph throttle codes (see THROTTLES) answer HTTP 400; other values are HTTP statuses
    fail_next_with: list[int] = field(default_factory=list)
    invalid_rows: int = 0  # while set, each call reports its first rows invalid (and does not apply them)
    regain_access_minutes: int = 1
    sessions: dict[str, dict[int, Session]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)


class GraphError(Exception):
    def __init__(self, message: str, code: int, subcode: int | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.status = status


def create_app(state: MetaState) -> Starlette:
    async def delete_users(request: Request) -> JSONResponse:
        try:
            params = dict(request.query_params)
            if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                params.update(parse_qsl((await request.body()).decode()))
            audience_id = _authorise(state, request, params)
            return _json(state, 200, _remove(state, audience_id, params))
        except GraphError as exc:
            return _graph_error(state, exc)

    async def get_sessions(request: Request) -> JSONResponse:
        try:
            params = dict(request.query_params)
            audience_id = _authorise(state, request, params)
            return _json(state, 200, {"data": _sessions(state, audience_id, params.get("session_id"))})
        except GraphError as exc:
            return _graph_error(state, exc)

    return Starlette(
        routes=[
            Route("/{version}/{audience_id}/users", delete_users, methods=["DELETE"]),
            Route("/{version}/{audience_id}/sessions", get_sessions, methods=["GET"]),
        ]
    )


def _authorise(state: MetaState, request: Request, params: dict[str, str]) -> str:
    """Version, token, injected fault and audience, in the order Graph checks them; returns the audience id."""
    if not _VERSION.fullmatch(request.path_params["version"]):
        raise GraphError("Unknown path components", 2500)
    if params.get("access_token") != state.access_token:
        raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
    if state.fail_next_with:
        fault = state.fail_next_with.pop(0)
        if fault in THROTTLES:
            message, subcode = THROTTLES[fault]
            raise GraphError(message, fault, subcode)
        raise GraphError("An unexpected error has occurred. Please retry your request later.", 2, status=fault)
    audience_id: str = request.path_params["audience_id"]
    if audience_id not in state.audiences:
        raise GraphError(
            f"Unsupported request. Object with ID '{audience_id}' does not exist, cannot be loaded due to missing "
            "permissions, or does not support this operation.",
            100,
            33,
        )
    return audience_id


def _remove(state: MetaState, audience_id: str, params: dict[str, str]) -> dict[str, Any]:
    schema, rows = _payload(params.get("payload"))
    spec = _session_spec(params.get("session"))
    state.received.append(Received(audience_id, schema, rows, spec))
    invalid = {i for i, row in enumerate(rows) if not _valid(schema, row)}
    invalid.update(range(min(state.invalid_rows, len(rows))))
    valid = [row for i, row in enumerate(rows) if i not in invalid]

    sessions = state.sessions.setdefault(audience_id, {})
    session_id = spec["session_id"] if spec else secrets.randbits(62)
    session = sessions.setdefault(session_id, Session(session_id, datetime.now(UTC)))
    batch_seq = spec["batch_seq"] if spec else 1
    session.batches[batch_seq] = valid
    session.received[batch_seq] = len(rows)
    session.invalid[batch_seq] = len(invalid)
    if spec is None or spec.get("last_batch_flag") is True:
        session.last_batch_at = datetime.now(UTC)
    if session.processed_at is not None:  # a batch resent to a finished session is processed at once
        session.matched += _apply(state.audiences[audience_id], valid)
    return {
        "audience_id": audience_id,
        "session_id": str(session_id),
        "num_received": len(rows),
        "num_invalid_entries": len(invalid),
        "invalid_entry_samples": {"|".join(rows[i]): "Invalid format" for i in sorted(invalid)[:10]},
    }


def _payload(raw: str | None) -> tuple[tuple[str, ...], list[Row]]:
    try:
        payload = json.loads(raw or "")
    except ValueError:
        raise GraphError("(#100) param payload must be a JSON object", 100) from None
    if not isinstance(payload, dict):
        raise GraphError("(#100) param payload must be a JSON object", 100)
    schema, data = payload.get("schema"), payload.get("data")
    if not isinstance(data, list) or not data:
        raise GraphError("(#100) Missing data in payload", 100)
    if len(data) > MAX_ROWS:
        raise GraphError(f"(#100) The number of users in this request exceeds the limit of {MAX_ROWS}", 100)
    keys: tuple[str, ...]
    rows: list[Row]
    if isinstance(schema, str):  # single key: a flat list of values
        keys, rows = (schema,), [(value,) if isinstance(value, str) else ("",) for value in data]
    elif isinstance(schema, list) and schema and all(isinstance(key, str) for key in schema):
        keys = tuple(schema)
        rows = [
            tuple(value if isinstance(value, str) else "" for value in row) if isinstance(row, list) else ()
            for row in data
        ]
    else:
        raise GraphError("(#100) Invalid schema", 100)
    if any(_key(key) not in HASHED_KEYS | UNHASHED_KEYS for key in keys):
        raise GraphError("(#100) Invalid schema", 100)
    return keys, rows


def _session_spec(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        spec = json.loads(raw)
    except ValueError:
        raise GraphError("(#100) param session must be a JSON object", 100) from None
    if not (
        isinstance(spec, dict)
        and isinstance(spec.get("session_id"), int)
        and isinstance(spec.get("batch_seq"), int)
        and spec["batch_seq"] >= 1
        and isinstance(spec.get("last_batch_flag", False), bool)
    ):
        raise GraphError("(#100) session needs session_id, batch_seq >= 1 and a boolean last_batch_flag", 100)
    return spec


def _key(key: str) -> str:
    return key.removesuffix("_SHA256")


def _valid(schema: tuple[str, ...], row: Row) -> bool:
    """A row needs one value per key, at least one value, and lowercase SHA-256 hex for every hashed key."""
    if len(row) != len(schema) or not any(row):
        return False
    return all(
        not value or _key(key) in UNHASHED_KEYS or _SHA256.fullmatch(value) is not None
        for key, value in zip(schema, row, strict=True)
    )


def _sessions(state: MetaState, audience_id: str, session_id: str | None) -> list[dict[str, str]]:
    sessions = state.sessions.get(audience_id, {})
    chosen = [s for s in sessions.values() if session_id is None or str(s.session_id) == session_id]
    now = datetime.now(UTC)
    for session in chosen:
        _advance(state, audience_id, session, now)
    return [_render(s) for s in reversed(chosen)]  # newest first; sessions are kept in the order they began


def _advance(state: MetaState, audience_id: str, session: Session, now: datetime) -> None:
    if session.last_batch_at is None or session.processed_at is not None:
        return
    session.polls += 1
    by_polls = state.finish_after_polls is not None and session.polls >= state.finish_after_polls
    by_time = state.finish_after is not None and now - session.last_batch_at >= state.finish_after
    if by_polls or by_time:
        session.processed_at = now
        members = state.audiences[audience_id]
        session.matched = sum(_apply(members, rows) for rows in session.batches.values())


def _apply(members: set[Row], rows: list[Row]) -> int:
    """Remove every member sharing a value with a removal row; returns how many were removed."""
    values = {value for row in rows for value in row if value}
    matched = {member for member in members if values.intersection(member)}
    members.difference_update(matched)
    return len(matched)


def _render(session: Session) -> dict[str, str]:
    if session.last_batch_at is None:
        stage, progress = "uploading", "0"
    elif session.processed_at is None:
        stage, progress = "processing", "50"
    else:
        stage, progress = "finished", "100"
    return {
        "session_id": str(session.session_id),
        "start_time": str(int(session.start_time.timestamp())),
        "end_time": str(int(session.last_batch_at.timestamp())) if session.last_batch_at else "0",
        "num_received": str(sum(session.received.values())),
        "num_matched": str(session.matched) if session.processed_at else "-1",
        "num_invalid_entries": str(sum(session.invalid.values())),
        "progress": progress,
        "stage": stage,
    }


def _graph_error(state: MetaState, exc: GraphError) -> JSONResponse:
    error: dict[str, Any] = {"message": exc.message, "type": "OAuthException", "code": exc.code}
    if exc.subcode is not None:
        error["error_subcode"] = exc.subcode
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return _json(state, exc.status, {"error": error}, throttled=exc.code in THROTTLES)


def _json(state: MetaState, status: int, body: dict[str, Any], throttled: bool = False) -> JSONResponse:
    usage = {
        "act_emulated": [
            {
                "type": "custom_audience",
                "call_count": 100 if throttled else 1,
                "total_cputime": 100 if throttled else 1,
                "total_time": 100 if throttled else 1,
                "estimated_time_to_regain_access": state.regain_access_minutes if throttled else 0,
            }
        ]
    }
    return JSONResponse(body, status_code=status, headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
