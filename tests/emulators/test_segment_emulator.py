"""The Segment emulator keeps Segment's documented contract: auth, validation, error shapes, the monthly quota and its
rate-limit headers, statuses, the regulation and suppression lists, and the two hostile modes."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from tests.emulators.conftest import Emulators

BODY = {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["1"]}
RATE_HEADERS = ("X-RateLimit-Remaining", "X-RateLimit-Consumed", "X-RateLimit-Reset")
INVENTED = ("X-Regulation-RateLimit-Remaining", "X-Regulation-RateLimit-Quota-Reset")


def auth(emulators: Emulators) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulators.segment.token}"}


def create(emulators: Emulators, body: Any = BODY, path: str = "/segment/regulations") -> httpx.Response:
    return emulators.http.post(path, json=body, headers=auth(emulators))


def get(emulators: Emulators, regulate_id: str) -> dict[str, Any]:
    response = emulators.http.get(f"/segment/regulations/{regulate_id}", headers=auth(emulators))
    assert response.status_code == 200
    regulation: dict[str, Any] = response.json()["data"]["regulation"]
    return regulation


def listing(emulators: Emulators, path: str = "/segment/regulations", **params: Any) -> httpx.Response:
    return emulators.http.get(path, params={"pagination.count": 200, **params}, headers=auth(emulators))


def assert_segment_error(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status
    (error,) = response.json()["errors"]
    assert error["type"] == kind and isinstance(error["message"], str)
    assert not any(name in response.headers for name in INVENTED)
    return dict(error)


def month_start(moment: datetime) -> datetime:
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "dev-token"}])
def test_regulations_need_the_bearer_token(emulators: Emulators, headers: dict[str, str]) -> None:
    assert_segment_error(emulators.http.post("/segment/regulations", json=BODY, headers=headers), 401, "unauthorized")
    assert_segment_error(emulators.http.get("/segment/regulations/x", headers=headers), 401, "unauthorized")
    assert emulators.segment.regulations == {}


def test_create_answers_a_regulate_id_with_the_documented_rate_headers(emulators: Emulators) -> None:
    response = create(emulators)
    assert response.status_code == 200
    regulate_id = response.json()["data"]["regulateId"]
    assert set(response.json()) == {"data"} and set(emulators.segment.regulations) == {regulate_id}
    assert len(regulate_id) == 27 and regulate_id.isalnum()
    assert response.headers["X-RateLimit-Remaining"] == "109999" and response.headers["X-RateLimit-Consumed"] == "1"
    reset = parsedate_to_datetime(response.headers["X-RateLimit-Reset"])  # RFC 5322, e.g. Tue, 31 Dec 2024 ... GMT
    assert response.headers["X-RateLimit-Reset"].endswith(" GMT") and reset == month_start(datetime.now(UTC))
    assert not any(name in response.headers for name in INVENTED)
    assert emulators.segment.received[-1].body == BODY


@pytest.mark.parametrize(
    ("body", "path", "field"),
    [
        ({**BODY, "regulationType": "DELETE_EVERYTHING"}, "/segment/regulations", "regulationType"),
        ({**BODY, "regulationType": "DELETE_ARCHIVE_ONLY"}, "/segment/regulations", "regulationType"),
        ({**BODY, "subjectType": "ANONYMOUS_ID"}, "/segment/regulations", "subjectType"),
        ({**BODY, "subjectType": "OBJECT_ID"}, "/segment/regulations/sources/src_1", "subjectType"),
        ({**BODY, "subjectIds": []}, "/segment/regulations", "subjectIds"),
        ({**BODY, "subjectIds": [""]}, "/segment/regulations", "subjectIds"),
        ({**BODY, "subjectIds": [f"u{i}" for i in range(5001)]}, "/segment/regulations", "subjectIds"),
        ({k: v for k, v in BODY.items() if k != "subjectType"}, "/segment/regulations", "subjectType"),
        (["not", "an", "object"], "/segment/regulations", "body"),
    ],
)
def test_invalid_bodies_are_422_input_validation_naming_the_field(
    emulators: Emulators, body: Any, path: str, field: str
) -> None:
    error = assert_segment_error(create(emulators, body, path), 422, "input-validation")
    assert error["field"] == field
    assert emulators.segment.regulations == {}


def test_5000_ids_are_accepted(emulators: Emulators) -> None:
    assert create(emulators, {**BODY, "subjectIds": [f"u{i}" for i in range(5000)]}).status_code == 200


def test_a_body_that_is_not_json_is_400(emulators: Emulators) -> None:
    response = emulators.http.post("/segment/regulations", content=b"{", headers=auth(emulators))
    assert_segment_error(response, 400, "bad-request")


def test_source_regulations_take_archive_deletion_of_anonymous_ids(emulators: Emulators) -> None:
    body = {"regulationType": "DELETE_ARCHIVE_ONLY", "subjectType": "ANONYMOUS_ID", "subjectIds": ["anon-1"]}
    assert create(emulators, body, "/segment/regulations/sources/src_1").status_code == 200


def test_the_quota_counts_subject_ids_per_category_per_month(emulators: Emulators) -> None:
    emulators.segment.monthly_quota = 3
    assert create(emulators, {**BODY, "subjectIds": ["1", "2"]}).headers["X-RateLimit-Remaining"] == "1"

    refused = create(emulators, {**BODY, "subjectIds": ["3", "4"]})  # 2 ids, 1 left: the whole request is refused
    error = assert_segment_error(refused, 429, "RequestError")
    reset = month_start(datetime.now(UTC))
    wait = (reset - datetime.now(UTC)).total_seconds()
    assert abs(int(refused.headers["Retry-After"]) - wait) < 60
    assert abs(error["data"]["msBeforeNext"] / 1000 - wait) < 60
    assert parsedate_to_datetime(refused.headers["X-RateLimit-Reset"]) == reset
    assert refused.headers["X-RateLimit-Remaining"] == "1" and refused.headers["X-RateLimit-Consumed"] == "2"

    internal = create(emulators, {**BODY, "regulationType": "DELETE_INTERNAL", "subjectIds": ["3", "4"]})
    assert internal.status_code == 200  # Segment-only types have a quota of their own
    assert internal.headers["X-RateLimit-Consumed"] == "2"
    assert len(emulators.segment.regulations) == 2


def test_the_quota_resets_at_the_start_of_the_next_month(emulators: Emulators) -> None:
    now = datetime(2025, 12, 31, 23, 0, tzinfo=UTC)
    emulators.segment.clock = lambda: now
    emulators.segment.monthly_quota = 1
    assert create(emulators).status_code == 200
    refused = create(emulators)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "3600"
    assert refused.headers["X-RateLimit-Reset"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    now = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert create(emulators).status_code == 200


@pytest.mark.parametrize(
    ("signals", "present"),
    [
        (frozenset({"ms-before-next", "reset"}), ("ms-before-next", "reset")),
        (frozenset({"reset"}), ("reset",)),
    ],
)
def test_a_429_can_carry_fewer_wait_signals(emulators: Emulators, signals: Any, present: tuple[str, ...]) -> None:
    emulators.segment.wait_signals = signals
    emulators.segment.fail_next_with = [429]
    response = create(emulators)
    error = assert_segment_error(response, 429, "RequestError")
    assert "Retry-After" not in response.headers
    assert ("data" in error) == ("ms-before-next" in present)
    assert ("X-RateLimit-Reset" in response.headers) == ("reset" in present)


def test_statuses_run_initialized_running_finished(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls = 3
    emulators.segment.profiles = {"1", "10", "11"}
    regulate_id = create(emulators).json()["data"]["regulateId"]

    seen = [get(emulators, regulate_id) for _ in range(4)]

    assert [r["overallStatus"] for r in seen] == ["INITIALIZED", "RUNNING", "FINISHED", "FINISHED"]
    assert seen[0]["finishedAt"] is None and datetime.fromisoformat(seen[2]["finishedAt"])
    assert seen[2]["id"] == regulate_id and seen[2]["workspaceId"] == emulators.segment.workspace_id
    assert datetime.fromisoformat(seen[2]["createdAt"])
    (stream,) = seen[2]["streamStatus"]
    assert {d["status"] for d in stream["destinationStatus"]} == {"FINISHED"}
    assert set(stream["destinationStatus"][0]) == {"id", "name", "status", "errString", "finishedAt"}
    assert emulators.segment.profiles == {"10", "11"}
    assert emulators.segment.suppressed == {"1"}


def test_internal_regulations_reach_no_destination(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls = 1
    body = {**BODY, "regulationType": "SUPPRESS_WITH_DELETE_INTERNAL"}
    regulation = get(emulators, create(emulators, body).json()["data"]["regulateId"])
    assert regulation["overallStatus"] == "FINISHED"
    assert regulation["streamStatus"][0]["destinationStatus"] == []


def test_suppression_alone_deletes_nothing(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls, emulators.segment.profiles = 1, {"1"}
    regulate_id = create(emulators, {**BODY, "regulationType": "SUPPRESS_ONLY"}).json()["data"]["regulateId"]
    assert get(emulators, regulate_id)["overallStatus"] == "FINISHED"
    assert emulators.segment.profiles == {"1"} and emulators.segment.suppressed == {"1"}


def test_failed_is_an_unsupported_destination_after_segment_itself_deleted(emulators: Emulators) -> None:
    emulators.segment.outcome, emulators.segment.finish_after_polls = "FAILED", 1
    emulators.segment.profiles = {"1"}
    regulation = get(emulators, create(emulators).json()["data"]["regulateId"])
    assert regulation["overallStatus"] == "FAILED"
    statuses = {d["name"]: d["status"] for d in regulation["streamStatus"][0]["destinationStatus"]}
    assert statuses == {"Amplitude": "FINISHED", "Braze": "NOT_SUPPORTED"}
    assert emulators.segment.profiles == set()  # Segment's own systems finished (vendors.md)


def test_partial_success_keeps_the_profiles(emulators: Emulators) -> None:
    emulators.segment.outcome, emulators.segment.finish_after_polls = "PARTIAL_SUCCESS", 1
    emulators.segment.profiles = {"1"}
    assert get(emulators, create(emulators).json()["data"]["regulateId"])["overallStatus"] == "PARTIAL_SUCCESS"
    assert emulators.segment.profiles == {"1"}


def test_regulations_can_finish_on_the_wall_clock(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls, emulators.segment.finish_after = None, timedelta(milliseconds=100)
    regulate_id = create(emulators).json()["data"]["regulateId"]
    assert get(emulators, regulate_id)["overallStatus"] == "INITIALIZED"
    time.sleep(0.15)
    assert get(emulators, regulate_id)["overallStatus"] == "FINISHED"


def test_the_regulation_list_is_paginated_filtered_and_does_not_move_regulations_on(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls = 1
    ids = [create(emulators, {**BODY, "subjectIds": [str(i)]}).json()["data"]["regulateId"] for i in range(3)]
    create(emulators, {**BODY, "regulationType": "DELETE_ONLY", "subjectIds": ["9"]})
    other_source = create(emulators, BODY, "/segment/regulations/sources/src_1").json()["data"]["regulateId"]

    first = listing(emulators, **{"pagination.count": 2, "regulationTypes": "SUPPRESS_WITH_DELETE"}).json()["data"]
    second = listing(
        emulators,
        **{
            "pagination.count": 2,
            "regulationTypes": "SUPPRESS_WITH_DELETE",
            "pagination.cursor": first["pagination"]["next"],
        },
    ).json()["data"]

    entries = first["regulations"] + second["regulations"]
    assert [e["id"] for e in entries] == ids[::-1]  # newest first; the source's regulation is not the workspace's
    assert first["pagination"]["totalEntries"] == 3 and second["pagination"]["next"] is None
    assert set(entries[0]) == {"id", "subjectType", "subjects", "status", "regulationType", "createdAt", "finishedAt"}
    assert entries[0]["subjects"] == ["2"] and entries[0]["status"] == "INITIALIZED"
    assert all(r.polls == 0 for r in emulators.segment.regulations.values())
    assert [
        e["id"] for e in listing(emulators, "/segment/regulations/sources/src_1").json()["data"]["regulations"]
    ] == [other_source]
    get(emulators, ids[0])
    finished = listing(emulators, status="FINISHED").json()["data"]["regulations"]
    assert [e["id"] for e in finished] == [ids[0]]


@pytest.mark.parametrize("params", [{}, {"pagination.count": "0"}, {"pagination.count": "201"}])
def test_lists_require_a_valid_page_size(emulators: Emulators, params: dict[str, str]) -> None:
    for path in ("/segment/regulations", "/segment/suppressions"):
        response = emulators.http.get(path, params=params, headers=auth(emulators))
        assert assert_segment_error(response, 422, "input-validation")["field"] == "pagination.count"


def test_the_suppression_list(emulators: Emulators) -> None:
    create(emulators, {**BODY, "subjectIds": ["1", "2", "3"]})
    create(emulators, {**BODY, "regulationType": "DELETE_ONLY", "subjectIds": ["4"]})
    first = emulators.http.get("/segment/suppressions", params={"pagination.count": 2}, headers=auth(emulators))
    data = first.json()["data"]
    assert data["suppressed"] == [{"subjectType": "USER_ID", "subjectIds": ["1", "2"]}]
    cursor = data["pagination"]["next"]
    rest = emulators.http.get(
        "/segment/suppressions", params={"pagination.count": 2, "pagination.cursor": cursor}, headers=auth(emulators)
    ).json()["data"]
    assert (
        rest["suppressed"] == [{"subjectType": "USER_ID", "subjectIds": ["3"]}] and rest["pagination"]["next"] is None
    )


def test_injected_failures_come_in_order_then_calls_succeed(emulators: Emulators) -> None:
    emulators.segment.fail_next_with = [429, 503]
    throttled = create(emulators)
    assert_segment_error(throttled, 429, "RequestError")
    assert throttled.headers["Retry-After"] == "1"
    assert create(emulators).status_code == 503
    assert create(emulators).status_code == 200


def test_a_held_answer_still_creates_the_regulation(emulators: Emulators) -> None:
    emulators.segment.hold_next_answers, emulators.segment.hold_for = 1, timedelta(seconds=2)
    with pytest.raises(httpx.ReadTimeout):
        emulators.http.post("/segment/regulations", json=BODY, headers=auth(emulators), timeout=0.2)
    assert len(emulators.segment.regulations) == 1


def test_an_unknown_regulation_is_404(emulators: Emulators) -> None:
    response = emulators.http.get("/segment/regulations/nope", headers=auth(emulators))
    assert_segment_error(response, 404, "not-found")


def test_echo_mode_puts_the_subject_id_in_every_vendor_chosen_string(emulators: Emulators) -> None:
    emulators.segment.mode, emulators.segment.finish_after_polls = "echo", 1
    child = "child-7"
    regulate_id = create(emulators, {**BODY, "subjectIds": [child]}).json()["data"]["regulateId"]
    assert regulate_id == child
    (regulation,) = emulators.segment.regulations.values()
    shown = emulators.http.get(f"/segment/regulations/{regulation.id}", headers=auth(emulators)).json()
    shown_regulation = shown["data"]["regulation"]
    assert shown_regulation["overallStatus"] == child and shown_regulation["id"] == child
    destination = shown_regulation["streamStatus"][0]["destinationStatus"][0]
    assert {destination[k] for k in ("id", "name", "status", "errString")} == {child}
    invalid = create(emulators, {**BODY, "subjectType": "nope", "subjectIds": [child]})
    assert invalid.json()["errors"][0] == {"type": child, "message": child, "field": child}


def test_surrogate_mode_returns_lone_surrogates_in_valid_json(emulators: Emulators) -> None:
    emulators.segment.mode = "surrogates"
    response = create(emulators)
    assert b"\\ud800" in response.content
    regulate_id = json.loads(response.content)["data"]["regulateId"]
    with pytest.raises(UnicodeEncodeError):
        regulate_id.encode("utf-8")
