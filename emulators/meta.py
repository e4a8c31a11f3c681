"""Meta Marketing API custom audience users (removal) and upload sessions, as a local stand-in.

Follows the Graph API reference and the official business SDK (vendors.md, "Meta Marketing API — custom audience
users"): `DELETE /v{N}/{audience_id}/users` with `payload` and `session` in the query string or a form body (the SDK
sends DELETE parameters in the query string; large payloads need the body); `GET /v{N}/{audience_id}/sessions
[?session_id=][&fields=]` with the session fields Meta documents (`session_id`, `start_time`, `end_time`,
`num_received`, `num_matched`, `num_invalid_entries`, `progress`, `stage`, all strings); without `fields=` a session
shows only its default field, `session_id`. The token comes in `Authorization: Bearer` (or `access_token`); with an app
secret configured ("Require App Secret") every call needs `appsecret_proof`. Errors have the Graph shape: an expired
version is #2635, a payload of another kind than the audience was built with is #2650, a flagged audience is code 100
subcode 1713230, and throttling comes back as HTTP 400 with codes 17 / 613 / 80003 and `X-Business-Use-Case-Usage`.

A session is "uploading" (progress "0", end_time "0") until its last batch arrives, which sets end_time (Meta:
"upload end time"); it is then "processing" until `processing_time` has passed on the emulator's clock (hours by
default: Meta applies removals "usually within 24 hours"; the demo sets seconds) or, for tests on a time-skipping
server, until `finish_after_polls` reads of it; then "finished" with progress "100", and only then are the members
matching its rows removed. Meta documents no values of `stage`: "processing" and "finished" are this emulator's words,
so clients judge completion by `end_time` and `progress`.

Failure modes for tests: `echo` puts the given strings (a subject's identifiers and their hashes) into every value of
every answer, and `lone_surrogates` puts an unpaired UTF-16 surrogate into every string; `corrupt` says which answers
(users, sessions, errors) they apply to.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_ROWS = 10_000
HASHED_KEYS = frozenset(
    {"EMAIL", "PHONE", "FN", "LN", "FI", "CT", "ST", "ZIP", "COUNTRY", "DOBY", "DOBM", "DOBD", "GEN"}
)
UNHASHED_KEYS = frozenset({"EXTERN_ID", "MADID", "MOBILE_ADVERTISER_ID"})
SESSION_FIELDS = (
    "session_id",
    "start_time",
    "end_time",
    "num_received",
    "num_matched",
    "num_invalid_entries",
    "progress",
    "stage",
)
# The data source an audience was built from, by the kind of payload that built it.
MULTI_HASHES = "FILE_IMPORTED.MULTI_HASHES"
HASHES_OR_USER_IDS = "FILE_IMPORTED.HASHES_OR_USER_IDS"
# Graph versions by major number and the day they stop working (vendors.md); older ones expired earlier.
EXPIRES = {21: date(2025, 9, 9), 24: date(2026, 11, 10), 25: date(2027, 2, 23)}
# Graph codes the emulator can throttle with: code -> (message, subcode)
THROTTLES: dict[int, tuple[str, int | None]] = {
    17: ("User request limit reached", 2446079),
    613: ("Calls to this api have exceeded the rate limit.", 1487742),
    80003: ("There have been too many calls to this ad-account. Wait a bit and try again.", None),
}
_VERSION = re.compile(r"v(\d+)\.\d+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LONE_SURROGATE = "\ud800"

Row = tuple[str, ...]


@dataclass(frozen=True)
class Received:
    audience_id: str
    schema: tuple[str, ...]
    rows: list[Row]
    session: dict[str, Any] | None


@dataclass(frozen=True)
class Call:
    """How a request reached the emulator, so tests can check where the token travelled."""

    method: str
    url: str
    bearer: bool  # the token came in the Authorization header
    params: dict[str, str]  # query string and form body together


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


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class MetaState:
    access_token: str = "dev-token"  # what the dev stack gives the worker unless META_ACCESS_TOKEN is set
    app_secret: str | None = None  # set: the app requires appsecret_proof
    # audience id -> members, each a tuple of the hashes (or unhashed ids) Meta matched them on; seeded by the test
    audiences: dict[str, set[Row]] = field(default_factory=dict)
    # audience id -> the data source it was built from; MULTI_HASHES unless said otherwise
    data_sources: dict[str, str] = field(default_factory=dict)
    flagged: set[str] = field(default_factory=set)  # audiences under integrity restrictions
    processing_time: timedelta | None = timedelta(hours=20)
    finish_after_polls: int | None = None
    clock: Callable[[], datetime] = _now
    # consumed one per call: Graph throttle codes (see THROTTLES) answer HTTP 400; other values are HTTP statuses
    fail_next_with: list[int] = field(default_factory=list)
    invalid_rows: int = 0  # while set, each call reports its first rows invalid (and does not apply them)
    regain_access_minutes: int = 1
    echo: tuple[str, ...] = ()
    echo_keys: frozenset[str] | None = None  # only the values of these keys are echoed; None: every value
    lone_surrogates: bool = False
    corrupt: frozenset[str] = frozenset({"users", "sessions", "errors"})
    sessions: dict[str, dict[int, Session]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


class GraphError(Exception):
    def __init__(self, message: str, code: int, subcode: int | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.subcode = subcode
        self.status = status


def create_app(state: MetaState) -> Starlette:
    async def delete_users(request: Request) -> Response:
        try:
            params = await _params(state, request)
            audience_id = _authorise(state, request, params)
            if audience_id in state.flagged:
                raise GraphError("Invalid parameter", 100, 1713230)
            return _json(state, "users", 200, _remove(state, audience_id, params))
        except GraphError as exc:
            return _graph_error(state, exc)

    async def get_sessions(request: Request) -> Response:
        try:
            params = await _params(state, request)
            audience_id = _authorise(state, request, params)
            fields = _fields(params.get("fields"))
            return _json(
                state, "sessions", 200, {"data": _sessions(state, audience_id, params.get("session_id"), fields)}
            )
        except GraphError as exc:
            return _graph_error(state, exc)

    return Starlette(
        routes=[
            Route("/{version}/{audience_id}/users", delete_users, methods=["DELETE"]),
            Route("/{version}/{audience_id}/sessions", get_sessions, methods=["GET"]),
        ]
    )


async def _params(state: MetaState, request: Request) -> dict[str, str]:
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        params.update(parse_qsl((await request.body()).decode()))
    bearer = request.headers.get("authorization", "").startswith("Bearer ")
    state.calls.append(Call(request.method, str(request.url), bearer, params))
    return params


def _authorise(state: MetaState, request: Request, params: dict[str, str]) -> str:
    """Version, token, app secret proof, injected fault and audience, in the order Graph checks them."""
    version = _VERSION.fullmatch(request.path_params["version"])
    if version is None:
        raise GraphError("Unknown path components", 2500)
    today = state.clock().date()
    if any(int(version[1]) <= major and expires <= today for major, expires in EXPIRES.items()):
        current = max(EXPIRES)  # the newest version this emulator knows
        raise GraphError(
            "(#2635) You are calling a deprecated version of the Ads API. "
            f"Please update to the latest version: v{current}.0.",
            2635,
        )
    authorization = request.headers.get("authorization", "")
    token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else params.get("access_token")
    if token != state.access_token:
        raise GraphError("Invalid OAuth access token - Cannot parse access token", 190)
    if state.app_secret is not None:
        proof = params.get("appsecret_proof")
        if proof is None:
            raise GraphError("API calls from the server require an appsecret_proof argument", 100)
        expected = hmac.new(state.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof, expected):
            raise GraphError("Invalid appsecret_proof provided in the API argument", 100)
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
    schema, rows, source = _payload(params.get("payload"))
    built_from = state.data_sources.get(audience_id, MULTI_HASHES)
    if source != built_from:
        raise GraphError(
            f"This audience was created from data source {built_from}, which does not support data source {source}",
            2650,
        )
    spec = _session_spec(params.get("session"))
    state.received.append(Received(audience_id, schema, rows, spec))
    invalid = {i for i, row in enumerate(rows) if not _valid(schema, row)}
    invalid.update(range(min(state.invalid_rows, len(rows))))
    valid = [row for i, row in enumerate(rows) if i not in invalid]

    now = state.clock()
    sessions = state.sessions.setdefault(audience_id, {})
    session_id = spec["session_id"] if spec else secrets.randbits(62)
    session = sessions.setdefault(session_id, Session(session_id, now))
    batch_seq = spec["batch_seq"] if spec else 1
    session.batches[batch_seq] = valid
    session.received[batch_seq] = len(rows)
    session.invalid[batch_seq] = len(invalid)
    if spec is None or spec.get("last_batch_flag") is True:
        session.last_batch_at = now
    if session.processed_at is not None:  # a batch resent to a finished session is processed at once
        session.matched += _apply(state.audiences[audience_id], valid)
    return {
        "audience_id": audience_id,
        "session_id": str(session_id),
        "num_received": len(rows),
        "num_invalid_entries": len(invalid),
        "invalid_entry_samples": {"|".join(rows[i]): "Invalid format" for i in sorted(invalid)[:10]},
    }


def _payload(raw: str | None) -> tuple[tuple[str, ...], list[Row], str]:
    """The schema, the rows and the data source kind the payload belongs to."""
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
        keys, source = (schema,), HASHES_OR_USER_IDS
        rows = [(value,) if isinstance(value, str) else ("",) for value in data]
    elif isinstance(schema, list) and schema and all(isinstance(key, str) for key in schema):
        keys, source = tuple(schema), MULTI_HASHES
        rows = [
            tuple(value if isinstance(value, str) else "" for value in row) if isinstance(row, list) else ()
            for row in data
        ]
    else:
        raise GraphError("(#100) Invalid schema", 100)
    if any(_key(key) not in HASHED_KEYS | UNHASHED_KEYS for key in keys):
        raise GraphError("(#100) Invalid schema", 100)
    return keys, rows, source


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


def _fields(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ("session_id",)  # the default field; the rest only when asked for
    fields = tuple(name.strip() for name in raw.split(","))
    unknown = [name for name in fields if name not in SESSION_FIELDS]
    if unknown:
        raise GraphError(f"(#100) Tried accessing nonexisting field ({unknown[0]})", 100)
    return fields


def _sessions(
    state: MetaState, audience_id: str, session_id: str | None, fields: tuple[str, ...]
) -> list[dict[str, str]]:
    sessions = state.sessions.get(audience_id, {})
    chosen = [s for s in sessions.values() if session_id is None or str(s.session_id) == session_id]
    for session in chosen:
        _advance(state, audience_id, session)
    rendered = [_render(s) for s in reversed(chosen)]  # newest first; sessions are kept in the order they began
    return [{name: value for name, value in session.items() if name in fields} for session in rendered]


def _advance(state: MetaState, audience_id: str, session: Session) -> None:
    if session.last_batch_at is None or session.processed_at is not None:
        return
    now = state.clock()
    session.polls += 1
    by_polls = state.finish_after_polls is not None and session.polls >= state.finish_after_polls
    by_time = state.processing_time is not None and now - session.last_batch_at >= state.processing_time
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


def _graph_error(state: MetaState, exc: GraphError) -> Response:
    error: dict[str, Any] = {"message": exc.message, "type": "OAuthException", "code": exc.code}
    if exc.subcode is not None:
        error["error_subcode"] = exc.subcode
    if exc.subcode == 1713230:
        error["error_user_title"] = "Audience Upload Blocked"
    error["fbtrace_id"] = secrets.token_urlsafe(8)
    return _json(state, "errors", exc.status, {"error": error}, throttled=exc.code in THROTTLES)


def _json(state: MetaState, answer: str, status: int, body: dict[str, Any], throttled: bool = False) -> Response:
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
    if answer in state.corrupt:
        body = _corrupted(state, body)
    # ASCII JSON: a lone surrogate travels as its \u escape, as a broken vendor would send it
    return Response(
        json.dumps(body),
        status_code=status,
        media_type="application/json",
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )


def _corrupted(state: MetaState, value: Any, key: str | None = None) -> Any:
    """The answer with its values replaced by the echoed identifiers and every string given a lone surrogate."""
    if isinstance(value, dict):
        return {
            (name + _LONE_SURROGATE if state.lone_surrogates else name): _corrupted(state, item, name)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_corrupted(state, item, key) for item in value]
    if isinstance(value, bool):
        return value
    echoed = state.echo_keys is None or key in state.echo_keys
    if state.echo and echoed and isinstance(value, str | int | float):
        value = " ".join(state.echo)
    if state.lone_surrogates and isinstance(value, str):
        value += _LONE_SURROGATE
    return value
