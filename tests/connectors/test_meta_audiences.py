"""The Meta audiences connector against the Meta emulator over real HTTP: hashes, sessions, polling, neighbours, errors,
and vendor answers that echo the child's identifiers or carry invalid Unicode."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.meta_audiences import SESSION_FIELDS, MetaAudiencesConnector, MetaSettings
from domain.errors import TerminalError, Throttled, TransientError, VendorRefused
from domain.model import EvidenceLevel, JobStatus, Opaque, Outcome, Subject
from emulators.meta import HASHES_OR_USER_IDS, MetaState, create_app
from tests.emulators.switchboard import Switchboard, switchboard

AUDIENCE = "23850000000000001"
OTHER_AUDIENCE = "23850000000000002"
CHILD_EMAIL = "  Child.Name@Example.COM. "  # awkward on purpose: spaces, capitals, a trailing dot
CHILD_PHONE = "07700 900123"  # national format: needs the mapping's default country code
CHILD_MADID = "6D92078A-8246-4BA4-AE5B-76104861E7DC"
CHILD_EXTERN_ID = "u-77"
CHILD = Subject.of(email=[CHILD_EMAIL], phone=[CHILD_PHONE])
PLAIN_VALUES = ("child.name", "example.com", "7700900123", "900123")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHILD_EMAIL_HASH = sha("child.name@example.com")
CHILD_PHONE_HASH = sha("447700900123")
# members that look like the child and must survive: a plus-tagged address, a phone one digit away
NEIGHBOURS = {(sha("child.name+news@example.com"),), (sha("447700900124"),), (sha("childname@example.com"),)}
# what an echoing vendor could repeat back: the raw identifiers and the digests we sent
IDENTIFIER_TEXTS = (CHILD_EMAIL.strip(), CHILD_PHONE, CHILD_EMAIL_HASH, CHILD_PHONE_HASH)
MakeConnector = Callable[..., MetaAudiencesConnector]


@dataclass
class Clock:
    """The emulator's clock: Meta's hours pass when the test says so."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def state(clock: Clock) -> MetaState:
    members = {(CHILD_EMAIL_HASH,), (CHILD_PHONE_HASH,), *NEIGHBOURS}
    return MetaState(audiences={AUDIENCE: set(members), OTHER_AUDIENCE: set(members)}, clock=clock)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, str]]:
    with switchboard() as board_and_url:
        yield board_and_url


@pytest.fixture
def base_url(state: MetaState, server: tuple[Switchboard, str]) -> str:
    board, url = server
    board.app = create_app(state)
    return url


@pytest.fixture
def make_connector(state: MetaState, base_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeConnector]:
    monkeypatch.setenv("META_TEST_TOKEN", state.access_token)
    made: list[MetaAudiencesConnector] = []

    def make(*, connection: dict[str, Any] | None = None, **mapping: Any) -> MetaAudiencesConnector:
        settings = {
            "connection": {"base_url": base_url, "access_token_env": "META_TEST_TOKEN"} | (connection or {}),
            "mapping": {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL", "PHONE"]}], "default_country_code": "44"}
            | mapping,
        }
        made.append(MetaAudiencesConnector("meta_ads", MetaSettings.model_validate(settings)))
        return made[-1]

    yield make
    for connector in made:
        connector.close()


def both_audiences(schema: Any = ("EMAIL", "PHONE")) -> list[dict[str, Any]]:
    return [{"id": audience, "schema": list(schema)} for audience in (AUDIENCE, OTHER_AUDIENCE)]


def erased(connector: MetaAudiencesConnector, subject: Subject = CHILD, key: str = "req-1/meta_ads") -> Outcome:
    outcome = connector.erase(subject, key)
    assert outcome.level is EvidenceLevel.ACCEPTED and outcome.job is not None
    return outcome


def assert_no_identifier(*texts: object) -> None:
    for text in texts:
        assert not any(value.lower() in str(text).lower() for value in (*IDENTIFIER_TEXTS, *PLAIN_VALUES)), text


def test_received_hashes_are_the_normalised_sha256s(state: MetaState, make_connector: MakeConnector) -> None:
    outcome = erased(make_connector())

    (call,) = state.received
    assert call.audience_id == AUDIENCE
    assert call.schema == ("EMAIL", "PHONE")
    assert call.rows == [(CHILD_EMAIL_HASH, ""), ("", CHILD_PHONE_HASH)]
    assert outcome.deleted == 0  # nothing is removed until Meta processes the session
    assert outcome.vendor_status == "received"
    assert outcome.facts == {
        "api_version": "v25.0",
        "audiences": 1,
        "rows_sent": 2,
        "num_received": 2,
        "num_invalid_entries": 0,
    }
    assert state.audiences[AUDIENCE] >= {(CHILD_EMAIL_HASH,), (CHILD_PHONE_HASH,)}


def test_no_plain_email_or_phone_ever_reaches_meta(state: MetaState, make_connector: MakeConnector) -> None:
    subject = Subject.of(email=[CHILD_EMAIL, "OTHER@example.com"], phone=[CHILD_PHONE, "+44 (0)7700 900999"])
    make_connector(audiences=both_audiences()).erase(subject, "req-1/meta_ads")

    assert len(state.received) == 2
    for call in state.received:
        values = [value for row in call.rows for value in row if value]
        assert len(values) == 4
        assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values)
        assert not any(plain in repr(call).lower() for plain in PLAIN_VALUES)


def test_the_token_travels_in_the_authorization_header_never_in_a_url(
    state: MetaState, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    job = erased(connector).job
    assert job is not None
    connector.poll(job)

    assert [call.method for call in state.calls] == ["DELETE", "GET"]
    assert all(call.bearer for call in state.calls)
    assert all(state.access_token not in call.url and "access_token" not in call.params for call in state.calls)


def test_appsecret_proof_is_sent_when_the_app_requires_it(
    state: MetaState, make_connector: MakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    state.app_secret = "app-secret"
    monkeypatch.setenv("META_TEST_APP_SECRET", "app-secret")
    with pytest.raises(VendorRefused, match="code 100"):
        make_connector().erase(CHILD, "req-1/meta_ads")

    connector = make_connector(connection={"app_secret_env": "META_TEST_APP_SECRET"})
    job = erased(connector).job
    assert job is not None
    connector.poll(job)

    expected = hmac.new(b"app-secret", state.access_token.encode(), hashlib.sha256).hexdigest()
    assert [call.params.get("appsecret_proof") for call in state.calls[1:]] == [expected, expected]


def test_removal_is_a_session_polled_until_meta_reports_it_processed_hours_later(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    connector = make_connector(audiences=both_audiences())
    outcome = erased(connector)
    assert outcome.job is not None

    first = connector.poll(outcome.job)
    clock.now += timedelta(hours=19)
    later = connector.poll(outcome.job)
    kept = set(state.audiences[AUDIENCE])
    clock.now += timedelta(hours=2)
    done = connector.poll(outcome.job)

    assert first.status is JobStatus.RUNNING and later.status is JobStatus.RUNNING
    assert first.vendor_status == "processing" and first.facts[f"{AUDIENCE}.progress"] == 50
    assert (CHILD_EMAIL_HASH,) in kept  # the emulator keeps members until it processed the session
    assert done.status is JobStatus.SUCCEEDED and done.vendor_status == "processed"
    assert done.finished_at is not None
    for audience in (AUDIENCE, OTHER_AUDIENCE):
        assert {name: done.facts[f"{audience}.{name}"] for name in ("stage", "progress", "num_received")} == {
            "stage": "finished",
            "progress": 100,
            "num_received": 2,
        }
        assert done.facts[f"{audience}.num_matched"] == 2
    assert done.facts["api_version"] == "v25.0"
    assert state.audiences == {AUDIENCE: NEIGHBOURS, OTHER_AUDIENCE: NEIGHBOURS}


def test_members_stay_until_the_session_is_processed(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    outcome = erased(connector)
    assert outcome.job is not None
    assert connector.poll(outcome.job).status is JobStatus.RUNNING
    assert (CHILD_EMAIL_HASH,) in state.audiences[AUDIENCE]


def test_polls_ask_for_the_documented_session_fields(state: MetaState, make_connector: MakeConnector) -> None:
    connector = make_connector()
    outcome = erased(connector)
    assert outcome.job is not None
    connector.poll(outcome.job)

    poll = state.calls[-1]
    assert poll.params["fields"] == SESSION_FIELDS
    assert poll.params["session_id"] == str(state.received[0].session["session_id"])  # type: ignore[index]


def test_verify_only_repeats_that_meta_offers_no_lookup(make_connector: MakeConnector) -> None:
    verification = make_connector().verify(CHILD)
    assert verification.level is EvidenceLevel.ACCEPTED and verification.total_remaining == 0
    assert "no membership lookup" in verification.detail


def test_a_differently_cased_email_is_the_same_member_at_meta(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    outcome = erased(connector, Subject.of(email=["CHILD.NAME@example.com"]))
    assert outcome.job is not None
    clock.now += timedelta(days=1)
    assert connector.poll(outcome.job).status is JobStatus.SUCCEEDED
    assert (CHILD_EMAIL_HASH,) not in state.audiences[AUDIENCE]
    assert state.audiences[AUDIENCE] >= NEIGHBOURS


def test_25000_rows_go_in_three_calls_of_one_session(state: MetaState, make_connector: MakeConnector) -> None:
    subject = Subject.of(email=[f"kid{i}@example.com" for i in range(25_000)])

    outcome = make_connector(audiences=[{"id": AUDIENCE, "schema": ["EMAIL"]}]).erase(subject, "req-1/meta_ads")

    assert [len(call.rows) for call in state.received] == [10_000, 10_000, 5_000]
    sessions = [call.session for call in state.received]
    assert all(session is not None for session in sessions)
    assert len({s["session_id"] for s in sessions if s}) == 1
    assert [s["batch_seq"] for s in sessions if s] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions if s] == [False, False, True]
    assert {s["estimated_num_total"] for s in sessions if s} == {25_000}
    assert outcome.level is EvidenceLevel.ACCEPTED and outcome.facts["rows_sent"] == 25_000


def test_a_retried_erase_reuses_its_session_and_another_request_gets_its_own(
    state: MetaState, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    first = erased(connector)
    again = erased(connector)
    erased(connector, key="req-2/meta_ads")

    assert first.job and again.job and first.job.job_id == again.job.job_id
    sessions = [call.session["session_id"] for call in state.received if call.session]
    assert sessions[0] == sessions[1] != sessions[2]
    assert len(state.sessions[AUDIENCE]) == 2
    assert sum(state.sessions[AUDIENCE][sessions[0]].received.values()) == 2  # the resent batch replaced the first


def test_invalid_entries_fail_with_counts(state: MetaState, make_connector: MakeConnector) -> None:
    state.invalid_rows = 1

    outcome = make_connector().erase(CHILD, "req-1/meta_ads")

    assert outcome.level is EvidenceLevel.FAILED and outcome.job is None
    assert outcome.detail == "meta received 2 of 2 rows and found 1 invalid"


@pytest.mark.parametrize("code", [17, 613, 80003])
def test_throttling_codes_raise_throttled_then_a_retry_succeeds(
    state: MetaState, make_connector: MakeConnector, code: int
) -> None:
    state.fail_next_with, state.regain_access_minutes = [code], 2
    connector = make_connector()

    with pytest.raises(Throttled) as caught:
        connector.erase(CHILD, "req-1/meta_ads")

    assert caught.value.retry_after_s == 120
    assert f"code {code}" in str(caught.value) and "http 400" in str(caught.value)
    assert_no_identifier(caught.value)
    assert connector.erase(CHILD, "req-1/meta_ads").level is EvidenceLevel.ACCEPTED


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(state: MetaState, make_connector: MakeConnector, status: int) -> None:
    state.fail_next_with = [status]
    with pytest.raises(TransientError, match=f"http {status}") as caught:
        make_connector().erase(CHILD, "req-1/meta_ads")
    assert not isinstance(caught.value, Throttled)


def test_an_unknown_audience_is_refused(make_connector: MakeConnector) -> None:
    with pytest.raises(VendorRefused, match="code 100, subcode 33") as caught:
        make_connector(audiences=[{"id": "99999", "schema": ["EMAIL"]}]).erase(CHILD, "req-1/meta_ads")
    assert caught.value.status == 400


def test_a_wrong_token_is_terminal(state: MetaState, make_connector: MakeConnector) -> None:
    state.access_token = "rotated"
    with pytest.raises(VendorRefused, match="code 190: the access token is invalid"):
        make_connector().erase(CHILD, "req-1/meta_ads")


def test_an_expired_api_version_is_refused_with_the_reason(make_connector: MakeConnector) -> None:
    with pytest.raises(VendorRefused, match="code 2635: the api version has expired"):
        make_connector(connection={"api_version": "v24.0"}).erase(CHILD, "req-1/meta_ads")


def test_a_flagged_audience_is_a_refusal_with_its_reason(state: MetaState, make_connector: MakeConnector) -> None:
    state.flagged.add(AUDIENCE)
    with pytest.raises(VendorRefused, match="code 100, subcode 1713230: the audience is flagged") as caught:
        make_connector().erase(CHILD, "req-1/meta_ads")
    assert caught.value.status == 400 and state.received == []


def test_each_audience_gets_the_schema_kind_it_was_built_with(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    state.data_sources[OTHER_AUDIENCE] = HASHES_OR_USER_IDS
    state.audiences[OTHER_AUDIENCE] = {(CHILD_EMAIL_HASH,), *NEIGHBOURS}
    mismatched = [{"id": AUDIENCE, "schema": ["EMAIL", "PHONE"]}, {"id": OTHER_AUDIENCE, "schema": ["EMAIL"]}]
    with pytest.raises(VendorRefused, match="code 2650: the audience was built from another data source"):
        make_connector(audiences=mismatched).erase(CHILD, "req-1/meta_ads")

    matched = [{"id": AUDIENCE, "schema": ["EMAIL", "PHONE"]}, {"id": OTHER_AUDIENCE, "schema": "EMAIL_SHA256"}]
    connector = make_connector(audiences=matched)
    outcome = erased(connector)
    assert outcome.job is not None
    assert [(call.schema, call.rows) for call in state.received if call.audience_id == OTHER_AUDIENCE] == [
        (("EMAIL_SHA256",), [(CHILD_EMAIL_HASH,)])
    ]
    clock.now += timedelta(days=1)
    assert connector.poll(outcome.job).status is JobStatus.SUCCEEDED
    assert state.audiences == {AUDIENCE: NEIGHBOURS, OTHER_AUDIENCE: NEIGHBOURS}


def test_advertising_and_external_ids_are_sent_unhashed_and_neighbours_survive(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    neighbours = {("u-770",), ("u-7",), ("6d92078a-8246-4ba4-ae5b-76104861e7dd",)}
    state.audiences[AUDIENCE] = {("u-77",), (CHILD_MADID.lower(),), *neighbours}
    subject = Subject.of(user_id=[CHILD_EXTERN_ID], advertising_id=[CHILD_MADID])
    connector = make_connector(audiences=[{"id": AUDIENCE, "schema": ["EXTERN_ID", "MADID"]}])

    outcome = erased(connector, subject)
    assert outcome.job is not None
    clock.now += timedelta(days=1)
    assert connector.poll(outcome.job).status is JobStatus.SUCCEEDED

    assert state.received[0].rows == [("u-77", ""), ("", CHILD_MADID.lower())]
    assert state.audiences[AUDIENCE] == neighbours


def test_a_malformed_advertising_id_is_refused_unquoted(make_connector: MakeConnector) -> None:
    connector = make_connector(audiences=[{"id": AUDIENCE, "schema": ["MADID"]}])
    with pytest.raises(TerminalError, match="madid 1 of 1 cannot be normalised") as caught:
        connector.erase(Subject.of(advertising_id=["not-a-uuid-7700"]), "req-1/meta_ads")
    assert "7700" not in str(caught.value)


# -- vendor answers that must not reach the evidence -------------------------------------------------------------


def test_an_answer_echoing_the_identifiers_fails_erase_without_repeating_them(
    state: MetaState, make_connector: MakeConnector
) -> None:
    state.echo = IDENTIFIER_TEXTS
    with pytest.raises(TerminalError) as caught:
        make_connector().erase(CHILD, "req-1/meta_ads")
    assert "another audience or session" in str(caught.value)
    assert_no_identifier(caught.value, repr(caught.value))


def test_an_error_echoing_the_identifiers_is_refused_without_repeating_them(
    state: MetaState, make_connector: MakeConnector
) -> None:
    state.echo, state.corrupt, state.access_token = IDENTIFIER_TEXTS, frozenset({"errors"}), "rotated"
    with pytest.raises(VendorRefused) as caught:
        make_connector().erase(CHILD, "req-1/meta_ads")
    assert_no_identifier(caught.value, caught.value.reason)


def test_sessions_echoing_the_identifiers_never_finish_and_are_recorded_as_digests(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    state.echo, state.corrupt = IDENTIFIER_TEXTS, frozenset({"sessions"})
    connector = make_connector()
    outcome = erased(connector)
    assert outcome.job is not None

    clock.now += timedelta(days=2)
    job = connector.poll(outcome.job)

    assert job.status is JobStatus.RUNNING  # an answer that says nothing readable is never success
    assert job.vendor_status == "not_listed"  # the echoed session id is not ours
    assert_no_identifier(outcome, job, json.dumps(dict(job.facts)), job.detail)


def test_session_fields_echoing_the_identifiers_are_held_opaque(
    state: MetaState, clock: Clock, make_connector: MakeConnector
) -> None:
    connector = make_connector()
    outcome = erased(connector)
    assert outcome.job is not None
    state.echo, state.corrupt = IDENTIFIER_TEXTS, frozenset({"sessions"})
    state.echo_keys = frozenset({"stage", "progress", "num_matched", "start_time"})  # the session stays findable

    clock.now += timedelta(days=2)
    job = connector.poll(outcome.job)

    assert job.status is JobStatus.RUNNING  # progress is unreadable: never taken for complete
    assert job.vendor_status == "unknown"
    echoed = " ".join(IDENTIFIER_TEXTS)
    for name in ("stage", "progress", "num_matched", "start_time"):
        # the activity records it as "unknown" and an HMAC under the request's key, never as a plain digest
        assert job.facts[f"{AUDIENCE}.{name}"] == Opaque(json.dumps(echoed).encode())
    assert job.facts[f"{AUDIENCE}.num_received"] == 2
    assert_no_identifier(job, repr(dict(job.facts)))


@pytest.mark.parametrize("corrupt", ["users", "errors"])
def test_lone_surrogates_in_an_erase_answer_are_terminal(
    state: MetaState, make_connector: MakeConnector, corrupt: str
) -> None:
    state.lone_surrogates, state.corrupt = True, frozenset({corrupt})
    if corrupt == "errors":
        state.fail_next_with = [17]  # even a throttling answer: its words cannot be read
    with pytest.raises(TerminalError, match="invalid unicode"):
        make_connector().erase(CHILD, "req-1/meta_ads")


def test_lone_surrogates_in_a_session_answer_are_terminal(state: MetaState, make_connector: MakeConnector) -> None:
    connector = make_connector()
    outcome = erased(connector)
    assert outcome.job is not None
    state.lone_surrogates, state.corrupt = True, frozenset({"sessions"})
    with pytest.raises(TerminalError, match="invalid unicode"):
        connector.poll(outcome.job)


# -- inputs --------------------------------------------------------------------------------------------------------


def test_a_national_phone_without_country_code_is_refused_unquoted(make_connector: MakeConnector) -> None:
    with pytest.raises(TerminalError, match="phone 1 of 1 cannot be normalised") as caught:
        make_connector(default_country_code=None).erase(Subject.of(phone=[CHILD_PHONE]), "req-1/meta_ads")
    assert "7700" not in str(caught.value)


def test_a_subject_without_a_matching_identifier_is_refused(make_connector: MakeConnector) -> None:
    connector = make_connector()
    assert dict(connector.locate(Subject.of(user_id=["1"])).counts) == {f"audience:{AUDIENCE}": 0}
    with pytest.raises(TerminalError, match="none of the identifier types"):
        connector.erase(Subject.of(user_id=["1"]), "req-1/meta_ads")


def test_locate_counts_rows_per_audience(make_connector: MakeConnector) -> None:
    inventory = make_connector(audiences=both_audiences()).locate(CHILD)
    assert dict(inventory.counts) == {f"audience:{AUDIENCE}": 2, f"audience:{OTHER_AUDIENCE}": 2}
    assert "no membership lookup" in inventory.note


@pytest.mark.parametrize(
    "mapping",
    [
        {"audiences": []},
        {"audiences": [{"id": "../act_1", "schema": ["EMAIL"]}]},  # becomes a path segment
        {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL"]}, {"id": AUDIENCE, "schema": ["PHONE"]}]},
        {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL", "EMAIL"]}]},
        {"audiences": [{"id": AUDIENCE, "schema": ["FN"]}]},
        {"audiences": [{"id": AUDIENCE, "schema": "EMAIL"}]},  # a single-key schema names its hashing
        {"audiences": [{"id": AUDIENCE}]},
        {"default_country_code": "+44"},
    ],
)
def test_settings_refuse_bad_mappings(mapping: dict[str, Any]) -> None:
    good = {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL"]}]}
    with pytest.raises(ValidationError):
        MetaSettings.model_validate({"connection": {"access_token_env": "T"}, "mapping": good | mapping})


@pytest.mark.parametrize("version", ["25.0", "v25", "latest"])
def test_settings_refuse_a_malformed_api_version(version: str) -> None:
    mapping = {"audiences": [{"id": AUDIENCE, "schema": ["EMAIL"]}]}
    with pytest.raises(ValidationError):
        MetaSettings.model_validate(
            {"connection": {"access_token_env": "T", "api_version": version}, "mapping": mapping}
        )


def test_unquoted_audience_ids_from_yaml_are_read_as_their_digits() -> None:
    settings = MetaSettings.model_validate(
        {
            "connection": {"access_token_env": "T"},
            "mapping": {"audiences": [{"id": 23850000000000001, "schema": "EMAIL_SHA256"}]},
        }
    )
    assert settings.mapping.audiences[0].id == AUDIENCE
