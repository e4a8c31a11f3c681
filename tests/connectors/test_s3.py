"""The s3 connector against moto's S3 server over HTTP: versions, delete markers, locks and neighbours."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from connectors.s3 import S3Connector, S3Settings
from domain.errors import TerminalError, TransientError
from domain.model import EvidenceLevel, Subject
from examples.estate import CHILD, NEIGHBOURS, S3_KEY_TEMPLATES, upload_keys

LOOK_ALIKES = {"uploads/1-old/x.mp4", "uploads/1.mp4", "avatars/1.jpg.bak", "uploads/10/clip-9.mp4"}


def all_keys(s3: Any, bucket: str) -> list[tuple[str, bool]]:
    """Every version and delete marker in the bucket, as (key, is_marker)."""
    listing = s3.list_object_versions(Bucket=bucket)
    return sorted(
        [(v["Key"], False) for v in listing.get("Versions", [])]
        + [(m["Key"], True) for m in listing.get("DeleteMarkers", [])]
    )


def is_hidden(s3: Any, bucket: str, key: str) -> bool:
    """The key's current entry is a delete marker: a GET without version id answers 404."""
    try:
        s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "NoSuchKey"
    return False


def survivors_intact(s3: Any, bucket: str) -> bool:
    keys = {k for k, _ in all_keys(s3, bucket)}
    return keys >= {k for p in NEIGHBOURS for k in upload_keys(p)} | LOOK_ALIKES


@pytest.fixture
def uploads(s3_client: Any, bucket_name: str, moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    s3_client.create_bucket(Bucket=bucket_name, ObjectLockEnabledForBucket=True)
    for person in (CHILD, *NEIGHBOURS):
        for key in upload_keys(person):
            s3_client.put_object(Bucket=bucket_name, Key=key, Body=b"video")
    # keys that share a prefix with the child's: must survive
    for key in LOOK_ALIKES:
        s3_client.put_object(Bucket=bucket_name, Key=key, Body=b"neighbour")
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_url)
    return bucket_name


def make_connector(*buckets: str, **mapping: Any) -> S3Connector:
    settings = S3Settings.model_validate(
        {
            "connection": {"endpoint_url_env": "TEST_S3_ENDPOINT"},
            "mapping": {"buckets": [{"bucket": b, "keys": S3_KEY_TEMPLATES} for b in buckets], **mapping},
        }
    )
    return S3Connector("uploads", settings)


def test_every_version_and_delete_marker_is_gone(s3_client: Any, uploads: str) -> None:
    key = "uploads/1/clip-0.mp4"
    s3_client.put_object(Bucket=uploads, Key=key, Body=b"v2")
    s3_client.put_object(Bucket=uploads, Key=key, Body=b"v3")
    s3_client.delete_object(Bucket=uploads, Key=key)  # a delete marker on top of three versions
    before = all_keys(s3_client, uploads)
    assert sum(1 for k, _ in before if k == key) == 4

    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    inventory = connector.locate(subject)
    assert inventory.total == 4 + 1 + 1 + 1  # clip-0 (3 versions + marker), clip-1, clip-2, avatar
    outcome = connector.erase(subject, "k")
    assert outcome.level is EvidenceLevel.VERIFIED_ABSENT
    assert outcome.deleted == inventory.total

    after = all_keys(s3_client, uploads)
    assert not [k for k, _ in after if k.startswith("uploads/1/") or k == "avatars/1.jpg"]
    expected_survivors = {k for p in NEIGHBOURS for k in upload_keys(p)} | {
        "uploads/1-old/x.mp4",
        "uploads/1.mp4",
        "avatars/1.jpg.bak",
        "uploads/10/clip-9.mp4",
    }
    assert {k for k, _ in after} == expected_survivors
    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT


def test_erase_twice_is_harmless(s3_client: Any, uploads: str) -> None:
    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    first = connector.erase(subject, "k")
    second = connector.erase(subject, "k")
    assert first.deleted == 4 and second.deleted == 0
    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT


def test_legal_hold_gives_blocked_never_success(s3_client: Any, uploads: str) -> None:
    head = s3_client.head_object(Bucket=uploads, Key="uploads/1/clip-1.mp4")
    s3_client.put_object_legal_hold(
        Bucket=uploads, Key="uploads/1/clip-1.mp4", VersionId=head["VersionId"], LegalHold={"Status": "ON"}
    )
    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    outcome = connector.erase(subject, "k")
    assert outcome.level is EvidenceLevel.BLOCKED
    assert (outcome.deleted, outcome.blocked) == (3, 1)
    verification = connector.verify(subject)
    assert verification.level is EvidenceLevel.BLOCKED
    assert verification.total_remaining == 2  # the held version, hidden under a delete marker put on top
    assert "1 under legal hold" in verification.detail
    assert is_hidden(s3_client, uploads, "uploads/1/clip-1.mp4")


def test_more_than_a_thousand_versions_are_deleted_in_batches(
    s3_client: Any, bucket_name: str, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_client.create_bucket(Bucket=bucket_name)
    s3_client.put_bucket_versioning(Bucket=bucket_name, VersioningConfiguration={"Status": "Enabled"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: s3_client.put_object(Bucket=bucket_name, Key=f"uploads/7/{n}", Body=b""), range(1201)))
    s3_client.put_object(Bucket=bucket_name, Key="uploads/77/keep", Body=b"")
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_url)
    connector = make_connector(bucket_name)
    batch_sizes: list[int] = []
    connector._client.meta.events.register(  # observe what goes on the wire: moto itself accepts any size
        "before-call.s3.DeleteObjects",
        lambda params, **_: batch_sizes.append(params["body"].count(b"<Object>")),
    )
    outcome = connector.erase(Subject.of(user_id=["7"]), "k")
    assert outcome.deleted == 1201
    assert batch_sizes == [1000, 201]
    assert [k for k, _ in all_keys(s3_client, bucket_name)] == ["uploads/77/keep"]


@pytest.mark.parametrize("value", ["'; DROP TABLE users; --", "*", "%", "1*", "1%"])
def test_hostile_values_are_literal_and_touch_nothing(s3_client: Any, uploads: str, value: str) -> None:
    before = all_keys(s3_client, uploads)
    connector = make_connector(uploads)
    subject = Subject.of(user_id=[value])
    assert connector.locate(subject).total == 0
    assert connector.erase(subject, "k").deleted == 0
    assert all_keys(s3_client, uploads) == before
    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT


@pytest.mark.parametrize("value", ["../", "..", ".", "", "1/../10", "10/", "a\nb"])
def test_values_that_are_not_one_path_segment_are_refused(s3_client: Any, uploads: str, value: str) -> None:
    before = all_keys(s3_client, uploads)
    connector = make_connector(uploads)
    subject = Subject.of(user_id=[value, "1"])
    connector.erase(subject, "k")
    after = all_keys(s3_client, uploads)
    # only the child's own objects went
    assert {k for k, _ in before} - {k for k, _ in after} == set(upload_keys(CHILD))
    verification = connector.verify(subject)
    assert verification.level is EvidenceLevel.FAILED
    assert "cannot be used in key templates" in verification.detail


@pytest.mark.parametrize("identifiers", [{"email": ["child@example.org"]}, {"user_id": ["../", "a/b"]}])
def test_a_subject_no_template_can_hold_is_terminal_never_absent(
    s3_client: Any, uploads: str, identifiers: dict[str, list[str]]
) -> None:
    before = all_keys(s3_client, uploads)
    connector = make_connector(uploads)
    subject = Subject.of(**identifiers)
    for step in (connector.locate, connector.verify, lambda s: connector.erase(s, "k")):
        with pytest.raises(TerminalError, match="nothing would be searched"):
            step(subject)
    assert all_keys(s3_client, uploads) == before


def test_missing_bucket_is_terminal(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_S3_ENDPOINT", moto_url)
    with pytest.raises(TerminalError, match="NoSuchBucket") as info:
        make_connector("no-such-bucket-here").locate(Subject.of(user_id=["1042"]))
    assert "1042" not in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        "uploads/{user_id}{email}/",
        "uploads/",
        "uploads/{nope}/",
        "{user_id}-{user_id}/",
        "{{user_id}}/",
        "a/{user_id}/{email}",
        # each renders to a constant key: the search would cover nothing of the subject
        "uploads/{user_id:}/",
        "uploads/{user_id!s}/",
        "uploads/{user_id[0]}/",
        "uploads/{user_id.x}/",
    ],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="key template"):
        S3Settings.model_validate({"mapping": {"buckets": [{"bucket": "abc", "keys": [template]}]}})


def test_a_template_without_trailing_slash_is_one_exact_key(s3_client: Any, uploads: str) -> None:
    connector = make_connector(uploads)
    connector.erase(Subject.of(user_id=["1"]), "k")
    assert ("avatars/1.jpg.bak", False) in all_keys(s3_client, uploads)


def test_an_unfinished_upload_is_aborted_even_where_no_object_is_left(s3_client: Any, uploads: str) -> None:
    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    connector.erase(subject, "k")  # the child's objects are gone; then an upload begun earlier is found
    s3_client.create_multipart_upload(Bucket=uploads, Key="uploads/1/draft.mp4")
    s3_client.create_multipart_upload(Bucket=uploads, Key="uploads/10/draft.mp4")  # a neighbour's: must stay
    assert connector.verify(subject).remaining["multipart_uploads"] == 1

    connector.erase(subject, "k")

    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT
    left = s3_client.list_multipart_uploads(Bucket=uploads).get("Uploads", [])
    assert [u["Key"] for u in left] == ["uploads/10/draft.mp4"]


# -- holds, retention and order (vendors.md: deleting a delete marker undeletes the object) ------------------------


def hold(s3: Any, bucket: str, key: str, version_id: str) -> None:
    s3.put_object_legal_hold(Bucket=bucket, Key=key, VersionId=version_id, LegalHold={"Status": "ON"})


def retain(s3: Any, bucket: str, key: str, version_id: str, mode: str, until: datetime) -> None:
    s3.put_object_retention(
        Bucket=bucket, Key=key, VersionId=version_id, Retention={"Mode": mode, "RetainUntilDate": until}
    )


def test_a_held_version_under_a_delete_marker_stays_hidden(s3_client: Any, uploads: str) -> None:
    key = "uploads/1/clip-0.mp4"
    held = s3_client.head_object(Bucket=uploads, Key=key)["VersionId"]
    hold(s3_client, uploads, key, held)
    s3_client.put_object(Bucket=uploads, Key=key, Body=b"v2")
    s3_client.delete_object(Bucket=uploads, Key=key)  # the application hid the upload

    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    outcome = connector.erase(subject, "k")

    assert outcome.level is EvidenceLevel.BLOCKED and outcome.blocked == 1
    assert is_hidden(s3_client, uploads, key)  # the marker stayed on top: the held version is not served again
    left = s3_client.list_object_versions(Bucket=uploads, Prefix=key)
    assert [v["VersionId"] for v in left.get("Versions", [])] == [held]  # v2 went, the held version stays
    assert [m["IsLatest"] for m in left.get("DeleteMarkers", [])] == [True]
    assert connector.verify(subject).level is EvidenceLevel.BLOCKED
    assert survivors_intact(s3_client, uploads)


def test_a_locked_version_never_becomes_current(s3_client: Any, uploads: str) -> None:
    key = "uploads/1/clip-1.mp4"
    older = s3_client.head_object(Bucket=uploads, Key=key)["VersionId"]
    retain(s3_client, uploads, key, older, "COMPLIANCE", datetime(2099, 1, 1, tzinfo=UTC))
    s3_client.put_object(Bucket=uploads, Key=key, Body=b"newer, unlocked")  # deleting it alone would expose `older`

    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])
    outcome = connector.erase(subject, "k")

    assert outcome.level is EvidenceLevel.BLOCKED
    assert is_hidden(s3_client, uploads, key)
    verification = connector.verify(subject)
    assert verification.level is EvidenceLevel.BLOCKED
    assert "1 under COMPLIANCE retention until 2099-01-01T00:00:00+00:00" in verification.detail
    assert "CloudTrail" in verification.detail
    assert survivors_intact(s3_client, uploads)


def test_an_expired_retention_is_not_a_lock(s3_client: Any, uploads: str) -> None:
    key = "uploads/1/clip-2.mp4"
    expired = datetime.now(UTC) - timedelta(days=1)
    retain(s3_client, uploads, key, s3_client.head_object(Bucket=uploads, Key=key)["VersionId"], "COMPLIANCE", expired)
    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])

    outcome = connector.erase(subject, "k")
    assert (outcome.level, outcome.blocked) == (EvidenceLevel.VERIFIED_ABSENT, 0)
    assert not [k for k, _ in all_keys(s3_client, uploads) if k.startswith("uploads/1/")]

    # a version left behind (written again after the erase) under an expired retention is not `blocked`: it is data
    # that remains, and a person must act
    again = s3_client.put_object(Bucket=uploads, Key=key, Body=b"again")["VersionId"]
    retain(s3_client, uploads, key, again, "GOVERNANCE", expired)
    verification = connector.verify(subject)
    assert verification.level is EvidenceLevel.FAILED
    assert "1 object(s) remain" in verification.detail
    assert survivors_intact(s3_client, uploads)


# -- replication, MFA delete, multipart uploads ---------------------------------------------------------------------


def replicate(s3: Any, source: str, rules: list[tuple[str, str]]) -> None:
    """Replication rules (key prefix, destination bucket). moto stores them and copies nothing: the test plants the
    copies replication would have made."""
    s3.put_bucket_replication(
        Bucket=source,
        ReplicationConfiguration={
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [
                {
                    "ID": f"rule-{n}",
                    "Status": "Enabled",
                    "Priority": n,
                    "Filter": {"Prefix": prefix},
                    "DeleteMarkerReplication": {"Status": "Disabled"},
                    "Destination": {"Bucket": f"arn:aws:s3:::{destination}"},
                }
                for n, (prefix, destination) in enumerate(rules, start=1)
            ],
        },
    )


def test_replicas_are_erased_where_mapped_and_named_where_not(s3_client: Any, uploads: str) -> None:
    mapped, unmapped = f"{uploads}-dr", f"{uploads}-eu"
    for replica in (mapped, unmapped):
        s3_client.create_bucket(Bucket=replica)
        s3_client.put_bucket_versioning(Bucket=replica, VersioningConfiguration={"Status": "Enabled"})
        for person in (CHILD, *NEIGHBOURS):
            for key in upload_keys(person):
                s3_client.put_object(Bucket=replica, Key=key, Body=b"replica")
    # moto answers every rule's filter as Prefix "" (whatever was put), so a rule's prefix cannot be shown here
    replicate(s3_client, uploads, [("", mapped), ("uploads/", unmapped)])
    unmapped_before = all_keys(s3_client, unmapped)

    connector = make_connector(uploads, mapped)
    subject = Subject.of(user_id=["1"])
    outcome = connector.erase(subject, "k")

    assert not [k for k, _ in all_keys(s3_client, mapped) if k.startswith("uploads/1/") or k == "avatars/1.jpg"]
    assert {k for k, _ in all_keys(s3_client, mapped)} == {k for p in NEIGHBOURS for k in upload_keys(p)}
    assert all_keys(s3_client, unmapped) == unmapped_before  # never touched: it is not this system's
    assert outcome.level is EvidenceLevel.FAILED
    assert f"bucket(s) {unmapped}, which this system does not map" in outcome.detail
    verification = connector.verify(subject)
    assert verification.level is EvidenceLevel.FAILED and "residual copies" in verification.detail
    assert verification.total_remaining == 0  # what the system maps is clean; the residue is named, not counted
    assert survivors_intact(s3_client, uploads)


def test_mfa_delete_is_a_clear_terminal_refusal(s3_client: Any, uploads: str) -> None:
    connector = make_connector(uploads)
    # moto accepts MFADelete but neither reports nor enforces it: answer GetBucketVersioning as AWS does for such a
    # bucket (the documented `MFADelete: Enabled` field); everything else is moto's
    connector._client.meta.events.register(
        "after-call.s3.GetBucketVersioning", lambda parsed, **_: parsed.update(MFADelete="Enabled")
    )
    before = all_keys(s3_client, uploads)
    with pytest.raises(TerminalError, match=f"bucket {uploads} has MFA delete enabled") as raised:
        connector.erase(Subject.of(user_id=["1"]), "k")
    assert "x-amz-mfa" in str(raised.value)
    assert all_keys(s3_client, uploads) == before  # refused before anything was deleted


def test_an_aborted_upload_is_confirmed_by_list_parts(s3_client: Any, uploads: str) -> None:
    child = s3_client.create_multipart_upload(Bucket=uploads, Key="uploads/1/draft.mp4")["UploadId"]
    s3_client.upload_part(Bucket=uploads, Key="uploads/1/draft.mp4", UploadId=child, PartNumber=1, Body=b"part")
    neighbour = s3_client.create_multipart_upload(Bucket=uploads, Key="uploads/10/draft.mp4")["UploadId"]
    connector = make_connector(uploads)
    subject = Subject.of(user_id=["1"])

    # S3 may acknowledge an abort while parts are still arriving and keep the upload: ListParts still answers
    acknowledged_only = AWSResponse("http://moto/", 204, {}, None)
    connector._client.meta.events.register(
        "before-call.s3.AbortMultipartUpload", lambda **_: (acknowledged_only, {}), unique_id="acknowledge-only"
    )
    with pytest.raises(TransientError, match="1 aborted multipart upload"):
        connector.erase(subject, "k")
    assert s3_client.list_parts(Bucket=uploads, Key="uploads/1/draft.mp4", UploadId=child)["Parts"]

    connector._client.meta.events.unregister("before-call.s3.AbortMultipartUpload", unique_id="acknowledge-only")
    connector.erase(subject, "k")  # the retry repeats the abort, and ListParts confirms it
    with pytest.raises(ClientError, match="NoSuchUpload"):
        s3_client.list_parts(Bucket=uploads, Key="uploads/1/draft.mp4", UploadId=child)
    assert s3_client.list_parts(Bucket=uploads, Key="uploads/10/draft.mp4", UploadId=neighbour)["UploadId"]
    assert connector.verify(subject).level is EvidenceLevel.VERIFIED_ABSENT
    assert survivors_intact(s3_client, uploads)
