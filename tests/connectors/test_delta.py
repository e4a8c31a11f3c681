"""The delta connector against real Delta tables on moto's S3 over HTTP.

Rows, old data files, old commits and old checkpoints all lose the child's keys; look-alike neighbours survive with
exact counts; hostile values are matched as data; verify sees what a plain DELETE leaves behind. The owner's table
properties stay as they were, a concurrent writer's uncommitted file survives, Spark's log files and deletion-vector
tables are handled as the protocol lays them out, and concurrent erasures on one table both finish.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
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

import connectors.delta
from connectors import delta_log
from connectors.delta import DeltaConnector, DeltaSettings, _delete_rows, _mapped_errors, cut_fact
from connectors.registry import build_connector
from domain.errors import TerminalError, Throttled, TransientError
from domain.model import EvidenceLevel, Outcome, Subject
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
    add_spark_log,
    byte_traces,
    key_counts,
    objects,
    parsed_traces,
    storage_options,
    write_dv_table,
    write_table,
)

CHILD_VALUES = (*CHILD_IDS, CHILD_EMAIL)

TABLES = ("events", "by_user", "signups")
OWNER_PROPERTIES = {
    "delta.logRetentionDuration": "interval 60 days",
    "delta.deletedFileRetentionDuration": "interval 14 days",
    "delta.enableChangeDataFeed": "true",
}

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


def parquet_of(rows: dict[str, list[Any]]) -> bytes:
    out = pa.BufferOutputStream()
    pq.write_table(pa.table(rows), out, compression="NONE")
    return bytes(out.getvalue().to_pybytes())


def table_state(lake: Lake, path: str) -> tuple[dict[str, str], Any]:
    """The owner's table properties and protocol."""
    table = DeltaTable(lake.uri(path), storage_options=lake.options)
    return dict(table.metadata().configuration), table.protocol()


def log_names(lake: Lake, path: str) -> set[str]:
    prefix = f"{path}/_delta_log/"
    return {name.partition("#")[0].removeprefix(prefix) for name in lake.files(path) if name.startswith(prefix)}


def cut_version(outcome: Outcome, path: str) -> int:
    """The first version the table keeps, as the receipt's typed fact says."""
    version = outcome.facts[cut_fact(path)]
    assert isinstance(version, int)
    return version


def erase_retrying(connector: DeltaConnector, subject: Subject, attempts: int = 40) -> Outcome:
    """Erase as the activity's retry policy would: again after each transient error, a bounded number of times."""
    for _ in range(attempts - 1):
        try:
            return connector.erase(subject, "k")
        except TransientError:
            time.sleep(0.5)
    return connector.erase(subject, "k")


# --- settings ------------------------------------------------------------------------------------------------------


def test_catalogue_entry_builds_a_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, "http://127.0.0.1:9")
    spec = SystemSpec.model_validate(yaml.safe_load(CATALOGUE_ENTRY))
    with build_connector(spec.connector, spec.name, spec.connector_settings()) as connector:
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
    # the owner's properties, change data feed included: the merge writes the deleted rows into change-data files
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options, configuration=OWNER_PROPERTIES)
    write_table(lake.uri("lake/by_user"), EVENT_ROWS, lake.options, partition_by=["user_id"])
    write_table(lake.uri("lake/signups"), SIGNUP_ROWS, lake.options, key_column="email", commits=2)
    # a concurrent writer has written its file but not committed yet: no version names it, and it must survive
    in_flight_key = "lake/events/part-00009-in-flight.parquet"
    in_flight = parquet_of({"user_id": ["10", "11"], "seq": [0, 1]})
    lake.s3.put_object(Bucket=lake.bucket, Key=in_flight_key, Body=in_flight)
    paths = tuple(f"lake/{table}" for table in TABLES)
    before = {path: lake.files(path) for path in paths}
    states = {path: table_state(lake, path) for path in paths}
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
    assert len(set(outcome.deleted_keys)) == outcome.deleted  # a key per row deleted: counts and commitment agree
    assert {key.rsplit("#", 1)[0] for key in outcome.deleted_keys} == {
        *(f"{path}:{key}" for path in ("lake/events", "lake/by_user") for key in CHILD_IDS),
        f"lake/signups:{CHILD_EMAIL}",
    }
    assert key_counts(lake.uri("lake/events"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    assert key_counts(lake.uri("lake/by_user"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)
    assert key_counts(lake.uri("lake/signups"), lake.options, "email") == without(SIGNUP_ROWS, CHILD_EMAIL)
    assert set(outcome.facts) == {cut_fact(path) for path in paths} == {f"history_cut_before.lake.{t}" for t in TABLES}
    for path in paths:
        after = lake.files(path)
        assert byte_traces(after, CHILD_VALUES) == []
        assert parsed_traces(after, CHILD_VALUES) == []
        old_log = {name.partition("#")[0] for name in before[path] if "_delta_log/" in name}
        assert {name.partition("#")[0] for name in after} & old_log <= {f"{path}/_delta_log/_last_checkpoint"}
        assert log_names(lake, path) >= {f"{cut_version(outcome, path):020d}.checkpoint.parquet"}
        assert table_state(lake, path) == states[path]  # no property and no protocol changed
    assert lake.s3.get_object(Bucket=lake.bucket, Key=in_flight_key)["Body"].read() == in_flight

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
    version = cut_version(again, "lake/events")
    assert log_names(lake, "lake/events") == {
        f"{version:020d}.json",
        f"{version:020d}.checkpoint.parquet",
        "_last_checkpoint",
    }
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

    assert "deleting 1 old object versions under lake/events refused (AccessDenied)" in str(raised.value)
    assert key_counts(uri, options) == without(EVENT_ROWS, *CHILD_IDS)  # the rows themselves are gone


# --- Spark's log, orphans, deletion vectors, concurrency ------------------------------------------------------------


def test_spark_style_log_files_are_removed(lake: Lake, make_connector: MakeConnector) -> None:
    """Spark writes version checksums whose `allFiles[].stats` hold the key, multi-part and UUID-named checkpoints
    with sidecars, log compactions and staged commits: every one before the new checkpoint goes, so the table no
    longer ends `failed` for what delta-rs's own clean-up leaves."""
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    spark = add_spark_log(lake.s3, lake.bucket, "lake/events")
    before = lake.files("lake/events")
    for kind in ("crc", "multi_part", "compacted", "sidecar", "staged"):
        assert any(name.startswith(spark[kind] + "#") for name in parsed_traces(before, CHILD_IDS)), kind
    connector = make_connector(("lake/events", "user_id", "user_id"))

    outcome = connector.erase(SUBJECT, "k")

    verification = connector.verify(SUBJECT)
    assert verification.level is EvidenceLevel.VERIFIED_ABSENT, verification.remaining
    after = lake.files("lake/events")
    assert parsed_traces(after, CHILD_IDS) == [] and byte_traces(after, CHILD_IDS) == []
    remaining = {name.partition("#")[0] for name in after}
    assert not remaining & set(spark.values())
    version = cut_version(outcome, "lake/events")
    assert all((delta_log.version_of(name) or version) >= version for name in log_names(lake, "lake/events"))
    assert key_counts(lake.uri("lake/events"), lake.options) == without(EVENT_ROWS, *CHILD_IDS)


def test_log_file_names_follow_the_protocol() -> None:
    uuid_ = "3a0d65cd-4056-49b8-937b-95f9e3ee90e5"
    assert delta_log.version_of("00000000000000000007.json") == 7
    assert delta_log.version_of("00000000000000000007.crc") == 7
    assert delta_log.version_of("00000000000000000007.checkpoint.parquet") == 7
    assert delta_log.version_of("00000000000000000007.checkpoint.0000000001.0000000003.parquet") == 7
    assert delta_log.version_of(f"00000000000000000007.checkpoint.{uuid_}.json") == 7
    assert delta_log.version_of(f"00000000000000000007.checkpoint.{uuid_}.parquet") == 7
    assert delta_log.version_of("00000000000000000004.00000000000000000009.compacted.json") == 4
    assert delta_log.version_of(f"_staged_commits/00000000000000000007.{uuid_}.json") == 7
    for unversioned in ("_last_checkpoint", f"_sidecars/{uuid_}.parquet", "7.json", "00000000000000000007.json.tmp"):
        assert delta_log.version_of(unversioned) is None
    assert delta_log.is_sidecar(f"_sidecars/{uuid_}.parquet") and not delta_log.is_sidecar("_sidecars/a/b.parquet")


def test_an_unnamed_file_with_the_childs_rows_goes_only_past_the_safe_age(
    lake: Lake, make_connector: MakeConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file no commit names may be a writer's that has not committed yet: young, it stays (and verify says so);
    past `orphan_min_age_hours` it is an orphan and goes if it holds the child. Unnamed files without a trace stay
    whatever their age: they are the owner's."""
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    orphan_key, neighbour_key = "lake/events/part-00009-orphan.parquet", "lake/events/part-00010-other.parquet"
    lake.s3.put_object(Bucket=lake.bucket, Key=orphan_key, Body=parquet_of({"user_id": ["1", "u_1"], "seq": [0, 1]}))
    lake.s3.put_object(Bucket=lake.bucket, Key=neighbour_key, Body=parquet_of({"user_id": ["10"], "seq": [0]}))
    connector = make_connector(("lake/events", "user_id", "user_id"))

    connector.erase(SUBJECT, "k")
    young = connector.verify(SUBJECT)
    later = connectors.delta._now() + timedelta(hours=connector.settings.orphan_min_age_hours + 1)
    monkeypatch.setattr(connectors.delta, "_now", lambda: later)
    connector.erase(SUBJECT, "k")
    old = connector.verify(SUBJECT)

    assert young.level is EvidenceLevel.FAILED and young.remaining["lake/events:data_files"] == 1
    assert old.level is EvidenceLevel.VERIFIED_ABSENT, old.remaining
    remaining = {name.partition("#")[0] for name in lake.files("lake/events")}
    assert orphan_key not in remaining and neighbour_key in remaining


@pytest.mark.parametrize("age", [0, -1])
def test_the_safe_age_is_never_zero(age: int) -> None:
    table = {"uri": "s3://lake/events", "key_column": "user_id", "identifier": "user_id"}
    with pytest.raises(ValidationError):
        DeltaSettings.model_validate({"mapping": {"tables": [table]}, "orphan_min_age_hours": age})


def test_deletion_vector_table_is_erased_by_rewriting_and_keeps_live_vectors(
    lake: Lake, make_connector: MakeConnector
) -> None:
    """The child's live rows sit in a file whose vector hides a neighbour's deleted row; another file's vector is
    still needed by its live rows. The first file is rewritten without the child and without the hidden row; the
    other file and its vector stay, so no vacuum-like step deleted a referenced vector."""
    vectors = write_dv_table(
        lake.s3,
        lake.bucket,
        "lake/dv",
        [(["1", "10", "u_1", "100"], [1]), (["11", "12", "1 "], [1])],
    )
    connector = make_connector(("lake/dv", "user_id", "user_id"))
    assert connector.locate(SUBJECT).counts == {"lake/dv": 2}

    outcome = connector.erase(SUBJECT, "k")

    assert outcome.deleted == 2
    assert key_counts(lake.uri("lake/dv"), lake.options) == {"100": 1, "11": 1, "1 ": 1}
    verification = connector.verify(SUBJECT)
    assert verification.level is EvidenceLevel.VERIFIED_ABSENT, verification.remaining
    remaining = {name.partition("#")[0] for name in lake.files("lake/dv")}
    assert vectors[1] in remaining  # still referenced by a live file
    assert parsed_traces(lake.files("lake/dv"), CHILD_IDS) == []


def test_rows_hidden_by_a_deletion_vector_are_a_refusal_naming_the_operators_step(
    lake: Lake, make_connector: MakeConnector
) -> None:
    write_dv_table(lake.s3, lake.bucket, "lake/dv", [(["1", "10", "100"], [0])])  # the child's row is hidden
    connector = make_connector(("lake/dv", "user_id", "user_id"))
    assert not connector.locate(SUBJECT).found  # the live table no longer shows it

    with pytest.raises(TerminalError, match=r"REORG TABLE .* APPLY \(PURGE\)") as raised:
        connector.erase(SUBJECT, "k")

    assert "lake/dv: 1 data files" in str(raised.value)
    assert not any(value in str(raised.value) for value in ("u_1", CHILD_EMAIL, "'1'", '"1"'))
    assert connector.verify(SUBJECT).level is EvidenceLevel.FAILED


def test_concurrent_erasures_on_one_table_both_end_verified_absent(lake: Lake, make_connector: MakeConnector) -> None:
    """Two requests erase two subjects from one table at once: commit conflicts and files gone under the other's
    clean-up are transient, and each retried erase converges."""
    write_table(lake.uri("lake/events"), EVENT_ROWS, lake.options)
    add_spark_log(lake.s3, lake.bucket, "lake/events")
    subjects = (SUBJECT, Subject.of(user_id=["10", "11"]))
    connectors_ = [make_connector(("lake/events", "user_id", "user_id")) for _ in subjects]
    outcomes: list[Outcome] = []
    failures: list[BaseException] = []

    def run(connector: DeltaConnector, subject: Subject) -> None:
        try:
            outcomes.append(erase_retrying(connector, subject))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(connectors_, subjects, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == [] and len(outcomes) == 2
    for connector, subject in zip(connectors_, subjects, strict=True):
        verification = connector.verify(subject)
        assert verification.level is EvidenceLevel.VERIFIED_ABSENT, verification.remaining
    assert key_counts(lake.uri("lake/events"), lake.options) == without(EVENT_ROWS, *CHILD_IDS, "10", "11")


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
        # a file gone under another request's clean-up: erase again
        (OSError("Error performing GET http://h/b/k in 503.2ms - non-2xx status code: 404 Not Found"), TransientError),
        (DeltaError("Generic S3 error: <Code>NoSuchBucket</Code>"), TerminalError),
        (
            ClientError({"Error": {"Code": "NoSuchKey"}, "ResponseMetadata": {"HTTPStatusCode": 404}}, "GetObject"),
            TransientError,
        ),
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
