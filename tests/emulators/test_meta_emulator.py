"""The Meta emulator keeps Graph's contract: parameters, limits, hash checks, error shape, throttling, sessions."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.emulators.conftest import Emulators

AUDIENCE = "23850000000000001"
USERS, SESSIONS = f"/meta/v21.0/{AUDIENCE}/users", f"/meta/v21.0/{AUDIENCE}/sessions"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHILD, NEIGHBOUR = sha("child@example.com"), sha("child+1@example.com")


@pytest.fixture(autouse=True)
def audience(emulators: Emulators) -> set[tuple[str, ...]]:
    emulators.meta.audiences[AUDIENCE] = {(CHILD,), (NEIGHBOUR,), ("x", "u-77")}
    return emulators.meta.audiences[AUDIENCE]


def remove(
    emulators: Emulators, payload: Any, session: dict[str, Any] | None = None, *, in_query: bool = False, **extra: str
) -> httpx.Response:
    params = {"access_token": emulators.meta.access_token, "payload": json.dumps(payload)} | extra
    if session is not None:
        params["session"] = json.dumps(session)
    if in_query:  # as the official SDK sends DELETE parameters
        return emulators.http.request("DELETE", USERS, params=params)
    return emulators.http.request("DELETE", USERS, data=params)


def sessions(emulators: Emulators, **params: str) -> list[dict[str, str]]:
    response = emulators.http.get(SESSIONS, params={"access_token": emulators.meta.access_token} | params)
    assert response.status_code == 200
    data: list[dict[str, str]] = response.json()["data"]
    return data


def assert_graph_error(response: httpx.Response, status: int, code: int, subcode: int | None = None) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "OAuthException" and error["code"] == code
    assert error.get("error_subcode") == subcode
    assert isinstance(error["message"], str) and isinstance(error["fbtrace_id"], str)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_valid_access_token_is_required(emulators: Emulators, token: str | None) -> None:
    params = {"payload": json.dumps({"schema": "EMAIL_SHA256", "data": [CHILD]})}
    if token:
        params["access_token"] = token
    assert_graph_error(emulators.http.request("DELETE", USERS, data=params), 400, 190)
    assert_graph_error(emulators.http.get(SESSIONS, params=params), 400, 190)


def test_an_unknown_audience_is_error_100_subcode_33(emulators: Emulators) -> None:
    response = emulators.http.request(
        "DELETE", "/meta/v21.0/999/users", data={"access_token": emulators.meta.access_token, "payload": "{}"}
    )
    assert_graph_error(response, 400, 100, 33)


def test_a_path_without_a_version_is_refused(emulators: Emulators) -> None:
    response = emulators.http.get(f"/meta/21.0/{AUDIENCE}/sessions", params={"access_token": "x"})
    assert_graph_error(response, 400, 2500)


@pytest.mark.parametrize("in_query", [True, False])
def test_parameters_come_in_the_query_string_or_the_form_body(emulators: Emulators, in_query: bool) -> None:
    response = remove(emulators, {"schema": ["EMAIL", "PHONE"], "data": [[CHILD, ""]]}, in_query=in_query)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"audience_id", "session_id", "num_received", "num_invalid_entries", "invalid_entry_samples"}
    assert body["audience_id"] == AUDIENCE and body["num_received"] == 1 and body["num_invalid_entries"] == 0
    assert emulators.meta.received[-1].rows == [(CHILD, "")]
    assert emulators.meta.received[-1].schema == ("EMAIL", "PHONE")


def test_a_single_key_schema_takes_a_flat_list(emulators: Emulators) -> None:
    response = remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD, NEIGHBOUR]})
    assert response.json()["num_received"] == 2
    assert emulators.meta.received[-1].rows == [(CHILD,), (NEIGHBOUR,)]


def test_more_than_10000_rows_in_a_call_are_refused(emulators: Emulators) -> None:
    assert remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD] * 10_000}).status_code == 200
    assert_graph_error(remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD] * 10_001}), 400, 100)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps(["EMAIL"]),
        json.dumps({"schema": ["SSN"], "data": [["1"]]}),
        json.dumps({"schema": "EMAIL"}),
    ],
)
def test_malformed_payloads_are_error_100(emulators: Emulators, payload: str) -> None:
    response = emulators.http.request(
        "DELETE", USERS, data={"access_token": emulators.meta.access_token, "payload": payload}
    )
    assert_graph_error(response, 400, 100)


def test_rows_that_are_not_lowercase_sha256_are_counted_invalid(emulators: Emulators, audience: set[Any]) -> None:
    rows = [
        [CHILD.upper(), ""],  # upper-case hex
        [CHILD[:-1], ""],  # 63 characters
        ["child@example.com", ""],  # never hashed
        ["", ""],  # empty row
        [CHILD],  # wrong width
        ["", "u-77"],  # EXTERN_ID goes unhashed
    ]
    response = remove(emulators, {"schema": ["EMAIL", "EXTERN_ID"], "data": rows}, {"session_id": 7, "batch_seq": 1})
    body = response.json()
    assert body["num_received"] == 6 and body["num_invalid_entries"] == 5
    assert len(body["invalid_entry_samples"]) == 5
    assert emulators.meta.sessions[AUDIENCE][7].batches[1] == [("", "u-77")]


def test_invalid_rows_can_be_forced(emulators: Emulators) -> None:
    emulators.meta.invalid_rows = 1
    body = remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD, NEIGHBOUR]}).json()
    assert body["num_invalid_entries"] == 1


@pytest.mark.parametrize(("code", "subcode"), [(17, 2446079), (613, 1487742), (80003, None)])
def test_throttling_is_http_400_with_business_use_case_usage(emulators: Emulators, code: int, subcode: int) -> None:
    emulators.meta.fail_next_with, emulators.meta.regain_access_minutes = [code], 5
    response = remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]})
    assert_graph_error(response, 400, code, subcode)
    (entries,) = json.loads(response.headers["X-Business-Use-Case-Usage"]).values()
    assert entries[0]["estimated_time_to_regain_access"] == 5 and entries[0]["call_count"] == 100
    assert remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]}).status_code == 200


def test_server_errors_can_be_injected(emulators: Emulators) -> None:
    emulators.meta.fail_next_with = [503]
    assert_graph_error(remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]}), 503, 2)


def test_a_session_uploads_then_processes_then_removes_members(emulators: Emulators, audience: set[Any]) -> None:
    remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]}, {"session_id": 42, "batch_seq": 1})
    (uploading,) = sessions(emulators, session_id="42")
    assert uploading == uploading | {"stage": "uploading", "progress": "0", "end_time": "0", "num_matched": "-1"}
    assert set(uploading) == {
        *("session_id", "start_time", "end_time", "num_received", "num_matched", "num_invalid_entries"),
        *("progress", "stage"),
    }
    assert all(isinstance(value, str) for value in uploading.values())

    last = {"session_id": 42, "batch_seq": 2, "last_batch_flag": True}
    remove(emulators, {"schema": "EMAIL_SHA256", "data": ["0" * 64]}, last)
    (processing,) = sessions(emulators, session_id="42")  # the first of the two reads it takes to finish
    assert processing["stage"] == "processing" and processing["end_time"] != "0"
    assert (CHILD,) in audience

    (finished,) = sessions(emulators, session_id="42")
    assert finished == finished | {"stage": "finished", "progress": "100", "num_received": "2", "num_matched": "1"}
    assert audience == {(NEIGHBOUR,), ("x", "u-77")}


def test_sessions_can_finish_on_the_wall_clock(emulators: Emulators) -> None:
    emulators.meta.finish_after_polls, emulators.meta.finish_after = None, timedelta(milliseconds=100)
    last = {"session_id": 1, "batch_seq": 1, "last_batch_flag": True}
    remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]}, last)
    assert sessions(emulators)[0]["stage"] == "processing"
    time.sleep(0.15)
    assert sessions(emulators)[0]["stage"] == "finished"


def test_sessions_are_listed_newest_first_and_filtered_by_id(emulators: Emulators) -> None:
    for session_id in (1, 2):
        remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]}, {"session_id": session_id, "batch_seq": 1})
    assert [s["session_id"] for s in sessions(emulators)] == ["2", "1"]
    assert [s["session_id"] for s in sessions(emulators, session_id="1")] == ["1"]
