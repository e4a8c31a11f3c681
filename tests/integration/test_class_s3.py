"""A class order over the app database and a versioned S3 bucket, each cut into batches of its own size: every
version of the children's objects goes; the neighbours' (just outside the class, look-alike ids and keys) all stay.

moto lists a bucket in O(bucket) per call, so the class is small (60 children, batches of 25 on S3)."""

from __future__ import annotations

from typing import Any

import pytest

from activities.class_order import tlog_name
from domain.classes import batch_count
from erasure.class_intake import resolve_class, submit_class, validate_class
from tests.integration.approval import approve
from tests.integration.conftest import Harness
from tests.integration.test_class_order import app_schema, catalogue, order, plant, remaining

__all__ = ["app_schema"]  # the fixture, used by name
CHILDREN = 60
UPLOADS_BATCH = 25  # subjects per batch on S3 (the connector takes up to 1,000): 3 batches, the last short


def plant_objects(s3: Any, bucket: str, groups: dict[str, list[int]]) -> set[str]:
    """One upload per child, two versions of an avatar for some; every neighbour's upload and avatar, and keys that
    look like a child's but lie outside the catalogue's key templates. Returns the neighbours' keys."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for uid in groups["child"]:
        s3.put_object(Bucket=bucket, Key=f"uploads/{uid}/clip.mp4", Body=b"video")
    for uid in groups["child"][:10]:
        for body in (b"v1", b"v2"):
            s3.put_object(Bucket=bucket, Key=f"avatars/{uid}.jpg", Body=body)
    neighbours = set()
    for name in ("birthday_on_cutoff", "other_tenant", "older"):
        for uid in groups[name]:
            neighbours |= {f"uploads/{uid}/clip.mp4", f"avatars/{uid}.jpg"}
    for uid in groups["child"][:5]:  # a template names `uploads/1/` and `avatars/1.jpg`, never these
        neighbours |= {f"uploads/{uid}", f"uploads/{uid}x/clip.mp4", f"avatars/{uid}.jpg.old", f"avatars/0{uid}.jpg"}
    for key in neighbours:
        s3.put_object(Bucket=bucket, Key=key, Body=b"theirs")
    return neighbours


def all_versions(s3: Any, bucket: str) -> set[str]:
    keys = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        keys.update(v["Key"] for v in page.get("Versions", []) + page.get("DeleteMarkers", []))
    return keys


async def test_a_class_is_erased_from_s3_in_batches_of_its_own_size(
    harness: Harness,
    database_url: str,
    app_schema: str,
    moto_url: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    groups = plant(database_url, app_schema, CHILDREN)
    neighbours = plant_objects(s3_client, bucket_name, groups)
    systems = catalogue(app_schema, 100)
    systems["systems"].append(
        {
            "name": "uploads",
            "connector": "s3",
            "category": "storage",
            "identifiers": ["user_id"],
            "connection": {"endpoint_url_env": "ERASURE_S3_ENDPOINT"},
            "mapping": {"buckets": [{"bucket": bucket_name, "keys": ["uploads/{user_id}/", "avatars/{user_id}.jpg"]}]},
            "retry": systems["systems"][0]["retry"],
            "batch_size": UPLOADS_BATCH,
        }
    )
    order_path = harness.write_yaml("class-order.yaml", order())
    parsed, declared = validate_class(order_path, harness.write_yaml("systems.yaml", systems))
    async with harness.worker():
        submission = await submit_class(
            harness.services, harness.client, parsed, declared, resolve_class(order_path, parsed, declared)
        )
        await approve(harness.client, submission.request_id)
        status = await harness.wait_certified(submission.request_id, timeout_s=240)
    assert submission.subjects == CHILDREN
    assert status["outcome"] == "complete"
    assert all_versions(s3_client, bucket_name) == neighbours  # every version of the children's objects is gone
    assert remaining(database_url, app_schema, groups["child"]) == 0

    batches = [b for b in harness.services.classes.batches(submission.request_id) if b.system == "uploads"]
    assert len(batches) == batch_count(CHILDREN, UPLOADS_BATCH)
    assert [b.subjects for b in batches] == [25, 25, 10]
    assert sum(b.records_before or 0 for b in batches) == CHILDREN + 10 * 2  # object versions found and deleted
    assert all(b.records_after == 0 and b.evidence_level == "verified_absent" for b in batches)
    logged = {r.system for r in harness.services.tlog.receipts(submission.request_id) if r.action == "erase"}
    assert {tlog_name("uploads", n) for n in range(len(batches))} <= logged
