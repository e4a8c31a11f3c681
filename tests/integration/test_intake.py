"""Intake stores a request and starts its workflow, or leaves nothing behind."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from domain.errors import ErasureError
from erasure.intake import submit, validate
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue as estate_catalogue


async def test_a_request_whose_workflow_cannot_start_leaves_no_row_behind(harness: Harness) -> None:
    order, catalogue = validate(
        harness.write_yaml("order.yaml", court_order({"user_id": ["1"], "email": ["mia@example.org"]})),
        harness.write_yaml("systems.yaml", estate_catalogue("app", "b-unused")),
    )
    nowhere = Client(harness.client.service_client, namespace="no-such-namespace")

    with pytest.raises(ErasureError, match="namespace no-such-namespace .not_found.: nothing was stored"):
        await submit(harness.services, nowhere, order, catalogue)

    with harness.services.pool.connection() as conn:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            for table in ("requests", "subject_pseudonyms", "system_tasks", "events", "vault_keys", "vault_items")
        }
    assert counts == dict.fromkeys(counts, 0)
