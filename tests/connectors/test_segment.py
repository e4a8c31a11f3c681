"""The Segment connector against the Segment emulator over real HTTP: regulations, batches, statuses and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from connectors import http
from connectors.segment import MAX_WAIT, SegmentConnector, SegmentSettings
from domain.errors import TerminalError, Throttled, TransientError, VendorRefused
from domain.model import EvidenceLevel, JobHandle, JobStatus, Opaque, Subject
from emulators.segment import SegmentState, create_app
from tests.emulators.switchboard import Switchboard, switchboard
from tests.servers import free_port

CHILD = "child-1"
AMPLITUDE, BRAZE = (d.id for d in SegmentState().destinations)
# look-alikes that must survive: a prefix match, a case variant, a longer id
NEIGHBOURS = {"child-10", "Child-1", "child-1 ", "child-11"}
MakeConnector = Callable[..., SegmentConnector]


@pytest.fixture
def state() -> SegmentState:
    return SegmentState(profiles={CHILD, *NEIGHBOURS})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Switchboard, str]]:
    with switchboard() as board_and_url:
        yield board_and_url


@pytest.fixture
def base_url(state: SegmentState, server: tuple[Switchboard, str]) -> str:
    board, url = server
    board.app = create_app(state)
    return url


@pytest.fixture
def make_connector(state: SegmentState, base_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeConnector]:
    monkeypatch.setenv("SEGMENT_TEST_TOKEN", state.token)
    made: list[SegmentConnector] = []

    def make(base: str = base_url, mapping: dict[str, Any] | None = None, **connection: Any) -> SegmentConnector:
        settings = {
            "connection": {"base_url": base, "token_env": "SEGMENT_TEST_TOKEN", **connection},
            "mapping": {"destinations": ["Amplitude", "Braze"], **(mapping or {})},
        }
        made.append(SegmentConnector("segment", SegmentSettings.model_validate(settings)))
        return made[-1]

    yield make
    for connector in made:
        connector.close()


def posts(state: SegmentState) -> list[dict[str, Any]]:
    return [r.body for r in state.received if r.method == "POST" and r.body is not None]


def test_erase_creates_one_regulation_with_exactly_the_subjects_ids(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    outcome = make_connector().erase(Subject.of(user_id=[CHILD, CHILD]), "req-1/segment")

    assert posts(state) == [{"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": [CHILD]}]
    assert state.received[0].path == "/regulations"
    assert outcome.level is EvidenceLevel.ACCEPTED
    assert outcome.deleted == 0
    assert outcome.vendor_status == "INITIALIZED"
    assert outcome.job is not None and set(state.regulations) == {outcome.job.job_id}
    assert outcome.job.submitted_at is not None and outcome.job.submitted_at.tzinfo is UTC
    assert state.suppressed == {CHILD}


def test_poll_reaches_finished_after_n_polls_and_neighbours_survive(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    state.finish_after_polls = 3
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None

    seen = [connector.poll(job) for _ in range(3)]

    assert [s.status for s in seen] == [JobStatus.RUNNING, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    assert [s.vendor_status for s in seen] == ["INITIALIZED", "RUNNING", "FINISHED"]
    assert seen[-1].finished_at is not None
    assert state.profiles == NEIGHBOURS


def test_user_1_is_not_user_10(state: SegmentState, make_connector: MakeConnector) -> None:
    state.profiles, state.finish_after_polls = {"1", "10", "100", "01", "1.0"}, 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=["1"]), "req-1/segment").job
    assert job is not None and connector.poll(job).status is JobStatus.SUCCEEDED
    assert posts(state)[0]["subjectIds"] == ["1"]
    assert state.profiles == {"10", "100", "01", "1.0"}


def test_source_scoped_regulation(state: SegmentState, make_connector: MakeConnector) -> None:
    make_connector(source_id="qQEHquLrjRDN9j1ByrChyn").erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert state.received[0].path == "/regulations/sources/qQEHquLrjRDN9j1ByrChyn"


def test_more_than_5000_ids_go_in_batches_of_5000(state: SegmentState, make_connector: MakeConnector) -> None:
    state.finish_after_polls = 1
    ids = [f"user-{i}" for i in range(12_001)]
    connector = make_connector()

    outcome = connector.erase(Subject.of(user_id=ids), "req-1/segment")

    batches = [body["subjectIds"] for body in posts(state)]
    assert [len(b) for b in batches] == [5000, 5000, 2001]
    assert [i for batch in batches for i in batch] == ids
    assert outcome.job is not None and outcome.job.job_id.split(",") == list(state.regulations)
    assert connector.poll(outcome.job).status is JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("outcome", "destination"),
    [
        ("PARTIAL_SUCCESS", f"Braze ({BRAZE}) FAILED"),
        ("INVALID", f"Amplitude ({AMPLITUDE}) INVALID"),
        ("NOT_SUPPORTED", f"Amplitude ({AMPLITUDE}) NOT_SUPPORTED"),
    ],
)
def test_unfinished_outcomes_fail_naming_destinations(
    state: SegmentState, make_connector: MakeConnector, outcome: Any, destination: str
) -> None:
    state.outcome, state.finish_after_polls = outcome, 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None

    result = connector.poll(job)

    assert result.status is JobStatus.FAILED
    assert result.vendor_status == outcome
    assert destination in result.detail
    assert CHILD not in result.detail
    assert state.profiles == {CHILD, *NEIGHBOURS}


def test_a_regulation_that_never_ends_stays_running(state: SegmentState, make_connector: MakeConnector) -> None:
    state.outcome, state.finish_after_polls = "NEVER", 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None
    assert {connector.poll(job).status for _ in range(5)} == {JobStatus.RUNNING}


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(state: SegmentState, make_connector: MakeConnector, status: int) -> None:
    state.fail_next_with = [status]
    with pytest.raises(TransientError) as caught:
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert not isinstance(caught.value, Throttled)
    assert str(status) in str(caught.value) and CHILD not in str(caught.value)


def test_poll_errors_are_mapped_too(state: SegmentState, make_connector: MakeConnector) -> None:
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None
    state.fail_next_with = [502]
    with pytest.raises(TransientError):
        connector.poll(job)
    with pytest.raises(VendorRefused, match="undocumented error type") as caught:
        connector.poll(JobHandle("A" * 27))
    assert caught.value.status == 404


def test_a_wrong_token_is_terminal(state: SegmentState, make_connector: MakeConnector) -> None:
    state.token = "rotated"
    with pytest.raises(VendorRefused) as caught:
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert isinstance(caught.value, TerminalError)
    assert caught.value.status == 401
    assert CHILD not in str(caught.value)


def test_an_unreachable_vendor_is_transient(make_connector: MakeConnector) -> None:
    with pytest.raises(TransientError, match="could not be reached"):
        make_connector(base=f"http://127.0.0.1:{free_port()}").erase(Subject.of(user_id=[CHILD]), "req-1/segment")


def test_locate_and_verify_claim_nothing_they_cannot_see(make_connector: MakeConnector) -> None:
    connector = make_connector()
    inventory = connector.locate(Subject.of(user_id=[CHILD], email=["child@example.com"]))
    assert dict(inventory.counts) == {"subject_ids": 1}
    assert "no lookup" in inventory.note
    verification = connector.verify(Subject.of(user_id=[CHILD]))
    assert verification.level is EvidenceLevel.ACCEPTED and verification.total_remaining == 0


def test_a_subject_without_the_mapped_identifier_is_refused(make_connector: MakeConnector) -> None:
    with pytest.raises(TerminalError, match="no user_id identifiers"):
        make_connector().erase(Subject.of(email=["child@example.com"]), "req-1/segment")


def test_a_missing_token_variable_is_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEGMENT_UNSET_TOKEN", raising=False)
    with pytest.raises(TerminalError, match="SEGMENT_UNSET_TOKEN"):
        SegmentConnector(
            "segment",
            SegmentSettings.model_validate(
                {"connection": {"base_url": "http://x", "token_env": "SEGMENT_UNSET_TOKEN"}}
            ),
        )


@pytest.mark.parametrize(
    ("connection", "mapping"),
    [
        ({}, {"regulation_type": "SUPPRESS_ONLY"}),  # suppression alone is not erasure
        ({}, {"subject_type": "ANONYMOUS_ID", "identifier": "device_id"}),  # Segment: only with DELETE_ARCHIVE_ONLY
        ({}, {"regulation_type": "DELETE_ARCHIVE_ONLY"}),  # Segment: source-scoped only
        ({}, {"identifier": "email"}),
        ({}, {"regulation_typo": "DELETE_ONLY"}),
        ({"source_id": "../workspaces"}, {}),  # becomes a path segment
    ],
)
def test_settings_refuse_what_segment_or_erasure_forbids(connection: dict[str, str], mapping: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        SegmentSettings.model_validate(
            {"connection": {"base_url": "http://x", "token_env": "T", **connection}, "mapping": mapping}
        )


# -- waiting as Segment asks -------------------------------------------------------------------------------------


def next_month(moment: datetime) -> datetime:
    return datetime(moment.year + moment.month // 12, moment.month % 12 + 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "signals",
    [
        frozenset({"retry-after", "ms-before-next", "reset"}),
        frozenset({"ms-before-next", "reset"}),
        frozenset({"reset"}),  # only the RFC 5322 date of the reset
    ],
)
def test_an_exhausted_monthly_quota_is_waited_out_as_documented(
    state: SegmentState, make_connector: MakeConnector, signals: Any
) -> None:
    state.monthly_quota, state.wait_signals = 1, signals
    connector = make_connector()
    connector.erase(Subject.of(user_id=["someone-else"]), "req-0/segment")  # spends this month's quota

    with pytest.raises(Throttled) as caught:
        connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")

    until_reset = (next_month(datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
    assert caught.value.retry_after_s is not None and abs(caught.value.retry_after_s - until_reset) < 60
    assert "429" in str(caught.value) and CHILD not in str(caught.value)
    state.clock = lambda: next_month(datetime.now(UTC)) + timedelta(seconds=1)  # the wait is over
    outcome = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert outcome.level is EvidenceLevel.ACCEPTED and len(state.regulations) == 2


def test_a_429_without_any_wait_signal_leaves_the_wait_to_the_retry_policy(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    state.wait_signals, state.fail_next_with = frozenset(), [429]
    with pytest.raises(Throttled) as caught:
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert caught.value.retry_after_s is None and "unknown time" in str(caught.value)


def test_a_wait_longer_than_a_month_is_cut_to_the_bound(state: SegmentState, make_connector: MakeConnector) -> None:
    state.fail_next_with, state.throttle_for = [429], timedelta(days=400)
    with pytest.raises(Throttled) as caught:
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert caught.value.retry_after_s == MAX_WAIT.total_seconds()


# -- one regulation, even when an answer is lost ------------------------------------------------------------------


def test_a_lost_answer_is_found_in_the_list_instead_of_creating_a_second_regulation(
    state: SegmentState, make_connector: MakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "TIMEOUT", httpx.Timeout(0.3))
    state.hold_next_answers, state.hold_for = 1, timedelta(seconds=1)
    with pytest.raises(TransientError, match="did not answer in time"):
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    (created,) = state.regulations

    outcome = make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")  # the activity's retry

    assert outcome.job is not None and outcome.job.job_id == created
    assert list(state.regulations) == [created] and len(posts(state)) == 1
    assert outcome.facts["regulations_found_pending"] == 1
    listed = [r for r in state.received if r.method == "GET" and r.path == "/regulations"]
    assert listed and all(CHILD not in r.query for r in listed)  # the list is filtered by type, matched in memory


@pytest.mark.parametrize(
    ("earlier", "why"),
    [
        ({"subjectIds": [CHILD, "child-10"]}, "more subjects"),
        ({"subjectIds": ["child-10"]}, "a neighbour"),
        ({"regulationType": "DELETE_ONLY"}, "another type"),
    ],
)
def test_only_a_pending_regulation_for_exactly_our_subjects_and_type_is_taken(
    state: SegmentState, make_connector: MakeConnector, earlier: dict[str, Any], why: str
) -> None:
    connector = make_connector()
    with httpx.Client(base_url=connector._settings.connection.base_url) as client:
        body = {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": [CHILD], **earlier}
        client.post("/regulations", json=body, headers={"Authorization": f"Bearer {state.token}"})

    outcome = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")

    assert len(state.regulations) == 2, why
    assert outcome.facts["regulations_found_pending"] == 0


def test_a_finished_regulation_is_not_taken_for_a_new_request(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    state.finish_after_polls = 1
    connector = make_connector()
    first = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert first is not None and connector.poll(first).status is JobStatus.SUCCEEDED
    second = connector.erase(Subject.of(user_id=[CHILD]), "req-2/segment").job
    assert second is not None and second.job_id != first.job_id


# -- what the receipt can say ----------------------------------------------------------------------------------


def test_failed_only_for_unsupported_destinations_is_segment_done_with_residual_copies(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    state.outcome, state.finish_after_polls = "FAILED", 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None

    result = connector.poll(job)

    assert result.status is JobStatus.SUCCEEDED and result.vendor_status == "FAILED"
    assert result.residual == (f"Braze ({BRAZE})",)
    assert [(d.name, d.id, d.status) for d in result.destinations] == [
        ("Amplitude", AMPLITUDE, "FINISHED"),
        ("Braze", BRAZE, "NOT_SUPPORTED"),
    ]
    assert set(result.destinations[1].opaque) == {"error"}  # errString is free text: held opaque, keyed later
    assert "need their own connector" in result.detail
    assert state.profiles == NEIGHBOURS


def test_undeclared_destination_names_are_held_opaque(state: SegmentState, make_connector: MakeConnector) -> None:
    state.finish_after_polls = 1
    connector = make_connector(mapping={"destinations": ["Amplitude"]})
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None
    braze = connector.poll(job).destinations[1]
    assert braze.name is None and braze.opaque["name"] == Opaque(b"Braze")  # the activity keys it per request


@pytest.mark.parametrize(
    ("regulation_type", "scope"),
    [("SUPPRESS_WITH_DELETE", "segment_and_destinations"), ("SUPPRESS_WITH_DELETE_INTERNAL", "segment_only")],
)
def test_the_requested_scope_is_stated(make_connector: MakeConnector, regulation_type: str, scope: str) -> None:
    outcome = make_connector(mapping={"regulation_type": regulation_type}).erase(
        Subject.of(user_id=[CHILD]), "req-1/segment"
    )
    assert outcome.facts["scope"] == scope and outcome.facts["regulation_type"] == regulation_type


def test_verify_finds_the_subject_on_the_suppression_list(state: SegmentState, make_connector: MakeConnector) -> None:
    state.suppressed = {f"other-{i}" for i in range(450)}  # three pages of 200
    connector = make_connector()
    connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")

    verification = connector.verify(Subject.of(user_id=[CHILD]))

    assert verification.facts == {"suppression_checked": "yes", "suppressed": 1, "submitted": 1}
    assert verification.level is EvidenceLevel.ACCEPTED
    pages = [r for r in state.received if r.path == "/suppressions"]
    assert len(pages) == 3


def test_verify_of_a_type_that_does_not_suppress_checks_no_list(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    verification = make_connector(mapping={"regulation_type": "DELETE_ONLY"}).verify(Subject.of(user_id=[CHILD]))
    assert verification.facts == {} and not [r for r in state.received if r.path == "/suppressions"]


# -- a vendor that echoes the identifier or sends invalid unicode ----------------------------------------------------


def leaks(*things: object) -> list[str]:
    return [repr(thing) for thing in things if CHILD in repr(thing) or CHILD in str(thing)]


def test_echo_mode_never_carries_the_identifier_into_outcomes_or_errors(
    state: SegmentState, make_connector: MakeConnector
) -> None:
    state.finish_after_polls = 1
    connector = make_connector()
    outcome = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert outcome.job is not None
    state.mode = "echo"

    polled = connector.poll(outcome.job)
    verification = connector.verify(Subject.of(user_id=[CHILD]))
    with pytest.raises(TerminalError) as created:
        connector.erase(Subject.of(user_id=[CHILD]), "req-2/segment")  # the regulateId echoes the child
    state.fail_next_with = [422]  # Segment's validation failure: type, message and field all echo the child
    with pytest.raises(VendorRefused) as refused:
        connector.erase(Subject.of(user_id=[CHILD]), "req-3/segment")
    state.fail_next_with = [429]
    with pytest.raises(Throttled) as throttled:
        connector.erase(Subject.of(user_id=[CHILD]), "req-4/segment")

    assert polled.status is JobStatus.FAILED and polled.vendor_status == "unknown"
    assert {d.status for d in polled.destinations} == {"unknown"}
    assert {(d.name, d.id) for d in polled.destinations} == {(None, None)}
    assert all(set(d.opaque) == {"name", "id", "status", "error"} for d in polled.destinations)
    assert polled.facts == {"regulation_status": Opaque(CHILD.encode())}  # keyed by the activity, never kept plain
    assert "undocumented" in str(created.value) and "undocumented error type" in str(refused.value)
    assert leaks(outcome, polled, verification, created.value, refused.value, throttled.value) == []


def test_surrogates_anywhere_are_a_terminal_failure(state: SegmentState, make_connector: MakeConnector) -> None:
    state.finish_after_polls = 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None
    state.mode = "surrogates"

    with pytest.raises(TerminalError, match="invalid unicode") as polled:
        connector.poll(job)
    with pytest.raises(TerminalError, match="invalid unicode") as created:
        connector.erase(Subject.of(user_id=[CHILD]), "req-2/segment")

    for error in (polled.value, created.value):
        str(error).encode("utf-8")  # the message itself is storable
        assert CHILD not in str(error)


def test_neighbours_are_never_sent(state: SegmentState, make_connector: MakeConnector) -> None:
    state.finish_after_polls = 1
    connector = make_connector()
    job = connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").job
    assert job is not None
    connector.poll(job)
    connector.verify(Subject.of(user_id=[CHILD]))
    assert [body["subjectIds"] for body in posts(state)] == [[CHILD]]
    assert all(n not in r.path and n not in r.query for r in state.received for n in NEIGHBOURS)
    assert state.profiles == NEIGHBOURS
