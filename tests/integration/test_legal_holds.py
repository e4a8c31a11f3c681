"""Legal holds on the time-skipping server: a hold placed mid-run stops the systems not yet erased (restricted where
the system can restrict, else not processed), the request is on hold with a partial certificate naming Art. 17(3)(e)
and the case; the release lets the same workflow finish, and a new certificate supersedes the partial one."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.testing import WorkflowEnvironment

from activities.contracts import RequestResult
from domain.model import Subject
from domain.states import RequestState
from erasure.config import Config
from erasure.export import export_bundle
from evidence.dsse import Envelope
from evidence.statement import parse_statement
from evidence.verify import verify_bundle
from examples.estate import CHILD, NEIGHBOURS, count_rows, create_app_schema, seed_people
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order, open_harness
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys
from tests.integration.test_replay import RECORDING, save
from tests.servers import skipped_to_the_end

CASE = "KB-2026-000777"
CHILD_ROWS = {"users": 4, "videos": 9, "comments": 12, "follows": 12, "device_tokens": 5}


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


def estate(database_url: str, schema: str, s3: Any, bucket: str) -> dict[str, Any]:
    """app_db (erased first), archive_db (postgres: no restriction) and uploads (S3 with Object Lock), one at a time."""
    plant(database_url, schema, s3, bucket, object_lock=True)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, f"{schema}_archive")
        seed_people(conn, f"{schema}_archive", [CHILD, *NEIGHBOURS])
    systems = catalogue(schema, bucket)
    app_db, uploads = systems["systems"]
    archive = {**app_db, "name": "archive_db", "mapping": {**app_db["mapping"], "schema": f"{schema}_archive"}}
    return {"max_concurrency": 1, "systems": [app_db, archive, uploads]}


def statement(envelope: bytes) -> dict[str, Any]:
    return parse_statement(Envelope.from_json(envelope).payload)


async def state_of(harness: Harness, request_id: str, wanted: RequestState) -> None:
    for _ in range(600):
        record = harness.services.ledger.request(request_id)
        if record is not None and record.state == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"request never became {wanted}: {record.state if record else None}")


async def reached(point: Path) -> None:
    for _ in range(600):
        if point.exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the worker never reached {point.name}")


async def test_a_hold_placed_mid_run_stops_the_systems_not_yet_erased_and_its_release_finishes_the_same_workflow(
    config: Config,
    time_skipping: WorkflowEnvironment,
    tmp_path: Path,
    database_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
) -> None:
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    (pauses / "erased.app_db.hold").touch()  # the worker stops right after app_db's erasure
    systems = estate(database_url, schema, s3_client, bucket_name)
    async with open_harness(config.with_(hold_dir=pauses), time_skipping, tmp_path) as harness:
        signer = harness.services.tlog.signer.public_key
        env = {**harness.process_env(), "ERASURE_OPERATOR": "legal-officer-1"}
        async with harness.worker():
            request_id = (await harness.submit(court_order({"user_id": ["1"]}), systems)).request_id
            await approve(harness.client, request_id)
            handle = harness.client.get_workflow_handle(request_id, result_type=RequestResult)
            await reached(pauses / "erased.app_db.reached")
            placed = await harness.cli(env, "hold", "place", "--case", CASE, "--request", request_id)
            assert placed.returncode == 0, placed.stderr
            hold_id = placed.stdout.split()[1]
            (pauses / "erased.app_db.hold").unlink()
            await state_of(harness, request_id, RequestState.ON_HOLD)

            # on hold: app_db erased with its receipt; archive_db and uploads untouched, uploads under legal hold
            tasks = {t.system: t for t in harness.services.ledger.tasks(request_id)}
            assert {s: (t.state, t.evidence_level) for s, t in tasks.items()} == {
                "app_db": ("done", "verified_absent"),
                "archive_db": ("on_hold", "blocked"),
                "uploads": ("on_hold", "blocked"),
            }
            assert tasks["archive_db"].detail.startswith("not processed: legal hold (case KB-2026-000777)")
            assert tasks["uploads"].detail.startswith("restricted: legal hold (case KB-2026-000777)")
            with psycopg.connect(database_url) as conn:
                assert count_rows(conn, schema)["users"] == 3
                assert count_rows(conn, f"{schema}_archive") == CHILD_ROWS
            versions = s3_client.list_object_versions(Bucket=bucket_name, Prefix="avatars/1.jpg")["Versions"]
            legal = s3_client.get_object_legal_hold(
                Bucket=bucket_name, Key="avatars/1.jpg", VersionId=versions[0]["VersionId"]
            )
            assert legal["LegalHold"]["Status"] == "ON"
            logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
            partial = statement(logged[("*", "certificate")])["predicate"]
            assert partial["outcome"] == "partial"
            held_lines = [e for e in partial["exceptions"] if "legal hold" in e]
            assert len(held_lines) == 2 and all(CASE in e and "Art. 17(3)(e)" in e for e in held_lines), held_lines
            assert statement(logged[("uploads", "hold")])["predicate"]["action"] == "hold"
            partial_bundle = export_bundle(harness.services, request_id, tmp_path / "partial.zip")
            assert verify_bundle(tmp_path / "partial.zip", trusted_keys=[signer]).outcome == "partial"
            first_size = harness.services.tlog.size()

            released = await harness.cli(env, "hold", "release", hold_id)
            assert released.returncode == 0, released.stderr
            async with harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                result = await skipped_to_the_end(handle)  # the same workflow: its run ends after the grace period
            if RECORDING:
                save("request_with_hold", await handle.fetch_history(), config.home)
                resumed = harness.client.get_workflow_handle(f"{request_id}/uploads/after-hold-1")
                save("system_after_hold", await resumed.fetch_history(), config.home)

            assert result.outcome == "complete"
            assert {s.system: (s.level, s.held) for s in result.systems} == {
                "app_db": ("verified_absent", False),
                "archive_db": ("verified_absent", False),
                "uploads": ("verified_absent", False),
            }
            with psycopg.connect(database_url) as conn:
                assert count_rows(conn, f"{schema}_archive") == {
                    "users": 3,
                    "videos": 6,
                    "comments": 6,
                    "follows": 6,
                    "device_tokens": 3,
                }
            assert surviving_keys(s3_client, bucket_name) == neighbour_keys()
            logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
            final = statement(logged[("*", "certificate.2")])["predicate"]
            assert final["outcome"] == "complete"
            assert final["supersedes"] == hashlib.sha256(logged[("*", "certificate")]).hexdigest()
            assert not [e for e in final["exceptions"] if "legal hold" in e]
            events = harness.services.ledger.events(request_id)
            kinds = {e.kind: e.detail for e in events if e.kind.startswith("hold_")}
            assert kinds["hold_placed"]["operator"] == kinds["hold_released"]["operator"] == "legal-officer-1"
            assert kinds["hold_placed"]["case"] == CASE
            assert harness.services.tlog.size() > first_size

        # the bundle holds the current certificate; an auditor holding the partial one's checkpoint sees the log
        # grew consistently from it, and the verifier says which certificate is current
        export_bundle(harness.services, request_id, tmp_path / "final.zip")
        report = verify_bundle(
            tmp_path / "final.zip", trusted_keys=[signer], previous_checkpoint=partial_bundle.checkpoint
        )
        assert report.outcome == "complete"
        assert report.supersedes == hashlib.sha256(partial_bundle.certificate).hexdigest()
        assert any("consistent with the previous checkpoint" in check for check in report.checks)


async def test_a_hold_placed_before_a_request_applies_to_it_by_pseudonym_on_its_systems_only(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)  # no Object Lock: S3 cannot restrict these objects
    env = {**harness.process_env(), "ERASURE_OPERATOR": "legal-officer-1"}
    held = harness.tmp / "subject.yaml"
    held.write_text(f"email: ['{CHILD.email}']\n")
    held.chmod(0o600)
    placed = await harness.cli(
        env, "hold", "place", "--case", CASE, "--subject-file", str(held), "--systems", "uploads"
    )
    assert placed.returncode == 0, placed.stderr

    async with harness.worker():
        order = court_order({"user_id": ["1"], "email": [CHILD.email]})
        request_id = (await harness.submit(order, catalogue(schema, bucket_name))).request_id
        await approve(harness.client, request_id)
        await state_of(harness, request_id, RequestState.ON_HOLD)
        await harness.client.get_workflow_handle(request_id).terminate("test finished")

    tasks = {t.system: t for t in harness.services.ledger.tasks(request_id)}
    assert (tasks["app_db"].state, tasks["uploads"].state) == ("done", "on_hold")
    assert "left unrestricted" in tasks["uploads"].detail
    assert surviving_keys(s3_client, bucket_name) >= {"avatars/1.jpg", *neighbour_keys()}
    # a neighbour with a look-alike address is not held, nor another system of the child
    holds = harness.services.holds
    neighbour = Subject.of(email=[NEIGHBOURS[0].email])
    assert holds.placed_on(str(uuid.uuid4()), neighbour, "uploads", "storage") == []
    assert holds.placed_on(str(uuid.uuid4()), Subject.of(email=[CHILD.email]), "app_db", "storage") == []
    # the registry keeps pseudonyms only
    with harness.services.pool.connection() as conn:
        rows = conn.execute("SELECT h::text, s::text FROM holds h JOIN hold_subjects s USING (hold_id)").fetchall()
    assert rows and not [r for r in rows if any(CHILD.email.lower() in col.lower() for col in r)]
