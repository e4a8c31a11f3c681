"""Segment Public API regulations (deletion and suppression), as a local stand-in for tests and the demo.

Follows the Public API reference and its generated SDKs (segmentio/public-api-sdk-*): `POST /regulations`,
`POST /regulations/sources/{sourceId}`, `GET /regulations/{regulateId}`, the lists `GET /regulations` and
`GET /regulations/sources/{sourceId}` (past 90 days; `pagination.count` 1-200 required, `pagination.cursor`,
`status`, `regulationTypes`; entries `{id, subjectType, subjects, status, regulationType, createdAt, finishedAt}`),
and `GET /suppressions` (`suppressed[].{subjectType, subjectIds}`); Bearer token; bodies `{"data": ...}` with
`pagination.{current, next, previous, totalEntries}` on lists.
Errors are `{"errors": [{"type", "message"}]}`; validation failures are 422 `input-validation` with the `field`.
The regulation quota is 110,000 subject ids per calendar month (UTC), counted separately for Segment-only and
Segment-and-destination regulation types; an exhausted quota is 429 `RequestError` with `data.msBeforeNext`, a
`Retry-After` in whole seconds, and `X-RateLimit-Remaining` / `X-RateLimit-Consumed` / `X-RateLimit-Reset` (an
RFC 5322 date) on every answer to a regulation's creation.

A regulation reaches its terminal status at the `finish_after_polls`-th GET (deterministic: Temporal's time-skipping
server does not move wall time) or once `finish_after` of real time has passed (the demo), whichever comes first.
Before that the first GET sees INITIALIZED and later ones RUNNING. Status is worked out when the regulation is read,
and a FINISHED deleting regulation removes its subject ids from `profiles` at that moment.

Two hostile modes stand for a vendor that misbehaves: `echo` puts the regulation's first subject id (or the last one
sent) in every string the vendor itself chooses (ids, statuses, names, error types and messages), `surrogates` appends a lone UTF-16
surrogate (`\\ud800`, escaped in valid JSON) to every such string.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_SUBJECT_IDS = 5000
MONTHLY_QUOTA = 110_000  # subject ids per calendar month and category
MAX_PAGE = 200
LIST_WINDOW = timedelta(days=90)
WORKSPACE_REGULATION_TYPES = frozenset(
    {
        "SUPPRESS_ONLY",
        "UNSUPPRESS",
        "SUPPRESS_WITH_DELETE",
        "DELETE_INTERNAL",
        "SUPPRESS_WITH_DELETE_INTERNAL",
        "DELETE_ONLY",
    }
)
SOURCE_REGULATION_TYPES = WORKSPACE_REGULATION_TYPES | {"DELETE_ARCHIVE_ONLY"}
WORKSPACE_SUBJECT_TYPES = frozenset({"USER_ID", "OBJECT_ID"})
SOURCE_SUBJECT_TYPES = frozenset({"USER_ID", "ANONYMOUS_ID"})
DELETING_TYPES = frozenset(
    {"SUPPRESS_WITH_DELETE", "DELETE_INTERNAL", "SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_ONLY", "DELETE_ARCHIVE_ONLY"}
)
SUPPRESSING_TYPES = frozenset({"SUPPRESS_ONLY", "SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL"})
DESTINATION_TYPES = frozenset({"SUPPRESS_WITH_DELETE", "DELETE_ONLY"})  # the Segment-and-destination category
STATUSES = ("INITIALIZED", "RUNNING", "FINISHED", "PARTIAL_SUCCESS", "FAILED", "INVALID", "NOT_SUPPORTED")

Outcome = Literal["FINISHED", "FAILED", "PARTIAL_SUCCESS", "INVALID", "NOT_SUPPORTED", "NEVER"]
Mode = Literal["normal", "echo", "surrogates"]
Category = Literal["segment_only", "segment_and_destinations"]
WaitSignal = Literal["retry-after", "ms-before-next", "reset"]
_ID_ALPHABET = string.ascii_letters + string.digits
_LONE_SURROGATE = "\ud800"


def _segment_id() -> str:
    """Segment's ids are 27 base62 characters (the reference's example: 1qJkfE1tpwvQcklImGksLN629wn)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(27))


@dataclass(frozen=True)
class Destination:
    id: str
    name: str


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: dict[str, Any] | None
    query: str = ""


@dataclass
class Regulation:
    id: str
    regulation_type: str
    subject_type: str
    subject_ids: tuple[str, ...]
    stream_id: str
    source_id: str | None
    created_at: datetime
    outcome: Outcome  # fixed when created, so changing the state later does not rewrite history
    polls: int = 0
    finished_at: datetime | None = None


def _default_destinations() -> list[Destination]:
    return [
        Destination("6bQf1Zy0pKkA3qXcWm9rTz2u8Lv", "Amplitude"),
        Destination("2HnR7sVd4eJwYt0bQk5mPx9cAaF", "Braze"),
    ]


def _wall_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class SegmentState:
    token: str = "dev-token"  # what the dev stack gives the worker unless SEGMENT_TOKEN is set
    workspace_id: str = "9aQ1xZ7cB2vN5mK8jH3gF6dS4aW"
    finish_after_polls: int | None = 2
    finish_after: timedelta | None = None
    outcome: Outcome = "FINISHED"
    mode: Mode = "normal"
    fail_next_with: list[int] = field(default_factory=list)  # HTTP statuses returned by the next calls, in order
    hold_next_answers: int = 0  # regulations created whose answer then comes only after `hold_for`
    hold_for: timedelta = timedelta(seconds=5)
    throttle_for: timedelta = timedelta(seconds=1)  # how long an injected 429 asks the client to wait
    wait_signals: frozenset[WaitSignal] = frozenset({"retry-after", "ms-before-next", "reset"})  # what a 429 carries
    monthly_quota: int = MONTHLY_QUOTA
    used: dict[tuple[Category, str], int] = field(default_factory=dict)  # (category, "YYYY-MM") -> subject ids
    clock: Callable[[], datetime] = _wall_clock
    destinations: list[Destination] = field(default_factory=_default_destinations)
    profiles: set[str] = field(default_factory=set)  # user ids the workspace holds; seeded by the test
    suppressed: set[str] = field(default_factory=set)  # suppressed user ids
    regulations: dict[str, Regulation] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    last_subjects: tuple[str, ...] = ()


def create_app(state: SegmentState) -> Starlette:
    async def create_workspace_regulation(request: Request) -> Response:
        return await _create(state, request, None)

    async def create_source_regulation(request: Request) -> Response:
        return await _create(state, request, request.path_params["sourceId"])

    async def list_workspace_regulations(request: Request) -> Response:
        return _list_regulations(state, request, None)

    async def list_source_regulations(request: Request) -> Response:
        return _list_regulations(state, request, request.path_params["sourceId"])

    async def get_regulation(request: Request) -> Response:
        state.received.append(Received("GET", request.url.path, None))
        refused = _refuse(state, request)
        if refused is not None:
            return refused
        regulation = state.regulations.get(request.path_params["regulateId"])
        if regulation is None:
            return _error(state, 404, "not-found", "Resource not found")
        regulation.polls += 1
        return _json(200, {"data": {"regulation": _render(state, regulation)}})

    async def list_suppressions(request: Request) -> Response:
        state.received.append(Received("GET", request.url.path, None, request.url.query))
        refused = _refuse(state, request)
        if refused is not None:
            return refused
        page = _page(request)
        if isinstance(page, str):
            return _error(state, 422, "input-validation", "pagination is invalid", field=page)
        start, count = page
        ids = sorted(state.suppressed)
        chunk = ids[start : start + count]
        suppressed = [{"subjectType": "USER_ID", "subjectIds": chunk}] if chunk else []
        body = {"suppressed": suppressed, "pagination": _pagination(start, count, len(ids))}
        return _json(200, {"data": body})

    return Starlette(
        routes=[
            Route("/regulations", create_workspace_regulation, methods=["POST"]),
            Route("/regulations", list_workspace_regulations, methods=["GET"]),
            Route("/regulations/sources/{sourceId}", create_source_regulation, methods=["POST"]),
            Route("/regulations/sources/{sourceId}", list_source_regulations, methods=["GET"]),
            Route("/regulations/{regulateId}", get_regulation, methods=["GET"]),
            Route("/suppressions", list_suppressions, methods=["GET"]),
        ]
    )


async def _create(state: SegmentState, request: Request, source_id: str | None) -> Response:
    try:
        body = json.loads(await request.body())
    except ValueError:
        state.received.append(Received("POST", request.url.path, None))
        return _error(state, 400, "bad-request", "Request body is not valid JSON")
    state.received.append(Received("POST", request.url.path, body))
    state.last_subjects = _subjects_of(body) or state.last_subjects
    refused = _refuse(state, request, _subjects_of(body))
    if refused is not None:
        return refused
    problem = _invalid(body, source_id)
    if problem is not None:
        name, message = problem
        return _error(state, 422, "input-validation", message, field=name, echo=_subjects_of(body))
    ids = tuple(body["subjectIds"])
    category = _category(body["regulationType"])
    month = _month(state.clock())
    remaining = state.monthly_quota - state.used.get((category, month), 0)
    if len(ids) > remaining:
        return _throttled(state, category, until=_next_month(state.clock()), echo=ids)
    state.used[(category, month)] = state.used.get((category, month), 0) + len(ids)
    regulation = Regulation(
        id=_segment_id(),
        regulation_type=body["regulationType"],
        subject_type=body["subjectType"],
        subject_ids=ids,
        stream_id=source_id or _segment_id(),
        source_id=source_id,
        created_at=state.clock(),
        outcome=state.outcome,
    )
    state.regulations[regulation.id] = regulation
    if regulation.regulation_type in SUPPRESSING_TYPES:
        state.suppressed.update(regulation.subject_ids)  # Segment suppresses at once; deletion takes its time
    elif regulation.regulation_type == "UNSUPPRESS":
        state.suppressed.difference_update(regulation.subject_ids)
    if state.hold_next_answers:
        state.hold_next_answers -= 1
        await asyncio.sleep(state.hold_for.total_seconds())  # longer than the client waits: it never sees the answer
    response = _json(200, {"data": {"regulateId": _vendor_text(state, regulation.id, ids)}})
    response.headers.update(_rate_headers(state, category))
    return response


def _list_regulations(state: SegmentState, request: Request, source_id: str | None) -> Response:
    state.received.append(Received("GET", request.url.path, None, request.url.query))
    refused = _refuse(state, request)
    if refused is not None:
        return refused
    page = _page(request)
    if isinstance(page, str):
        return _error(state, 422, "input-validation", "pagination is invalid", field=page)
    start, count = page
    status = request.query_params.get("status")
    types = {t for value in request.query_params.getlist("regulationTypes") for t in value.split(",") if t}
    since = state.clock() - LIST_WINDOW
    entries = [
        _list_entry(state, regulation)
        for regulation in sorted(state.regulations.values(), key=lambda r: r.created_at, reverse=True)
        if regulation.source_id == source_id
        and regulation.created_at >= since
        and (not types or regulation.regulation_type in types)
    ]
    entries = [entry for entry in entries if status is None or entry[0] == status]
    chunk = [body for _, body in entries[start : start + count]]
    return _json(200, {"data": {"regulations": chunk, "pagination": _pagination(start, count, len(entries))}})


def _list_entry(state: SegmentState, regulation: Regulation) -> tuple[str, dict[str, Any]]:
    status = _status(state, regulation)  # a listing is no poll: it does not move the regulation on
    shown = _vendor_text(state, status, regulation.subject_ids)
    return status, {
        "id": _vendor_text(state, regulation.id, regulation.subject_ids),
        "subjectType": regulation.subject_type,
        "subjects": list(regulation.subject_ids),
        "status": shown,
        "regulationType": regulation.regulation_type,
        "createdAt": _iso(regulation.created_at),
        "finishedAt": _iso(regulation.finished_at) if regulation.finished_at else None,
    }


def _page(request: Request) -> tuple[int, int] | str:
    """(start, count) from `pagination.count` and `pagination.cursor`, or the name of the invalid field."""
    count_text = request.query_params.get("pagination.count")
    if count_text is None or not count_text.isdigit() or not 1 <= int(count_text) <= MAX_PAGE:
        return "pagination.count"
    cursor = request.query_params.get("pagination.cursor")
    if cursor is None:
        return 0, int(count_text)
    try:
        start = int(base64.b64decode(cursor, validate=True).decode())
    except ValueError:
        return "pagination.cursor"
    return start, int(count_text)


def _pagination(start: int, count: int, total: int) -> dict[str, Any]:
    def cursor(position: int) -> str:
        return base64.b64encode(str(position).encode()).decode()

    return {
        "current": cursor(start),
        "next": cursor(start + count) if start + count < total else None,
        "previous": cursor(max(start - count, 0)) if start > 0 else None,
        "totalEntries": total,
    }


def _category(regulation_type: str) -> Category:
    return "segment_and_destinations" if regulation_type in DESTINATION_TYPES else "segment_only"


def _month(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m")


def _next_month(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _rate_headers(state: SegmentState, category: Category) -> dict[str, str]:
    used = state.used.get((category, _month(state.clock())), 0)
    return {
        "X-RateLimit-Remaining": str(max(state.monthly_quota - used, 0)),
        "X-RateLimit-Consumed": str(used),
        "X-RateLimit-Reset": format_datetime(_next_month(state.clock()), usegmt=True),
    }


def _throttled(state: SegmentState, category: Category, until: datetime, echo: tuple[str, ...] = ()) -> Response:
    wait = max((until - state.clock()).total_seconds(), 0.0)
    error: dict[str, Any] = {
        "type": _vendor_text(state, "RequestError", echo),
        "message": _vendor_text(state, "Too many requests", echo),
    }
    if "ms-before-next" in state.wait_signals:
        error["data"] = {"msBeforeNext": math.ceil(wait * 1000)}
    response = _json(429, {"errors": [error]})
    headers = _rate_headers(state, category)
    headers["X-RateLimit-Reset"] = format_datetime(until.astimezone(UTC), usegmt=True)
    if "reset" not in state.wait_signals:
        del headers["X-RateLimit-Reset"]
    if "retry-after" in state.wait_signals:
        headers["Retry-After"] = str(math.ceil(wait))
    response.headers.update(headers)
    return response


def _refuse(state: SegmentState, request: Request, echo: tuple[str, ...] = ()) -> Response | None:
    """Authentication first, then any injected fault (a 422 as Segment's validation failure of the subject ids)."""
    if request.headers.get("authorization") != f"Bearer {state.token}":
        return _error(state, 401, "unauthorized", "Unauthorized")
    if state.fail_next_with:
        status = state.fail_next_with.pop(0)
        if status == 429:
            return _throttled(state, "segment_and_destinations", until=state.clock() + state.throttle_for, echo=echo)
        if status == 422:
            return _error(state, 422, "input-validation", "subjectIds is invalid", field="subjectIds", echo=echo)
        return _error(state, status, "server-error", "Injected failure", echo=echo)
    return None


def _invalid(body: Any, source_id: str | None) -> tuple[str, str] | None:
    """The field that fails validation and why, or None."""
    types, subjects = (
        (WORKSPACE_REGULATION_TYPES, WORKSPACE_SUBJECT_TYPES)
        if source_id is None
        else (SOURCE_REGULATION_TYPES, SOURCE_SUBJECT_TYPES)
    )
    if not isinstance(body, dict):
        return "body", "body must be an object"
    if body.get("regulationType") not in types:
        return "regulationType", f"regulationType must be one of {sorted(types)}"
    if body.get("subjectType") not in subjects:
        return "subjectType", f"subjectType must be one of {sorted(subjects)}"
    ids = body.get("subjectIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        return "subjectIds", "subjectIds must be a non-empty list of strings"
    if len(ids) > MAX_SUBJECT_IDS:
        return "subjectIds", f"subjectIds must not have more than {MAX_SUBJECT_IDS} items"
    return None


def _subjects_of(body: Any) -> tuple[str, ...]:
    ids = body.get("subjectIds") if isinstance(body, dict) else None
    return tuple(i for i in ids if isinstance(i, str)) if isinstance(ids, list) else ()


def _render(state: SegmentState, regulation: Regulation) -> dict[str, Any]:
    status = _status(state, regulation)
    finished_at = _iso(regulation.finished_at) if regulation.finished_at else None
    echo = regulation.subject_ids
    reaches_destinations = regulation.regulation_type in DESTINATION_TYPES
    destinations = state.destinations if reaches_destinations else []
    return {
        "id": _vendor_text(state, regulation.id, echo),
        "workspaceId": _vendor_text(state, state.workspace_id, echo),
        "overallStatus": _vendor_text(state, status, echo),
        "createdAt": _iso(regulation.created_at),
        "finishedAt": finished_at,
        "streamStatus": [
            {
                "id": _vendor_text(state, regulation.stream_id, echo),
                "destinationStatus": [
                    {
                        "id": _vendor_text(state, destination.id, echo),
                        "name": _vendor_text(state, destination.name, echo),
                        "status": _vendor_text(state, destination_status, echo),
                        "errString": _vendor_text(state, _ERR_STRINGS.get(destination_status, ""), echo),
                        "finishedAt": finished_at or "",
                    }
                    for destination, destination_status in zip(
                        destinations, _destination_statuses(status, len(destinations)), strict=True
                    )
                ],
            }
        ],
    }


_ERR_STRINGS = {
    "NOT_SUPPORTED": "destination does not support deletion",
    "FAILED": "destination returned an error",
    "INVALID": "invalid subject",
}


def _status(state: SegmentState, regulation: Regulation) -> str:
    """Called on each GET, after counting it: the first GET sees INITIALIZED, the `finish_after_polls`-th the end."""
    if regulation.finished_at is not None:
        return regulation.outcome
    now = state.clock()
    by_polls = state.finish_after_polls is not None and regulation.polls >= state.finish_after_polls
    by_time = state.finish_after is not None and now - regulation.created_at >= state.finish_after
    if regulation.outcome == "NEVER" or not (by_polls or by_time):
        return "INITIALIZED" if regulation.polls <= 1 else "RUNNING"
    regulation.finished_at = now
    # FAILED is what Segment reports when only an unsupported destination failed: its own systems did delete
    if regulation.outcome in ("FINISHED", "FAILED") and regulation.regulation_type in DELETING_TYPES:
        state.profiles.difference_update(regulation.subject_ids)
    return regulation.outcome


def _destination_statuses(overall: str, count: int) -> list[str]:
    """FAILED: one destination cannot delete; PARTIAL_SUCCESS: one destination errored; otherwise all alike."""
    if overall in ("FAILED", "PARTIAL_SUCCESS") and count:
        failing = "NOT_SUPPORTED" if overall == "FAILED" else "FAILED"
        return ["FINISHED"] * (count - 1) + [failing]
    return [overall] * count


def _vendor_text(state: SegmentState, text: str, subjects: tuple[str, ...]) -> str:
    """A string the vendor chooses, as the hostile modes distort it."""
    subjects = subjects or state.last_subjects  # a call that names no subject echoes the last one sent
    if state.mode == "echo" and subjects:
        return subjects[0]
    if state.mode == "surrogates":
        return text + _LONE_SURROGATE
    return text


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(
    state: SegmentState, status: int, kind: str, message: str, field: str | None = None, echo: tuple[str, ...] = ()
) -> Response:
    error: dict[str, Any] = {"type": _vendor_text(state, kind, echo), "message": _vendor_text(state, message, echo)}
    if field is not None:
        error["field"] = _vendor_text(state, field, echo)
    return _json(status, {"errors": [error]})


def _json(status: int, body: dict[str, Any]) -> Response:
    # ensure_ascii keeps a lone surrogate as the JSON escape \ud800 (valid JSON, invalid Unicode once decoded)
    return Response(json.dumps(body, ensure_ascii=True), status_code=status, media_type="application/json")
