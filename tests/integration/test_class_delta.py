"""A class order over a Delta table: one MERGE per batch, then one clean-up of the table's files and log history for
the whole system, with a receipt of its own that the certificate commits to. The batch receipts claim only what the
MERGE showed. Look-alike neighbours (another case, another domain, just outside the class) keep every row."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from activities.class_order import clean_up_name
from domain.classes import batch_count
from erasure.class_intake import resolve_class, submit_class, validate_class
from erasure.export import export_bundle
from evidence.batch_receipt import clean_up_path
from evidence.dsse import Envelope
from evidence.verify import verify_bundle
from tests.connectors.delta_estate import key_counts, objects, parsed_traces, storage_options, write_table
from tests.integration.approval import approve
from tests.integration.conftest import Harness
from tests.integration.test_class_order import app_schema, catalogue, order, plant, remaining

__all__ = ["app_schema"]  # the fixture, used by name
CHILDREN = 60
EVENTS_BATCH = 20  # 3 batches: 3 MERGE commits, one clean-up
COMMITS = 3  # the table's own history before the order: 3 appends, a checkpoint after the second


def emails(groups: dict[str, list[int]]) -> tuple[list[str], list[str]]:
    """The children's addresses and their neighbours' (as plant() gives them, with look-alikes of the children's)."""
    children = [f"kid{uid}@example.org" for uid in groups["child"]]
    neighbours = [f"kid{1 + n}@example.org.uk" for n in range(20)] + [f"Kid{1 + n}@example.org" for n in range(20)]
    neighbours += [f"teen{n}@example.org" for n in range(20)] + [" kid1@example.org", "kid1@example.org "]
    return children, neighbours


def statement(envelope: bytes) -> dict[str, Any]:
    return dict(json.loads(Envelope.from_json(envelope).payload))


async def erase_class(
    harness: Harness, database_url: str, schema: str, moto_url: str, s3: Any, bucket: str, orphan: bool = False
) -> tuple[str, dict[str, Any], dict[str, list[int]], str, dict[str, str]]:
    """Plant the class and the table (with, if `orphan`, a young data file no commit names holding a child's rows,
    which the clean-up must leave: a writer may not have committed it yet), run the order to its certificate."""
    groups = plant(database_url, schema, CHILDREN)
    children, neighbours = emails(groups)
    s3.create_bucket(Bucket=bucket)
    uri, options = f"s3://{bucket}/lake/events", storage_options(moto_url)
    write_table(uri, {e: 2 for e in children + neighbours}, options, key_column="email", commits=COMMITS)
    if orphan:
        body = io.BytesIO()
        pq.write_table(pa.table({"email": children[:1], "seq": [0]}), body)
        s3.put_object(Bucket=bucket, Key="lake/events/part-00009-uncommitted.parquet", Body=body.getvalue())
    systems = catalogue(schema, 100)
    systems["systems"].append(
        {
            "name": "events",
            "connector": "delta",
            "category": "analytics",
            "identifiers": ["email"],
            "connection": {"endpoint_url_env": "ERASURE_S3_ENDPOINT", "allow_http": True},
            "mapping": {"tables": [{"uri": uri, "key_column": "email", "identifier": "email"}]},
            "retry": systems["systems"][0]["retry"],
            "batch_size": EVENTS_BATCH,
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
    return submission.request_id, status, groups, uri, options


async def test_a_class_on_delta_merges_per_batch_and_cleans_up_once(
    harness: Harness,
    database_url: str,
    app_schema: str,
    moto_url: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    request_id, status, groups, uri, options = await erase_class(
        harness, database_url, app_schema, moto_url, s3_client, bucket_name
    )
    children, neighbours = emails(groups)
    assert status["outcome"] == "complete"
    assert remaining(database_url, app_schema, groups["child"]) == 0
    # the rows: the children's are gone, every neighbour keeps both of its rows
    assert key_counts(uri, options, "email") == {e: 2 for e in neighbours}
    # the history: no object under the table holds a child's address, in a data file, a commit or a checkpoint
    assert parsed_traces(objects(s3_client, bucket_name, "lake/events/"), tuple(children)) == []
    batches = batch_count(CHILDREN, EVENTS_BATCH)
    # one commit per batch's MERGE and one empty commit before the one checkpoint: a clean-up per batch would add one
    # empty commit per batch (each MERGE commit records its keys in its predicate)
    assert DeltaTable(uri, storage_options=options).version() == (COMMITS - 1) + batches + 1

    logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
    cleaned = statement(logged[(clean_up_name("events"), "clean_up")])["predicate"]
    assert cleaned["action"] == "clean_up" and cleaned["evidence_level"] == "verified_absent"
    assert cleaned["locations"] == {
        "lake/events": {"before": None, "after": 0},
        "lake/events:data_files": {"before": None, "after": 0},
        "lake/events:log_files": {"before": None, "after": 0},
    }
    assert cleaned["vendor_facts"] == {"history_cut_before.lake.events": (COMMITS - 1) + batches + 1}
    for n in range(batches):  # a batch receipt claims the current version only: the clean-up claims the history
        batch = statement(logged[(f"events#{n:06d}", "erase")])["predicate"]
        assert batch["evidence_level"] == "verified_absent" and batch["key_count"] == 2 * EVENTS_BATCH
        assert batch["locations"] == {"lake/events": {"before": 2 * EVENTS_BATCH, "after": 0}}
        assert "clean-up" in batch["detail"]

    bundle = export_bundle(harness.services, request_id, tmp_path / "bundle.zip")
    assert clean_up_path("events") in bundle.receipts
    certificate = statement(bundle.certificate)
    assert clean_up_path("events") in {s["name"] for s in certificate["subject"]}
    assert certificate["predicate"]["class"]["clean_up"] == ["events"]
    assert verify_bundle(tmp_path / "bundle.zip", trusted_keys=[harness.services.tlog.signer.public_key]).outcome == (
        "complete"
    )


async def test_a_trace_the_clean_up_leaves_fails_the_system_whatever_its_batches_showed(
    harness: Harness,
    database_url: str,
    app_schema: str,
    moto_url: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    request_id, status, *_ = await erase_class(
        harness, database_url, app_schema, moto_url, s3_client, bucket_name, orphan=True
    )
    logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
    batches = [statement(logged[(f"events#{n:06d}", "erase")])["predicate"] for n in range(3)]
    assert {b["evidence_level"] for b in batches} == {"verified_absent"}  # the rows are gone from the table
    cleaned = statement(logged[(clean_up_name("events"), "clean_up")])["predicate"]
    assert cleaned["evidence_level"] == "failed"
    assert cleaned["locations"]["lake/events:data_files"] == {"before": None, "after": 1}
    assert status["outcome"] == "incomplete"  # the certificate takes the clean-up's level, not the batches'
    certificate = statement(logged[("*", "certificate")])["predicate"]
    assert {s["system"]: s["evidence_level"] for s in certificate["systems"]} == {
        "app_db": "verified_absent",
        "events": "failed",
    }
