"""The Segment emulator keeps Segment's contract: auth, validation, error shape, limits, statuses, rate headers."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.emulators.conftest import Emulators

REMAINING, RESET = "X-Regulation-RateLimit-Remaining", "X-Regulation-RateLimit-Quota-Reset"
BODY = {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["1"]}


def auth(emulators: Emulators) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulators.segment.token}"}


def create(emulators: Emulators, body: Any = BODY, path: str = "/segment/regulations") -> httpx.Response:
    return emulators.http.post(path, json=body, headers=auth(emulators))


def get(emulators: Emulators, regulate_id: str) -> dict[str, Any]:
    response = emulators.http.get(f"/segment/regulations/{regulate_id}", headers=auth(emulators))
    assert response.status_code == 200
    regulation: dict[str, Any] = response.json()["data"]["regulation"]
    return regulation


def assert_segment_error(response: httpx.Response, status: int, kind: str) -> None:
    assert response.status_code == status
    (error,) = response.json()["errors"]
    assert error["type"] == kind and isinstance(error["message"], str)
    assert REMAINING in response.headers and datetime.fromisoformat(response.headers[RESET])


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "dev-token"}])
def test_regulations_need_the_bearer_token(emulators: Emulators, headers: dict[str, str]) -> None:
    assert_segment_error(emulators.http.post("/segment/regulations", json=BODY, headers=headers), 401, "unauthorized")
    assert_segment_error(emulators.http.get("/segment/regulations/x", headers=headers), 401, "unauthorized")
    assert emulators.segment.regulations == {}


def test_create_answers_a_regulate_id_and_spends_quota(emulators: Emulators) -> None:
    emulators.segment.quota = 2
    response = create(emulators)
    assert response.status_code == 200
    regulate_id = response.json()["data"]["regulateId"]
    assert set(response.json()) == {"data"} and set(emulators.segment.regulations) == {regulate_id}
    assert response.headers[REMAINING] == "1"
    assert datetime.fromisoformat(response.headers[RESET]) > datetime.now().astimezone()
    assert emulators.segment.received[-1].body == BODY


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({**BODY, "regulationType": "DELETE_EVERYTHING"}, "/segment/regulations"),
        ({**BODY, "regulationType": "DELETE_ARCHIVE_ONLY"}, "/segment/regulations"),  # source-scoped only
        ({**BODY, "subjectType": "ANONYMOUS_ID"}, "/segment/regulations"),  # source-scoped only
        ({**BODY, "subjectType": "OBJECT_ID"}, "/segment/regulations/sources/src_1"),  # workspace only
        ({**BODY, "subjectIds": []}, "/segment/regulations"),
        ({**BODY, "subjectIds": [""]}, "/segment/regulations"),
        ({**BODY, "subjectIds": [f"u{i}" for i in range(5001)]}, "/segment/regulations"),
        ({k: v for k, v in BODY.items() if k != "subjectType"}, "/segment/regulations"),
        (["not", "an", "object"], "/segment/regulations"),
    ],
)
def test_invalid_bodies_are_422_validation_failures(emulators: Emulators, body: Any, path: str) -> None:
    assert_segment_error(create(emulators, body, path), 422, "validation")
    assert emulators.segment.regulations == {}


def test_5000_ids_are_accepted(emulators: Emulators) -> None:
    assert create(emulators, {**BODY, "subjectIds": [f"u{i}" for i in range(5000)]}).status_code == 200


def test_a_body_that_is_not_json_is_400(emulators: Emulators) -> None:
    response = emulators.http.post("/segment/regulations", content=b"{", headers=auth(emulators))
    assert_segment_error(response, 400, "bad-request")


def test_source_regulations_take_archive_deletion_of_anonymous_ids(emulators: Emulators) -> None:
    body = {"regulationType": "DELETE_ARCHIVE_ONLY", "subjectType": "ANONYMOUS_ID", "subjectIds": ["anon-1"]}
    assert create(emulators, body, "/segment/regulations/sources/src_1").status_code == 200


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


def test_suppression_alone_deletes_nothing(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls, emulators.segment.profiles = 1, {"1"}
    regulate_id = create(emulators, {**BODY, "regulationType": "SUPPRESS_ONLY"}).json()["data"]["regulateId"]
    assert get(emulators, regulate_id)["overallStatus"] == "FINISHED"
    assert emulators.segment.profiles == {"1"} and emulators.segment.suppressed == {"1"}


def test_a_failed_regulation_names_the_destination_that_cannot_delete(emulators: Emulators) -> None:
    emulators.segment.outcome, emulators.segment.finish_after_polls = "FAILED", 1
    emulators.segment.profiles = {"1"}
    regulation = get(emulators, create(emulators).json()["data"]["regulateId"])
    assert regulation["overallStatus"] == "FAILED"
    statuses = {d["name"]: d["status"] for d in regulation["streamStatus"][0]["destinationStatus"]}
    assert statuses == {"Amplitude": "FINISHED", "Braze": "NOT_SUPPORTED"}
    assert emulators.segment.profiles == {"1"}


def test_regulations_can_finish_on_the_wall_clock(emulators: Emulators) -> None:
    emulators.segment.finish_after_polls, emulators.segment.finish_after = None, timedelta(milliseconds=100)
    regulate_id = create(emulators).json()["data"]["regulateId"]
    assert get(emulators, regulate_id)["overallStatus"] == "INITIALIZED"
    time.sleep(0.15)
    assert get(emulators, regulate_id)["overallStatus"] == "FINISHED"


def test_an_exhausted_quota_is_429(emulators: Emulators) -> None:
    emulators.segment.quota = 0
    response = create(emulators)
    assert_segment_error(response, 429, "too-many-requests")
    assert response.headers[REMAINING] == "0"


def test_injected_failures_come_in_order_then_calls_succeed(emulators: Emulators) -> None:
    emulators.segment.fail_next_with = [429, 503]
    assert_segment_error(create(emulators), 429, "too-many-requests")
    assert create(emulators).status_code == 503
    assert create(emulators).status_code == 200


def test_an_unknown_regulation_is_404(emulators: Emulators) -> None:
    response = emulators.http.get("/segment/regulations/nope", headers=auth(emulators))
    assert_segment_error(response, 404, "not-found")
