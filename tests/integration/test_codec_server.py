"""The codec server with the real Temporal CLI: operators with the token read payloads; others see ciphertext."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest

from erasure.codec_server import create_app
from stores.codec import CodecKeys
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order, tool
from tests.integration.estate import catalogue, plant
from tests.servers import serve_asgi


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


def show(harness: Harness, workflow_id: str, *codec: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            tool("temporal"),
            "workflow",
            "show",
            "-w",
            workflow_id,
            "--address",
            harness.config.temporal_address,
            "--output",
            "json",
            *codec,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_the_temporal_cli_decodes_through_the_codec_server_only_with_the_token(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    async with harness.worker():
        submission = await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
        await approve(harness.client, submission.request_id)
        await harness.wait_certified(submission.request_id)
    codec = CodecKeys(harness.config.home / "keys").codec()
    with serve_asgi(create_app(codec, "operator-token", [])) as url:
        plain = show(harness, submission.request_id)
        decoded = show(harness, submission.request_id, "--codec-endpoint", url, "--codec-auth", "Bearer operator-token")
        refused = show(harness, submission.request_id, "--codec-endpoint", url, "--codec-auth", "Bearer guess")

    assert plain.returncode == 0 and decoded.returncode == 0, plain.stderr + decoded.stderr
    payload = first_input(decoded.stdout)
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(payload["data"])) == {"request_id": submission.request_id}
    assert base64.b64decode(first_input(plain.stdout)["metadata"]["encoding"]) == b"binary/encrypted"
    assert refused.returncode != 0 or (
        base64.b64decode(first_input(refused.stdout)["metadata"]["encoding"]) == b"binary/encrypted"
    )


def first_input(history_json: str) -> dict[str, Any]:
    started = json.loads(history_json)["events"][0]["workflowExecutionStartedEventAttributes"]
    payload: dict[str, Any] = started["input"]["payloads"][0]
    return payload
