"""The Meta emulator keeps Graph's documented contract: versions, token and app secret proof, parameters, limits, hash
checks, data sources, flagged audiences, error shape, throttling, sessions that take hours, and default fields."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from emulators.meta import HASHES_OR_USER_IDS, SESSION_FIELDS
from tests.emulators.conftest import Emulators

AUDIENCE = "23850000000000001"
VERSION = "v25.0"
USERS, SESSIONS = f"/meta/{VERSION}/{AUDIENCE}/users", f"/meta/{VERSION}/{AUDIENCE}/sessions"
ALL_FIELDS = ",".join(SESSION_FIELDS)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHILD, NEIGHBOUR = sha("child@example.com"), sha("child+1@example.com")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(autouse=True)
def audience(emulators: Emulators) -> set[tuple[str, ...]]:
    emulators.meta.audiences[AUDIENCE] = {(CHILD,), (NEIGHBOUR,), ("x", "u-77")}
    return emulators.meta.audiences[AUDIENCE]


@pytest.fixture
def clock(emulators: Emulators) -> Clock:
    emulators.meta.clock = clock = Clock()
    return clock


def auth(emulators: Emulators) -> dict[str, str]:
    return {"Authorization": f"Bearer {emulators.meta.access_token}"}


def remove(
    emulators: Emulators,
    payload: Any,
    session: dict[str, Any] | None = None,
    *,
    in_query: bool = False,
    path: str = USERS,
    **extra: str,
) -> httpx.Response:
    params = {"payload": json.dumps(payload)} | extra
    if session is not None:
        params["session"] = json.dumps(session)
    if in_query:  # as the official SDK sends DELETE parameters
        return emulators.http.request("DELETE", path, params=params, headers=auth(emulators))
    return emulators.http.request("DELETE", path, data=params, headers=auth(emulators))


def sessions(emulators: Emulators, **params: str) -> list[dict[str, str]]:
    response = emulators.http.get(SESSIONS, params=params, headers=auth(emulators))
    assert response.status_code == 200
    data: list[dict[str, str]] = response.json()["data"]
    return data


def assert_graph_error(response: httpx.Response, status: int, code: int, subcode: int | None = None) -> None:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == "OAuthException" and error["code"] == code
    assert error.get("error_subcode") == subcode
    assert isinstance(error["message"], str) and isinstance(error["fbtrace_id"], str)


# -- authentication and versions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_valid_access_token_is_required(emulators: Emulators, token: str | None) -> None:
    params = {"payload": json.dumps({"schema": "EMAIL_SHA256", "data": [CHILD]})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    assert_graph_error(emulators.http.request("DELETE", USERS, data=params, headers=headers), 400, 190)
    assert_graph_error(emulators.http.get(SESSIONS, headers=headers), 400, 190)


def test_the_token_is_read_from_the_bearer_header_or_the_access_token_parameter(emulators: Emulators) -> None:
    assert emulators.http.get(SESSIONS, headers=auth(emulators)).status_code == 200
    assert emulators.http.get(SESSIONS, params={"access_token": emulators.meta.access_token}).status_code == 200
    assert [call.bearer for call in emulators.meta.calls] == [True, False]


def test_an_app_that_requires_the_app_secret_needs_appsecret_proof(emulators: Emulators) -> None:
    emulators.meta.app_secret = "app-secret"
    proof = hmac.new(b"app-secret", emulators.meta.access_token.encode(), hashlib.sha256).hexdigest()

    assert_graph_error(emulators.http.get(SESSIONS, headers=auth(emulators)), 400, 100)
    wrong = hmac.new(b"other", emulators.meta.access_token.encode(), hashlib.sha256).hexdigest()
    assert_graph_error(
        emulators.http.get(SESSIONS, params={"appsecret_proof": wrong}, headers=auth(emulators)), 400, 100
    )
    assert emulators.http.get(SESSIONS, params={"appsecret_proof": proof}, headers=auth(emulators)).status_code == 200


@pytest.mark.parametrize(
    ("version", "today"), [("v21.0", "2025-09-09"), ("v24.0", "2026-11-10"), ("v22.0", "2026-11-10")]
)
def test_an_expired_version_is_error_2635(emulators: Emulators, clock: Clock, version: str, today: str) -> None:
    clock.now = datetime.fromisoformat(today).replace(tzinfo=UTC)
    response = emulators.http.get(f"/meta/{version}/{AUDIENCE}/sessions", headers=auth(emulators))
    assert_graph_error(response, 400, 2635)
    assert "v25.0" in response.json()["error"]["message"]


def test_a_version_works_until_the_day_it_expires(emulators: Emulators, clock: Clock) -> None:
    clock.now = datetime(2026, 11, 9, 23, tzinfo=UTC)
    assert emulators.http.get(f"/meta/v24.0/{AUDIENCE}/sessions", headers=auth(emulators)).status_code == 200
    clock.now = datetime(2027, 2, 23, tzinfo=UTC)
    assert_graph_error(emulators.http.get(SESSIONS, headers=auth(emulators)), 400, 2635)


def test_a_path_without_a_version_is_refused(emulators: Emulators) -> None:
    response = emulators.http.get(f"/meta/25.0/{AUDIENCE}/sessions", headers=auth(emulators))
    assert_graph_error(response, 400, 2500)


def test_an_unknown_audience_is_error_100_subcode_33(emulators: Emulators) -> None:
    response = remove(emulators, {}, path=f"/meta/{VERSION}/999/users")
    assert_graph_error(response, 400, 100, 33)


def test_a_flagged_audience_refuses_removals_with_subcode_1713230(emulators: Emulators, audience: set[Any]) -> None:
    emulators.meta.flagged.add(AUDIENCE)
    response = remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD]})
    assert_graph_error(response, 400, 100, 1713230)
    assert response.json()["error"]["error_user_title"] == "Audience Upload Blocked"
    assert (CHILD,) in audience and emulators.meta.received == []


# -- removals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_query", [True, False])
def test_parameters_come_in_the_query_string_or_the_form_body(emulators: Emulators, in_query: bool) -> None:
    response = remove(emulators, {"schema": ["EMAIL", "PHONE"], "data": [[CHILD, ""]]}, in_query=in_query)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"audience_id", "session_id", "num_received", "num_invalid_entries", "invalid_entry_samples"}
    assert body["audience_id"] == AUDIENCE and body["num_received"] == 1 and body["num_invalid_entries"] == 0
    assert emulators.meta.received[-1].rows == [(CHILD, "")]
    assert emulators.meta.received[-1].schema == ("EMAIL", "PHONE")


def test_a_single_key_schema_takes_a_flat_list_in_an_audience_built_from_one(emulators: Emulators) -> None:
    emulators.meta.data_sources[AUDIENCE] = HASHES_OR_USER_IDS
    response = remove(emulators, {"schema": "EMAIL_SHA256", "data": [CHILD, NEIGHBOUR]})
    assert response.json()["num_received"] == 2
    assert emulators.meta.received[-1].rows == [(CHILD,), (NEIGHBOUR,)]


@pytest.mark.parametrize(
    ("built_from", "payload"),
    [
        (None, {"schema": "EMAIL_SHA256", "data": [CHILD]}),  # multi-key audiences are the default
        (HASHES_OR_USER_IDS, {"schema": ["EMAIL"], "data": [[CHILD]]}),
    ],
)
def test_a_payload_of_another_kind_than_the_audience_was_built_with_is_error_2650(
    emulators: Emulators, built_from: str | None, payload: dict[str, Any]
) -> None:
    if built_from:
        emulators.meta.data_sources[AUDIENCE] = built_from
    response = remove(emulators, payload)
    assert_graph_error(response, 400, 2650)
    assert "does not support data source" in response.json()["error"]["message"]


def test_more_than_10000_rows_in_a_call_are_refused(emulators: Emulators) -> None:
    assert remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]] * 10_000}).status_code == 200
    assert_graph_error(remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]] * 10_001}), 400, 100)


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        json.dumps(["EMAIL"]),
        json.dumps({"schema": ["SSN"], "data": [["1"]]}),
        json.dumps({"schema": ["EMAIL"]}),
    ],
)
def test_malformed_payloads_are_error_100(emulators: Emulators, payload: str) -> None:
    response = emulators.http.request("DELETE", USERS, data={"payload": payload}, headers=auth(emulators))
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
    body = remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD], [NEIGHBOUR]]}).json()
    assert body["num_invalid_entries"] == 1


@pytest.mark.parametrize(("code", "subcode"), [(17, 2446079), (613, 1487742), (80003, None)])
def test_throttling_is_http_400_with_business_use_case_usage(emulators: Emulators, code: int, subcode: int) -> None:
    emulators.meta.fail_next_with, emulators.meta.regain_access_minutes = [code], 5
    response = remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]})
    assert_graph_error(response, 400, code, subcode)
    (entries,) = json.loads(response.headers["X-Business-Use-Case-Usage"]).values()
    assert entries[0]["estimated_time_to_regain_access"] == 5 and entries[0]["call_count"] == 100
    assert remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}).status_code == 200


def test_server_errors_can_be_injected(emulators: Emulators) -> None:
    emulators.meta.fail_next_with = [503]
    assert_graph_error(remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}), 503, 2)


# -- sessions -------------------------------------------------------------------------------------------------------


def test_a_session_uploads_then_processes_for_hours_then_removes_members(
    emulators: Emulators, audience: set[Any], clock: Clock
) -> None:
    remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, {"session_id": 42, "batch_seq": 1})
    (uploading,) = sessions(emulators, session_id="42", fields=ALL_FIELDS)
    assert uploading == uploading | {"stage": "uploading", "progress": "0", "end_time": "0", "num_matched": "-1"}
    assert set(uploading) == set(SESSION_FIELDS)
    assert all(isinstance(value, str) for value in uploading.values())

    last = {"session_id": 42, "batch_seq": 2, "last_batch_flag": True}
    remove(emulators, {"schema": ["EMAIL"], "data": [["0" * 64]]}, last)
    clock.now += timedelta(hours=19)
    (processing,) = sessions(emulators, session_id="42", fields=ALL_FIELDS)
    assert processing["stage"] == "processing" and processing["end_time"] != "0" and processing["progress"] != "100"
    assert (CHILD,) in audience

    clock.now += timedelta(hours=2)
    (finished,) = sessions(emulators, session_id="42", fields=ALL_FIELDS)
    assert finished == finished | {"stage": "finished", "progress": "100", "num_received": "2", "num_matched": "1"}
    assert audience == {(NEIGHBOUR,), ("x", "u-77")}


def test_without_fields_a_session_shows_only_its_default_field(emulators: Emulators) -> None:
    remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, {"session_id": 42, "batch_seq": 1})
    assert sessions(emulators) == [{"session_id": "42"}]
    assert sessions(emulators, fields="stage,progress") == [{"stage": "uploading", "progress": "0"}]


def test_an_unknown_field_is_error_100(emulators: Emulators) -> None:
    response = emulators.http.get(SESSIONS, params={"fields": "session_id,status"}, headers=auth(emulators))
    assert_graph_error(response, 400, 100)


def test_sessions_can_finish_after_a_number_of_polls(emulators: Emulators) -> None:
    emulators.meta.processing_time, emulators.meta.finish_after_polls = None, 2
    last = {"session_id": 1, "batch_seq": 1, "last_batch_flag": True}
    remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, last)
    assert [sessions(emulators, fields="stage")[0]["stage"] for _ in range(3)] == ["processing", "finished", "finished"]


def test_sessions_are_listed_newest_first_and_filtered_by_id(emulators: Emulators) -> None:
    for session_id in (1, 2):
        remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, {"session_id": session_id, "batch_seq": 1})
    assert [s["session_id"] for s in sessions(emulators)] == ["2", "1"]
    assert [s["session_id"] for s in sessions(emulators, session_id="1")] == ["1"]


# -- failure modes for tests ----------------------------------------------------------------------------------------


def test_echo_puts_the_identifiers_into_every_value_it_returns(emulators: Emulators) -> None:
    emulators.meta.echo = ("child@example.com", CHILD)
    echoed = f"child@example.com {CHILD}"
    body = remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, {"session_id": 1, "batch_seq": 1}).json()
    assert {body[name] for name in ("audience_id", "session_id", "num_received", "num_invalid_entries")} == {echoed}
    (session,) = sessions(emulators, fields=ALL_FIELDS)
    assert set(session.values()) == {echoed}
    emulators.meta.access_token = "rotated"
    error = emulators.http.get(SESSIONS, headers={"Authorization": "Bearer x"}).json()["error"]
    assert error["message"] == error["type"] == error["code"] == echoed


def test_lone_surrogates_come_as_escapes_in_every_string(emulators: Emulators) -> None:
    emulators.meta.lone_surrogates, emulators.meta.corrupt = True, frozenset({"sessions"})
    remove(emulators, {"schema": ["EMAIL"], "data": [[CHILD]]}, {"session_id": 1, "batch_seq": 1})
    response = emulators.http.get(SESSIONS, params={"fields": "stage"}, headers=auth(emulators))
    assert response.content.isascii() and b"\\ud800" in response.content
    assert response.json() == {"data\ud800": [{"stage\ud800": "uploading\ud800"}]}
