"""Segment Public API regulations (deletion and suppression), as a local stand-in for tests and the demo.

Follows the Public API reference and its generated SDKs: `POST /regulations`, `POST /regulations/sources/{sourceId}`,
`GET /regulations/{regulateId}`; Bearer token; bodies `{"data": ...}`; errors `{"errors": [{"type", "message"}]}`;
validation failures are 422 and malformed JSON 400; the regulation quota travels in
`X-Regulation-RateLimit-Remaining` (requests left) and `X-Regulation-RateLimit-Quota-Reset` (ISO 8601).

A regulation reaches its terminal status at the `finish_after_polls`-th GET (deterministic: Temporal's time-skipping
server does not move wall time) or once `finish_after` of real time has passed (the demo), whichever comes first.
Before that the first GET sees INITIALIZED and later ones RUNNING. Status is worked out when the regulation is read,
and a FINISHED deleting regulation removes its subject ids from `profiles` at that moment.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MAX_SUBJECT_IDS = 5000
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

Outcome = Literal["FINISHED", "FAILED", "PARTIAL_SUCCESS", "INVALID", "NOT_SUPPORTED", "NEVER"]
_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Destination:
    id: str
    name: str


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class Regulation:
    id: str
    regulation_type: str
    subject_type: str
    subject_ids: tuple[str, ...]
    stream_id: str
    created_at: datetime
    outcome: Outcome  # fixed when created, so changing the state later does not rewrite history
    polls: int = 0
    finished_at: datetime | None = None


def _in_thirty_days() -> datetime:
    return datetime.now(UTC) + timedelta(days=30)


def _default_destinations() -> list[Destination]:
    return [Destination("dest_amplitude_1", "Amplitude"), Destination("dest_braze_1", "Braze")]


@dataclass
class SegmentState:
    token: str = "dev-token"  # what the dev stack gives the worker unless SEGMENT_TOKEN is set
    workspace_id: str = "ws_emulated"
    finish_after_polls: int | None = 2
    finish_after: timedelta | None = None
    outcome: Outcome = "FINISHED"
    fail_next_with: list[int] = field(default_factory=list)  # HTTP statuses returned by the next calls, in order
    quota: int = 1000  # regulation requests left in the current period
    quota_reset: datetime = field(default_factory=_in_thirty_days)
    destinations: list[Destination] = field(default_factory=_default_destinations)
    profiles: set[str] = field(default_factory=set)  # user ids the workspace holds; seeded by the test
    suppressed: set[str] = field(default_factory=set)
    regulations: dict[str, Regulation] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)


def create_app(state: SegmentState) -> Starlette:
    async def create_workspace_regulation(request: Request) -> JSONResponse:
        return await _create(state, request, None)

    async def create_source_regulation(request: Request) -> JSONResponse:
        return await _create(state, request, request.path_params["sourceId"])

    async def get_regulation(request: Request) -> JSONResponse:
        state.received.append(Received("GET", request.url.path, None))
        refused = _refuse(state, request)
        if refused is not None:
            return refused
        regulation = state.regulations.get(request.path_params["regulateId"])
        if regulation is None:
            return _error(state, 404, "not-found", "Resource not found")
        regulation.polls += 1
        return _json(state, 200, {"data": {"regulation": _render(state, regulation)}})

    return Starlette(
        routes=[
            Route("/regulations", create_workspace_regulation, methods=["POST"]),
            Route("/regulations/sources/{sourceId}", create_source_regulation, methods=["POST"]),
            Route("/regulations/{regulateId}", get_regulation, methods=["GET"]),
        ]
    )


async def _create(state: SegmentState, request: Request, source_id: str | None) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError:
        state.received.append(Received("POST", request.url.path, None))
        return _error(state, 400, "bad-request", "Request body is not valid JSON")
    state.received.append(Received("POST", request.url.path, body))
    refused = _refuse(state, request)
    if refused is not None:
        return refused
    problem = _invalid(body, source_id)
    if problem is not None:
        return _error(state, 422, "validation", problem)
    if state.quota <= 0:
        return _error(state, 429, "too-many-requests", "Regulation quota exhausted")
    state.quota -= 1
    regulation = Regulation(
        id="".join(secrets.choice(_ID_ALPHABET) for _ in range(27)),
        regulation_type=body["regulationType"],
        subject_type=body["subjectType"],
        subject_ids=tuple(body["subjectIds"]),
        stream_id=source_id or "stream_emulated",
        created_at=datetime.now(UTC),
        outcome=state.outcome,
    )
    state.regulations[regulation.id] = regulation
    if regulation.regulation_type in SUPPRESSING_TYPES:
        state.suppressed.update(regulation.subject_ids)  # Segment suppresses at once; deletion takes its time
    elif regulation.regulation_type == "UNSUPPRESS":
        state.suppressed.difference_update(regulation.subject_ids)
    return _json(state, 200, {"data": {"regulateId": regulation.id}})


def _refuse(state: SegmentState, request: Request) -> JSONResponse | None:
    """Authentication first, then any injected fault."""
    if request.headers.get("authorization") != f"Bearer {state.token}":
        return _error(state, 401, "unauthorized", "Unauthorized")
    if state.fail_next_with:
        status = state.fail_next_with.pop(0)
        kind = "too-many-requests" if status == 429 else "server-error"
        return _error(state, status, kind, "Injected failure")
    return None


def _invalid(body: Any, source_id: str | None) -> str | None:
    types, subjects = (
        (WORKSPACE_REGULATION_TYPES, WORKSPACE_SUBJECT_TYPES)
        if source_id is None
        else (SOURCE_REGULATION_TYPES, SOURCE_SUBJECT_TYPES)
    )
    if not isinstance(body, dict):
        return "body must be an object"
    if body.get("regulationType") not in types:
        return f"regulationType must be one of {sorted(types)}"
    if body.get("subjectType") not in subjects:
        return f"subjectType must be one of {sorted(subjects)}"
    ids = body.get("subjectIds")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        return "subjectIds must be a non-empty list of strings"
    if len(ids) > MAX_SUBJECT_IDS:
        return f"subjectIds must not have more than {MAX_SUBJECT_IDS} items"
    return None


def _render(state: SegmentState, regulation: Regulation) -> dict[str, Any]:
    status = _status(state, regulation)
    finished_at = _iso(regulation.finished_at) if regulation.finished_at else None
    return {
        "id": regulation.id,
        "workspaceId": state.workspace_id,
        "overallStatus": status,
        "createdAt": _iso(regulation.created_at),
        "finishedAt": finished_at,
        "streamStatus": [
            {
                "id": regulation.stream_id,
                "destinationStatus": [
                    {
                        "id": destination.id,
                        "name": destination.name,
                        "status": destination_status,
                        "errString": _ERR_STRINGS.get(destination_status, ""),
                        "finishedAt": finished_at or "",
                    }
                    for destination, destination_status in zip(
                        state.destinations, _destination_statuses(status, len(state.destinations)), strict=True
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
    now = datetime.now(UTC)
    by_polls = state.finish_after_polls is not None and regulation.polls >= state.finish_after_polls
    by_time = state.finish_after is not None and now - regulation.created_at >= state.finish_after
    if regulation.outcome == "NEVER" or not (by_polls or by_time):
        return "INITIALIZED" if regulation.polls <= 1 else "RUNNING"
    regulation.finished_at = now
    if regulation.outcome == "FINISHED" and regulation.regulation_type in DELETING_TYPES:
        state.profiles.difference_update(regulation.subject_ids)
    return regulation.outcome


def _destination_statuses(overall: str, count: int) -> list[str]:
    """FAILED: one destination cannot delete; PARTIAL_SUCCESS: one destination errored; otherwise all alike."""
    if overall in ("FAILED", "PARTIAL_SUCCESS") and count:
        failing = "NOT_SUPPORTED" if overall == "FAILED" else "FAILED"
        return ["FINISHED"] * (count - 1) + [failing]
    return [overall] * count


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(state: SegmentState, status: int, kind: str, message: str) -> JSONResponse:
    return _json(state, status, {"errors": [{"type": kind, "message": message}]})


def _json(state: SegmentState, status: int, body: dict[str, Any]) -> JSONResponse:
    headers = {
        "X-Regulation-RateLimit-Remaining": str(max(state.quota, 0)),
        "X-Regulation-RateLimit-Quota-Reset": _iso(state.quota_reset),
    }
    return JSONResponse(body, status_code=status, headers=headers)
