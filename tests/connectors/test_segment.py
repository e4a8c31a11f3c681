"""The Segment connector against the Segment emulator over real HTTP: regulations, batches, statuses and errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.segment import SegmentConnector, SegmentSettings
from domain.errors import TerminalError, Throttled, TransientError, VendorRefused
from domain.model import EvidenceLevel, JobHandle, JobStatus, Subject
from emulators.segment import SegmentState, create_app
from tests.emulators.switchboard import Switchboard, switchboard
from tests.servers import free_port

CHILD = "child-1"
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

    def make(base: str = base_url, **connection: Any) -> SegmentConnector:
        settings = {"connection": {"base_url": base, "token_env": "SEGMENT_TEST_TOKEN", **connection}}
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
        ("FAILED", "Braze (dest_braze_1) NOT_SUPPORTED"),
        ("PARTIAL_SUCCESS", "Braze (dest_braze_1) FAILED"),
        ("INVALID", "Amplitude (dest_amplitude_1) INVALID"),
        ("NOT_SUPPORTED", "Amplitude (dest_amplitude_1) NOT_SUPPORTED"),
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


def test_429_raises_throttled_until_the_quota_resets(state: SegmentState, make_connector: MakeConnector) -> None:
    state.fail_next_with = [429]
    state.quota_reset = datetime.now(UTC) + timedelta(hours=1)
    connector = make_connector()

    with pytest.raises(Throttled) as caught:
        connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment")

    assert caught.value.retry_after_s is not None and 3590 < caught.value.retry_after_s <= 3600
    assert "429" in str(caught.value) and CHILD not in str(caught.value)
    assert connector.erase(Subject.of(user_id=[CHILD]), "req-1/segment").level is EvidenceLevel.ACCEPTED


def test_an_exhausted_quota_is_throttling(state: SegmentState, make_connector: MakeConnector) -> None:
    state.quota = 0
    with pytest.raises(Throttled):
        make_connector().erase(Subject.of(user_id=[CHILD]), "req-1/segment")
    assert state.regulations == {}


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
    with pytest.raises(VendorRefused, match="not-found") as caught:
        connector.poll(JobHandle("no-such-regulation"))
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
