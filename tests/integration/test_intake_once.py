"""Through the CLI: an `erasure submit` killed between storing the request and starting its workflow leaves no
orphan (the next worker starts it), `status` and `shred` answer in one line meanwhile, and the same order submitted
again while its request is open answers with that request instead of erasing twice."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.service import RPCError, RPCStatusCode

from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, plant


@pytest.fixture
def files(harness: Harness, schema: str, bucket_name: str, tmp_path: Path) -> tuple[str, str]:
    order, systems = tmp_path / "order.yaml", tmp_path / "systems.yaml"
    order.write_text(yaml.safe_dump(court_order({"user_id": ["1"]})))
    systems.write_text(yaml.safe_dump(catalogue(schema, bucket_name)))
    return str(order), str(systems)


def one_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return str(lines[0])


async def test_a_submission_killed_before_its_workflow_started_is_started_by_the_next_worker(
    harness: Harness,
    files: tuple[str, str],
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    holds = tmp_path / "holds"
    holds.mkdir()
    env = {
        **harness.process_env(tmp_path / "home"),
        "APP_DATABASE_URL": database_url,
        "ERASURE_S3_ENDPOINT": moto_url,
        "ERASURE_TEST_HOLD_DIR": str(holds),
    }
    (holds / "intake.stored.hold").touch()
    order, systems = files
    submitting = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erasure.cli", "submit", order, "--catalogue", systems, env=env
    )
    for _ in range(600):
        if (holds / "intake.stored.reached").exists():
            break
        await asyncio.sleep(0.1)
    submitting.send_signal(signal.SIGKILL)
    await submitting.wait()
    (holds / "intake.stored.hold").unlink()

    # the orphan: stored, its identifiers sealed in the vault, and no workflow
    (record,) = harness.services.ledger.requests()
    request_id = record.request_id
    assert record.state == "received"
    assert harness.services.vault.subject(request_id).kinds()
    with pytest.raises(RPCError) as missing:
        await harness.client.get_workflow_handle(request_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND

    shown = await harness.cli(env, "status", request_id)
    assert shown.returncode == 0 and "state received" in shown.stdout, shown.stderr
    refused = await harness.cli(env, "shred", request_id, "--yes-destroy-the-key")
    assert refused.returncode == 1
    assert one_line(refused) == "error: cannot shred while the request is received: the certificate comes first"

    worker = harness.start_worker(env)
    try:
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id, timeout_s=120)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert (status["state"], status["outcome"]) == ("certified", "complete")
    assert len(harness.services.ledger.requests()) == 1


async def test_the_same_order_again_while_its_request_is_open_answers_with_that_request(
    harness: Harness, files: tuple[str, str], tmp_path: Path
) -> None:
    env = harness.process_env(tmp_path / "home")
    order, systems = files
    first = await harness.cli(env, "submit", order, "--catalogue", systems)
    assert first.returncode == 0, first.stderr
    request_id = first.stdout.strip()
    # the thing whose duplicate is looked for exists: a stored request with its workflow started
    assert [r.request_id for r in harness.services.ledger.requests()] == [request_id]
    assert (await harness.client.get_workflow_handle(request_id).describe()).id == request_id

    again = await harness.cli(env, "submit", order, "--catalogue", systems)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == request_id
    assert "still open" in one_line(again)
    assert [r.request_id for r in harness.services.ledger.requests()] == [request_id]

    forced = await harness.cli(env, "submit", order, "--catalogue", systems, "--force-new")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() not in ("", request_id)
    assert len(harness.services.ledger.requests()) == 2
    for made in harness.services.ledger.requests():  # no worker polls this queue: end them
        await harness.client.get_workflow_handle(made.request_id).terminate("test finished")
