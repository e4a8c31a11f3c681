"""`erasure shred`: an operator destroys a certified request's key now; the evidence still verifies."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from erasure.export import export_bundle
from evidence.verify import verify_bundle
from stores.vault import Vault, VaultSealed
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, plant


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


async def test_shred_now_destroys_the_key_and_the_bundle_still_verifies(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str, tmp_path: Path
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    async with harness.worker():
        submission = await harness.submit(court_order({"user_id": ["1"]}), catalogue(schema, bucket_name))
        request_id = submission.request_id
        await approve(harness.client, request_id)
        await harness.wait_certified(request_id)
        before = tmp_path / "before.zip"
        export_bundle(harness.services, request_id, before)

        env = harness.process_env()
        refused = await harness.cli(env, "shred", request_id)
        assert refused.returncode == 2 and "--yes-destroy-the-key" in refused.stderr  # the confirmation is required
        assert harness.services.vault.open(request_id, Vault.SUBJECT)

        shredded = await harness.cli(env, "shred", request_id, "--yes-destroy-the-key")
        assert shredded.returncode == 0, shredded.stderr
        assert "shredded" in shredded.stdout
        again = await harness.cli(env, "shred", request_id, "--yes-destroy-the-key")
        assert again.returncode == 1 and "Traceback" not in again.stderr
        assert again.stderr.count("\n") == 1 and "already shredded" in again.stderr
        listed = await harness.cli(env, "list", "--json")
        assert request_id in listed.stdout
        status = await harness.cli(env, "status", request_id, "--json")
        assert '"state": "closed"' in status.stdout

    record = harness.services.ledger.request(request_id)
    assert record is not None and record.state == "closed"
    with pytest.raises(VaultSealed):
        harness.services.vault.open(request_id, Vault.SUBJECT)
    events = harness.services.ledger.events(request_id)
    assert [(e.kind, e.detail) for e in events if e.kind == "shredded"] == [
        ("shredded", {"reason": "operator asked to shred now"})
    ]
    after = tmp_path / "after.zip"
    export_bundle(harness.services, request_id, after)
    key = [harness.services.tlog.signer.public_key]
    assert verify_bundle(after, trusted_keys=key).outcome == "complete"
    with zipfile.ZipFile(before) as first:
        previous = first.read("log/checkpoint.txt").decode()
    assert not verify_bundle(before, trusted_keys=key).shredded
    # the log grew by the shredding receipt, and only grew: the later bundle carries it and is consistent with the
    # earlier one
    report = verify_bundle(after, trusted_keys=key, previous_checkpoint=previous)
    assert (report.outcome, report.shredded) == ("complete", True)
