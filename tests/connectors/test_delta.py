"""The delta connector against real Delta tables on moto's S3 over HTTP.

Rows, old data files, old commits and old checkpoints all lose the child's keys; look-alike neighbours survive with
exact counts; hostile values are matched as data; verify sees what a plain DELETE leaves behind.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from botocore.exceptions import ClientError
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from connectors.delta import DeltaConnector, DeltaSettings, _delete_rows, _mapped_errors
from connectors.registry import build_connector
from domain.errors import TerminalError, Throttled, TransientError
from domain.model import EvidenceLevel, Subject
from stores.catalogue import SystemSpec
from tests.connectors.delta_estate import (
    CHILD_EMAIL,
    CHILD_IDS,
    ENDPOINT_ENV,
    EVENT_ROWS,
    HOSTILE,
    HOSTILE_ROWS,
    SIGNUP_ROWS,
    SUBJECT,
    byte_traces,
    key_counts,
    objects,
    parsed_traces,
    storage_options,
    write_table,
)

CHILD_VALUES = (*CHILD_IDS, CHILD_EMAIL)

CATALOGUE_ENTRY = """
name: lakehouse
connector: delta
category: analytics
identifiers: [user_id, email]
connection:
  endpoint_url_env: DELTA_TEST_S3_ENDPOINT   # omitted in production: AWS itself
  region: us-east-1
  allow_http: true
mapping:
  tables:
    - {uri: "s3://clipstream-lake/analytics/events", key_column: user_id, identifier: user_id}
    - {uri: "s3://clipstream-lake/marketing/signups", key_column: email, identifier: email}
"""


@dataclass(frozen=True)
class Lake:
    bucket: str
    options: dict[str, str]
    s3: Any

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{path}"

    def files(self, path: str) -> dict[str, bytes]:
        return objects(self.s3, self.bucket, f"{path}/")


MakeConnector = Callable[..., DeltaConnector]


@pytest.fixture
def lake(s3_client: Any, bucket_name: str, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Lake:
    s3_client.create_bucket(Bucket=bucket_name)
    monkeypatch.setenv(ENDPOINT_ENV, moto_url)
    return Lake(bucket_name, storage_options(moto_url), s3_client)


@pytest.fixture
def make_connector(lake: Lake) -> Iterator[MakeConnector]:
    """make_connector((path, key_column, identifier), ...) -> a connector over those tables of the lake."""
    made: list[DeltaConnector] = []

    def make(*tables: tuple[str, str, str]) -> DeltaConnector:
        mapping = [{"uri": lake.uri(path), "key_column": column, "identifier": kind} for path, column, kind in tables]
        settings = {
            "connection": {"endpoint_url_env": ENDPOINT_ENV, "allow_http": True},
            "mapping": {"tables": mapping},
        }
        made.append(DeltaConnector("lakehouse", settings))
        return made[-1]

    yield make
    for connector in made:
        connector.close()


def without(rows: Mapping[str, int], *keys: str) -> dict[str, int]:
    return {key: count for key, count in rows.items() if key not in keys}


# --- settings ------------------------------------------------------------------------------------------------------


def test_catalogue_entry_builds_a_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")
    spec = SystemSpec.model_validate(yaml.safe_load(CATALOGUE_ENTRY))
    with build_connector(spec.connector, spec.name, spec.resolved_settings()) as connector:
        assert isinstance(connector, DeltaConnector)
        assert [t.path for t in connector.settings.mapping.tables] == ["analytics/events", "marketing/signups"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uri", "https://lake/events"),
        ("uri", "s3a://lake/events"),
        ("uri", "s3://lake"),
        ("uri", "s3://lake/"),
        ("uri", "s3:///events"),
        ("uri", "s3://lake/a/../b"),
        ("uri", "s3://lake//events"),
        ("key_column", "user id"),
        ("key_column", "user_id; DROP TABLE x"),
        ("key_column", 'user"id'),
        ("key_column", "1user"),
        ("key_column", ""),
        ("identifier", "ssn"),
    ],
)
def test_settings_refuse_bad_tables(field: str, value: str) -> None:
    table = {"uri": "s3://lake/events", "key_column": "user_id", "identifier": "user_id", field: value}
    with pytest.raises(ValidationError):
        DeltaSettings.model_validate({"mapping": {"tables": [table]}})


def test_settings_refuse_unknown_fields_and_duplicate_tables() -> None:
    table = {"uri": "s3://lake/events", "key_column": "user_id", "identifier": "user_id"}
    with pytest.raises(ValidationError):
        DeltaSettings.model_validate({"mapping": {"tables": [table]}, "conection": {}})
    with pytest.raises(ValidationError):
        DeltaSettings.model_validate({"mapping": {"tables": [table, {**table, "key_column": "email"}]}})


def test_endpoint_must_be_set_and_plain_http_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    table = {"uri": "s3://lake/events", "key_column": "user_id", "identifier": "user_id"}
    settings = {"connection": {"endpoint_url_env": ENDPOINT_ENV}, "mapping": {"tables": [table]}}
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    with pytest.raises(TerminalError, match=ENDPOINT_ENV):
        DeltaConnector("lakehouse", settings)
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")
    with pytest.raises(TerminalError, match="allow_http"):
        DeltaConnector("lakehouse", settings)


# --- locate, erase, verify -----------------------------------------------------------------------------------------


def test_locate_counts_exactly_the_childs_rows(lake: Lake, make_connector: MakeConnector) -> None:
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    write_table(lake.uri("lake/signups"), SIGNUP_ROWS, lake.options, key_column="email", commits=2)
    connector = make_connector(("lake/events", "user_id", "user_id"), ("lake/signups", "email", "email"))

    assert connector.locate(SUBJECT).counts == {"lake/events": 3 + 2, "lake/signups": 2}
    assert connector.locate(Subject.of(user_id=["1"])).counts == {"lake/events": 3, "lake/signups": 0}
    assert not connector.locate(Subject.of(user_id=["101", "U_10"], email=["nobody@example.org"])).found


def test_erase_leaves_no_trace_of_the_child_and_keeps_every_neighbour(
    lake: Lake, make_connector: MakeConnector
) -> None:
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    write_table(lake.uri("lake/by_user"), EVENT_ROWS, lake.options, partition_by=["user_id"])
    write_table(lake.uri("lake/signups"), SIGNUP_ROWS, lake.options, key_column="email", commits=2)
    # a writer that failed to commit left a file with the child's rows: no version references it
    orphan = pa.BufferOutputStream()
    pq.write_table(pa.table({"user_id": ["1", "u_1"], "seq": [0, 1]}), orphan, compression="NONE")
    orphan_key = "lake/events/part-00009-orphan.parquet"
    lake.s3.put_object(Bucket=lake.bucket, Key=orphan_key, Body=orphan.getvalue().to_pybytes())
    paths = ("lake/events", "lake/by_user", "lake/signups")
    before = {path: lake.files(path) for path in paths}
    # the inspection itself sees the child everywhere before erasure (else its silence afterwards means nothing)
    for path in paths:
        for traces in (parsed_traces(before[path], CHILD_VALUES), byte_traces(before[path], CHILD_VALUES)):
            assert any("_delta_log/" in name for name in traces)
            # data files too, by their bytes or (partitioned by the key) by their paths
            assert any("_delta_log/" not in name for name in traces) or "by_user" in path
        assert any("_delta_log/" not in name for name in parsed_traces(before[path], CHILD_VALUES))
    connector = make_connector(
        ("lake/events", "user_id", "user_id"),
        ("lake/by_user", "user_id", "user_id"),
        ("lake/signups", "email", "email"),
    )

    outcome = connector.erase(SUBJECT, "request-1:lakehouse")

    assert outcome.deleted == 5 + 5 + 2
    assert sorted(outcome.deleted_keys) == sorted(
        [f"{path}:{key}" for path in ("lake/events", "lake/by_user") for key in CHILD_IDS]
        + [f"lake/signups:{CHILD_EMAIL}"]
    )
    assert key_counts(lake.uri("lake/events"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    assert key_counts(lake.uri("lake/by_user"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    assert key_counts(lake.uri("lake/signups"), lake.options, "email") == without(SIGNUP_ROWS, CHILD_EMAIL)
    for path in paths:
        after = lake.files(path)
        assert byte_traces(after, CHILD_VALUES) == []
        assert parsed_traces(after, CHILD_VALUES) == []
        assert not [name for name in after if name.partition("#")[0] in before[path] and "_delta_log/" in name]

    verification = connector.verify(SUBJECT)
    assert verification.level is EvidenceLevel.VERIFIED_ABSENT
    assert verification.remaining == {f"{p}{suffix}": 0 for p in paths for suffix in ("", ":data_files", ":log_files")}
    for path in paths:
        with pytest.raises(DeltaError):  # time travel to a version that showed the child
            DeltaTable(lake.uri(path), version=0, storage_options=lake.options)


def test_second_erase_is_harmless(lake: Lake, make_connector: MakeConnector) -> None:
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    connector = make_connector(("lake/events", "user_id", "user_id"))
    assert connector.erase(SUBJECT, "k").deleted == 5

    again = connector.erase(SUBJECT, "k")

    assert (again.deleted, again.deleted_keys, again.level) == (0, (), EvidenceLevel.VERIFIED_ABSENT)
    assert key_counts(lake.uri("lake/events"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    log = [name for name in lake.files("lake/events") if "_delta_log/" in name]
    assert len(log) == 3  # the newest commit, its checkpoint and _last_checkpoint
    assert connector.verify(SUBJECT).level is EvidenceLevel.VERIFIED_ABSENT


def test_hostile_values_are_matched_as_data(lake: Lake, make_connector: MakeConnector) -> None:
    write_table(lake.uri("lake/hostile"), HOSTILE_ROWS, lake.options)
    connector = make_connector(("lake/hostile", "user_id", "user_id"))
    subject = Subject.of(user_id=HOSTILE)
    assert connector.locate(subject).counts == {"lake/hostile": len(HOSTILE)}

    outcome = connector.erase(subject, "k")

    assert outcome.deleted == len(HOSTILE)
    assert key_counts(lake.uri("lake/hostile"), lake.options) == without(HOSTILE_ROWS, *HOSTILE)
    assert parsed_traces(lake.files("lake/hostile"), HOSTILE) == []
    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT


def test_other_columns_equal_to_a_key_are_not_traces(lake: Lake, make_connector: MakeConnector) -> None:
    """The child's ids as values of another column (a plan name, a referrer) belong to other rows: they stay, and
    verify does not call them traces of the child although they sit in the statistics of the surviving files."""
    uri = lake.uri("lake/plans")
    data = pa.table({"user_id": ["1", "10", "u_1", "100"], "plan": ["1", "1", "u_1", "u_1"]})
    for half in (data.slice(0, 2), data.slice(2)):
        write_deltalake(uri, half, mode="append", storage_options=lake.options)
    connector = make_connector(("lake/plans", "user_id", "user_id"))

    assert connector.erase(SUBJECT, "k").deleted == 2
    verification = connector.verify(SUBJECT)

    assert verification.level is EvidenceLevel.VERIFIED_ABSENT, verification.remaining
    rows = DeltaTable(uri, storage_options=lake.options).to_pyarrow_table().to_pylist()
    assert sorted((r["user_id"], r["plan"]) for r in rows) == [("10", "1"), ("100", "u_1")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.text(min_size=1, max_size=40))
def test_merge_delete_is_exact_for_any_text(value: str) -> None:
    """Whatever the text, the merge deletes the rows equal to it and nothing else (local table: no S3 needed)."""
    look_alikes = [value + "x", value.upper(), value.lower(), value.strip(), f" {value}", value[:-1] or "_", "%", "*"]
    neighbours = [n for n in look_alikes if n != value]
    with tempfile.TemporaryDirectory() as directory:
        write_deltalake(directory, pa.table({"user_id": [value, *neighbours, value]}))
        table = DeltaTable(directory)

        assert _delete_rows(table, "user_id", [value]) == 2
        assert Counter(DeltaTable(directory).to_pyarrow_table().column("user_id").to_pylist()) == Counter(neighbours)


def test_verify_sees_what_a_plain_delete_leaves(lake: Lake, make_connector: MakeConnector) -> None:
    uri = lake.uri("lake/events")
    write_table(uri, EVENT_ROWS, lake.options)
    connector = make_connector(("lake/events", "user_id", "user_id"))
    table = DeltaTable(uri, storage_options=lake.options)
    table.delete("user_id IN ('1', 'u_1')")  # what a hand-run DELETE does: old files and log entries stay

    deleted_only = connector.verify(SUBJECT)
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    vacuumed = connector.verify(SUBJECT)

    assert deleted_only.level is EvidenceLevel.FAILED
    assert deleted_only.remaining["lake/events"] == 0
    assert deleted_only.remaining["lake/events:data_files"] >= 1
    assert deleted_only.remaining["lake/events:log_files"] >= 3  # add statistics, the old checkpoint, the predicate
    assert vacuumed.level is EvidenceLevel.FAILED
    assert vacuumed.remaining["lake/events:data_files"] == 0
    assert vacuumed.remaining["lake/events:log_files"] >= 3


def test_old_versions_in_a_versioned_bucket_are_deleted(lake: Lake, make_connector: MakeConnector) -> None:
    """Vacuum and log clean-up only lay delete markers in a versioned bucket; the old versions holding the child go
    too, and verify reads every version to say so. Versions and markers without a trace stay."""
    lake.s3.put_bucket_versioning(Bucket=lake.bucket, VersioningConfiguration={"Status": "Enabled"})
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    write_table(lake.uri("lake/by_user"), EVENT_ROWS, lake.options, partition_by=["user_id"], commits=2)
    connector = make_connector(("lake/events", "user_id", "user_id"), ("lake/by_user", "user_id", "user_id"))

    connector.erase(SUBJECT, "k")

    verification = connector.verify(SUBJECT)
    assert verification.level is EvidenceLevel.VERIFIED_ABSENT, verification.remaining
    for path in ("lake/events", "lake/by_user"):
        after = lake.files(path)
        assert byte_traces(after, CHILD_IDS) == [] and parsed_traces(after, CHILD_IDS) == []
        assert key_counts(lake.uri(path), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    listing = lake.s3.list_object_versions(Bucket=lake.bucket, Prefix="lake/events/")
    assert listing.get("DeleteMarkers") and any(not v["IsLatest"] for v in listing["Versions"])


def test_an_old_version_under_legal_hold_is_a_terminal_error(
    s3_client: Any, moto_url: str, monkeypatch: pytest.MonkeyPatch, bucket_name: str
) -> None:
    s3_client.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)  # also turns versioning on
    monkeypatch.setenv(ENDPOINT_ENV, moto_url)
    uri, options = f"s3://{bucket_name}/lake/events", storage_options(moto_url)
    write_table(uri, EVENT_ROWS, options, commits=2)
    held = next(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket_name)["Contents"] if "part-" in o["Key"])
    s3_client.put_object_legal_hold(Bucket=bucket_name, Key=held, LegalHold={"Status": "ON"})
    settings = {
        "connection": {"endpoint_url_env": ENDPOINT_ENV, "allow_http": True},
        "mapping": {"tables": [{"uri": uri, "key_column": "user_id", "identifier": "user_id"}]},
    }

    with DeltaConnector("lakehouse", settings) as connector, pytest.raises(TerminalError) as raised:
        connector.erase(SUBJECT, "k")

    assert "1 old object versions under lake/events were not deleted: AccessDenied" in str(raised.value)
    assert key_counts(uri, options) == without(EVENT_ROWS, *CHILD_IDS)  # the rows themselves are gone


# --- refusals and errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["missing table", "missing bucket"])
def test_missing_table_is_terminal_and_names_no_identifier(
    lake: Lake, make_connector: MakeConnector, where: str
) -> None:
    connector = make_connector(("lake/missing", "user_id", "user_id"))
    if where == "missing bucket":
        lake.s3.delete_bucket(Bucket=lake.bucket)
    for call in (connector.locate, lambda s: connector.erase(s, "k"), connector.verify):
        with pytest.raises(TerminalError) as raised:
            call(SUBJECT)
        assert "lake/missing" in str(raised.value)
        assert not any(value in str(raised.value) for value in CHILD_VALUES)


def test_a_subject_without_a_mapped_identifier_is_terminal_never_absent(
    lake: Lake, make_connector: MakeConnector
) -> None:
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    connector = make_connector(("lake/events", "user_id", "user_id"))
    subject = Subject.of(email=["child@example.org"])
    for step in (connector.locate, connector.verify, lambda s: connector.erase(s, "k")):
        with pytest.raises(TerminalError, match="nothing would be searched"):
            step(subject)


def test_refuses_non_text_keys_and_empty_values(lake: Lake, make_connector: MakeConnector) -> None:
    write_deltalake(lake.uri("lake/numeric"), pa.table({"user_id": [1, 10]}), storage_options=lake.options)
    with pytest.raises(TerminalError, match="expected text"):
        make_connector(("lake/numeric", "user_id", "user_id")).erase(Subject.of(user_id=["1"]), "k")
    with pytest.raises(TerminalError, match="empty user_id"):
        make_connector(("lake/numeric", "user_id", "user_id")).erase(Subject.of(user_id=[""]), "k")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (DeltaError("Generic S3 error: 503 Service Unavailable <Error>kid@x</Error>"), Throttled),
        (OSError("Error performing GET http://h/b/k - HTTP error: error sending request"), TransientError),
        (DeltaError("Generic S3 error: 500 Internal Server Error"), TransientError),
        (OSError("Generic S3 error: 403 Forbidden <Code>AccessDenied</Code>"), TerminalError),
        (OSError("Error performing GET http://h/b/k in 503.2ms - non-2xx status code: 404 Not Found"), TerminalError),
        (
            ClientError({"Error": {"Code": "SlowDown"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "GetObject"),
            Throttled,
        ),
        (
            ClientError({"Error": {"Code": "AccessDenied"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject"),
            TerminalError,
        ),
    ],
)
def test_errors_are_mapped_by_kind_without_their_text(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as raised:
        with _mapped_errors("lake/events"):
            raise error
    assert type(raised.value) is expected
    assert "kid@x" not in str(raised.value) and "http://" not in str(raised.value)
