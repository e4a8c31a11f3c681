"""The Meta audiences connector against the Meta emulator over real HTTP: hashes, sessions, neighbours, errors."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.meta_audiences import MetaAudiencesConnector, MetaSettings
from domain.errors import TerminalError, Throttled, TransientError, VendorRefused
from domain.model import EvidenceLevel, Subject
from emulators.meta import MetaState, create_app
from tests.emulators.switchboard import Switchboard, switchboard

AUDIENCE = "23850000000000001"
OTHER_AUDIENCE = "23850000000000002"
CHILD_EMAIL = "  Child.Name@Example.COM. "  # awkward on purpose: spaces, capitals, a trailing dot
CHILD_PHONE = "07700 900123"  # national format: needs the mapping's default country code
CHILD = Subject.of(email=[CHILD_EMAIL], phone=[CHILD_PHONE])
PLAIN_VALUES = ("child.name", "example.com", "7700900123", "900123")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


CHILD_EMAIL_HASH = sha("child.name@example.com")
CHILD_PHONE_HASH = sha("447700900123")
# members that look like the child and must survive: a plus-tagged address, a phone one digit away
NEIGHBOURS = {(sha("child.name+news@example.com"),), (sha("447700900124"),), (sha("childname@example.com"),)}
MakeConnector = Callable[..., MetaAudiencesConnector]


@pytest.fixture
def state() -> MetaState:
    members = {(CHILD_EMAIL_HASH,), (CHILD_PHONE_HASH,), *NEIGHBOURS}
    return MetaState(audiences={AUDIENCE: set(members), OTHER_AUDIENCE: set(members)}, finish_after_polls=1)


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

    def make(**mapping: Any) -> MetaAudiencesConnector:
        settings = {
            "connection": {"base_url": base_url, "access_token_env": "META_TEST_TOKEN"},
            "mapping": {"audience_ids": [AUDIENCE], "schema": ["EMAIL", "PHONE"], "default_country_code": "44"}
            | mapping,
        }
        made.append(MetaAudiencesConnector("meta_ads", settings))
        return made[-1]

    yield make
    for connector in made:
        connector.close()


def test_received_hashes_are_the_normalised_sha256s(state: MetaState, make_connector: MakeConnector) -> None:
    outcome = make_connector().erase(CHILD, "req-1/meta_ads")

    (call,) = state.received
    assert call.audience_id == AUDIENCE
    assert call.schema == ("EMAIL", "PHONE")
    assert call.rows == [(CHILD_EMAIL_HASH, ""), ("", CHILD_PHONE_HASH)]
    assert outcome.level is EvidenceLevel.ACCEPTED
    assert outcome.deleted == 2
    assert outcome.vendor_status == "received 2"


def test_no_plain_email_or_phone_ever_reaches_meta(state: MetaState, make_connector: MakeConnector) -> None:
    subject = Subject.of(email=[CHILD_EMAIL, "OTHER@example.com"], phone=[CHILD_PHONE, "+44 (0)7700 900999"])
    make_connector(audience_ids=[AUDIENCE, OTHER_AUDIENCE]).erase(subject, "req-1/meta_ads")

    assert len(state.received) == 2
    for call in state.received:
        values = [value for row in call.rows for value in row if value]
        assert len(values) == 4
        assert all(re.fullmatch(r"[0-9a-f]{64}", value) for value in values)
        assert not any(plain in repr(call).lower() for plain in PLAIN_VALUES)


def test_neighbours_survive_once_meta_processed_the_removal(state: MetaState, make_connector: MakeConnector) -> None:
    connector = make_connector(audience_ids=[AUDIENCE, OTHER_AUDIENCE])
    connector.erase(CHILD, "req-1/meta_ads")

    verification = connector.verify(CHILD)  # reading the sessions edge lets the emulator finish processing

    assert verification.level is EvidenceLevel.VENDOR_ATTESTED
    assert state.audiences == {AUDIENCE: NEIGHBOURS, OTHER_AUDIENCE: NEIGHBOURS}


def test_a_differently_cased_email_is_the_same_member_at_meta(state: MetaState, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.erase(Subject.of(email=["CHILD.NAME@example.com"]), "req-1/meta_ads")
    connector.verify(Subject.of(email=["CHILD.NAME@example.com"]))
    assert (CHILD_EMAIL_HASH,) not in state.audiences[AUDIENCE]
    assert state.audiences[AUDIENCE] >= NEIGHBOURS


def test_verify_attests_only_after_the_session_is_processed(state: MetaState, make_connector: MakeConnector) -> None:
    state.finish_after_polls = 2
    connector = make_connector()
    connector.erase(CHILD, "req-1/meta_ads")

    first, second = connector.verify(CHILD), connector.verify(CHILD)

    assert first.level is EvidenceLevel.ACCEPTED and "not finished" in first.detail
    assert second.level is EvidenceLevel.VENDOR_ATTESTED
    assert first.total_remaining == second.total_remaining == 0


def test_verify_before_any_erase_only_accepts(make_connector: MakeConnector) -> None:
    assert make_connector().verify(CHILD).level is EvidenceLevel.ACCEPTED


def test_25000_rows_go_in_three_calls_of_one_session(state: MetaState, make_connector: MakeConnector) -> None:
    subject = Subject.of(email=[f"kid{i}@example.com" for i in range(25_000)])

    outcome = make_connector(schema=["EMAIL"]).erase(subject, "req-1/meta_ads")

    assert [len(call.rows) for call in state.received] == [10_000, 10_000, 5_000]
    sessions = [call.session for call in state.received]
    assert all(session is not None for session in sessions)
    assert len({s["session_id"] for s in sessions if s}) == 1
    assert [s["batch_seq"] for s in sessions if s] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions if s] == [False, False, True]
    assert {s["estimated_num_total"] for s in sessions if s} == {25_000}
    assert outcome.level is EvidenceLevel.ACCEPTED and outcome.deleted == 25_000


def test_a_retried_erase_reuses_its_session(state: MetaState, make_connector: MakeConnector) -> None:
    connector = make_connector()
    connector.erase(CHILD, "req-1/meta_ads")
    connector.erase(CHILD, "req-1/meta_ads")

    first, second = (call.session for call in state.received)
    assert first == second
    (session,) = state.sessions[AUDIENCE].values()
    assert sum(session.received.values()) == 2  # the resent batch replaced the first, nothing counted twice


def test_invalid_entries_fail_with_counts(state: MetaState, make_connector: MakeConnector) -> None:
    state.invalid_rows = 1

    outcome = make_connector().erase(CHILD, "req-1/meta_ads")

    assert outcome.level is EvidenceLevel.FAILED
    assert outcome.deleted == 1
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
    assert not any(plain in str(caught.value).lower() for plain in PLAIN_VALUES)
    assert connector.erase(CHILD, "req-1/meta_ads").level is EvidenceLevel.ACCEPTED


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(state: MetaState, make_connector: MakeConnector, status: int) -> None:
    state.fail_next_with = [status]
    with pytest.raises(TransientError, match=f"http {status}") as caught:
        make_connector().erase(CHILD, "req-1/meta_ads")
    assert not isinstance(caught.value, Throttled)


def test_an_unknown_audience_is_refused(make_connector: MakeConnector) -> None:
    with pytest.raises(VendorRefused, match="code 100, subcode 33") as caught:
        make_connector(audience_ids=["99999"]).erase(CHILD, "req-1/meta_ads")
    assert caught.value.status == 400


def test_a_wrong_token_is_terminal(state: MetaState, make_connector: MakeConnector) -> None:
    state.access_token = "rotated"
    with pytest.raises(VendorRefused, match="code 190"):
        make_connector().erase(CHILD, "req-1/meta_ads")


def test_a_national_phone_without_country_code_is_refused_unquoted(make_connector: MakeConnector) -> None:
    with pytest.raises(TerminalError, match="phone 1 of 1 cannot be hashed") as caught:
        make_connector(default_country_code=None).erase(Subject.of(phone=[CHILD_PHONE]), "req-1/meta_ads")
    assert "7700" not in str(caught.value)


def test_a_subject_without_email_or_phone_is_refused(make_connector: MakeConnector) -> None:
    connector = make_connector()
    assert dict(connector.locate(Subject.of(user_id=["1"])).counts) == {f"audience:{AUDIENCE}": 0}
    with pytest.raises(TerminalError, match="none of the identifier types"):
        connector.erase(Subject.of(user_id=["1"]), "req-1/meta_ads")


def test_locate_counts_rows_per_audience(make_connector: MakeConnector) -> None:
    inventory = make_connector(audience_ids=[AUDIENCE, OTHER_AUDIENCE]).locate(CHILD)
    assert dict(inventory.counts) == {f"audience:{AUDIENCE}": 2, f"audience:{OTHER_AUDIENCE}": 2}
    assert "no membership lookup" in inventory.note


@pytest.mark.parametrize(
    "mapping",
    [
        {"audience_ids": []},
        {"audience_ids": ["../act_1"]},  # becomes a path segment
        {"audience_ids": [AUDIENCE, AUDIENCE]},
        {"schema": ["EMAIL", "EMAIL"]},
        {"schema": ["FN"]},
        {"default_country_code": "+44"},
    ],
)
def test_settings_refuse_bad_mappings(mapping: dict[str, Any]) -> None:
    good = {"audience_ids": [AUDIENCE], "schema": ["EMAIL"]}
    with pytest.raises(ValidationError):
        MetaSettings.model_validate({"connection": {"access_token_env": "T"}, "mapping": good | mapping})


def test_unquoted_audience_ids_from_yaml_are_read_as_their_digits() -> None:
    settings = MetaSettings.model_validate(
        {"connection": {"access_token_env": "T"}, "mapping": {"audience_ids": [23850000000000001], "schema": ["EMAIL"]}}
    )
    assert settings.mapping.audience_ids == [AUDIENCE]
