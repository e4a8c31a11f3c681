"""A synchronous store's erasure costs the Temporal server few round trips: locate, erase and verify run as one
activity (each step still recorded), then the receipt; the outcome and the counts are those of three steps."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType

from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, plant


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


async def test_a_synchronous_store_is_erased_in_two_activities_with_the_same_evidence(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    status = await harness.run(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))

    assert status["outcome"] == "complete"
    systems = {s["system"]: s for s in status["systems"]}
    assert (systems["app_db"]["evidence_level"], systems["app_db"]["records_before"]) == ("verified_absent", 18)
    assert (systems["uploads"]["evidence_level"], systems["uploads"]["records_before"]) == ("verified_absent", 8)
    for system in ("app_db", "uploads"):
        handle = harness.client.get_workflow_handle(f"{status['request_id']}/{system}")
        history = await handle.fetch_history()
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ]
        assert scheduled == ["erasure.erase_verified", "erasure.record_receipt"]
