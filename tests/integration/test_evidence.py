"""Verifiable evidence on real exported bundles: requests run on Temporal, Postgres and S3, then checked offline.

One module-scoped ledger holds the evidence every test reads:

    request A  court order, app_db and uploads erased: complete   -> bundle_a.zip (log size 4)
    request B  the same estate shape, one object under legal hold: partial -> bundle_b.zip (log size 8)
    request A  shredded through the workflow's shred_now update     -> bundle_a_shredded.zip (log size 9)

Known-bad bundles are copies of a real bundle changed in exactly one way, each named after its defect.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import re
import subprocess
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import pytest_asyncio
from psycopg import sql
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from typer.testing import CliRunner

from activities.contracts import ReceiptInput, StepInput
from activities.erasure import ErasureActivities
from domain.errors import ErasureError
from erasure.cli import app
from erasure.config import Config, code_version
from erasure.export import RECENT_CHECKPOINTS, export_bundle, public_key_file
from erasure.intake import submit, validate
from erasure.services import Services, migrate_ledger
from evidence import notary
from evidence._json import canonical
from evidence.bundle import CERTIFICATE, CHECKPOINT, CONSISTENCY, MANIFEST, PROOFS, REPORT, SHRED, write_canonical_zip
from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae, sign_envelope
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer, Signer, public_key_pem
from evidence.manifest import sign_manifest
from evidence.merkle import MemoryTree, inclusion_proof
from evidence.verify import verify_bundle
from examples.estate import CHILD, count_rows
from stores.db import migrate, open_pool
from stores.tlog import TransparencyLog
from stores.vault import VaultSealed
from tests.evidence import zips
from tests.evidence.verify_txt import run_verify_txt
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, neighbour_keys, plant, surviving_keys
from workflows.request import SHRED_NOW_UPDATE, STATUS_QUERY

APP_DB = "receipts/app_db.dsse.json"
UPLOADS = "receipts/uploads.dsse.json"
ENVELOPES = (CERTIFICATE, APP_DB, UPLOADS)
# What identifies the child: none of it may appear in a bundle, in any file or decoded payload.
CHILD_EMAIL, CHILD_PHONE = str(CHILD.email), str(CHILD.phone)
IDENTIFIERS = (CHILD_EMAIL, CHILD_EMAIL.lower(), CHILD_PHONE, CHILD.username, "uploads/1/", "avatars/1.jpg")


@dataclass
class Sealed:
    harness: Harness
    key_pem: Path
    signer: Ed25519Signer
    a: str  # request ids
    b: str
    bundle_a: Path
    bundle_b: Path
    bundle_a_shredded: Path
    shred_receipt_a: bytes  # logged after A's certificate, so the certificate does not list it

    def bundle(self, name: str) -> Path:
        return {"a": self.bundle_a, "b": self.bundle_b, "a_shredded": self.bundle_a_shredded}[name]

    def checkpoint(self, name: str) -> str:
        return entries_of(self.bundle(name))[CHECKPOINT].decode()

    def leaves(self, count: int) -> list[bytes]:
        with self.harness.services.pool.connection() as conn:
            rows = conn.execute("SELECT entry FROM tlog_leaves ORDER BY leaf_index LIMIT %s", [count]).fetchall()
        return [bytes(r[0]) for r in rows]


# -- the shared evidence ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_env(database_url: str, moto_url: str) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("APP_DATABASE_URL", database_url)
        patch.setenv("ERASURE_S3_ENDPOINT", moto_url)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sealed(
    app_env: None,
    keys_home: Path,
    database_url: str,
    moto_url: str,
    temporal: WorkflowEnvironment,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Sealed]:
    tmp = tmp_path_factory.mktemp("evidence")
    ledger = f"ledger_{uuid.uuid4().hex[:12]}"
    estates = [f"app_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    buckets = [f"b-{uuid.uuid4().hex[:16]}" for _ in range(2)]
    config = Config(
        home=keys_home,
        database_url=database_url,
        temporal_address=temporal.client.service_client.config.target_host,
        task_queue=f"tq-{uuid.uuid4()}",
        ledger_schema=ledger,
        grace_days=30,
    )
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    migrate_ledger(config)
    services = Services.open(config)
    executor = ThreadPoolExecutor(max_workers=16)
    harness = Harness(config, services, temporal.client, tmp, executor, temporal)
    running: list[str] = []
    try:
        plant(database_url, estates[0], s3, buckets[0])
        status_a = await harness.run(
            court_order({"user_id": ["1"], "email": [CHILD_EMAIL]}), catalogue(estates[0], buckets[0])
        )
        a = status_a["request_id"]
        running.append(a)
        assert status_a["outcome"] == "complete", status_a
        bundle_a = tmp / "bundle_a.zip"
        export_bundle(services, a, bundle_a)

        plant(database_url, estates[1], s3, buckets[1], object_lock=True)
        head = s3.head_object(Bucket=buckets[1], Key="avatars/1.jpg")
        s3.put_object_legal_hold(
            Bucket=buckets[1], Key="avatars/1.jpg", VersionId=head["VersionId"], LegalHold={"Status": "ON"}
        )
        status_b = await harness.run(court_order({"user_id": ["1"]}), catalogue(estates[1], buckets[1]))
        b = status_b["request_id"]
        running.append(b)
        assert status_b["outcome"] == "partial", status_b
        bundle_b = tmp / "bundle_b.zip"
        export_bundle(services, b, bundle_b)

        async with harness.worker():
            handle = temporal.client.get_workflow_handle(a)
            for _ in range(100):  # the certificate is in the ledger; the workflow may not have seen it yet
                if (await handle.query(STATUS_QUERY))["phase"] == "grace period":
                    break
                await asyncio.sleep(0.1)
            assert await handle.execute_update(SHRED_NOW_UPDATE) == "shredded"
        running.remove(a)
        bundle_a_shredded = tmp / "bundle_a_shredded.zip"
        export_bundle(services, a, bundle_a_shredded)
        with services.pool.connection() as conn:
            row = conn.execute(
                "SELECT envelope FROM receipts WHERE request_id = %s AND system = %s AND action = 'shred'",
                [a, notary.REQUEST_SYSTEM],
            ).fetchone()
        assert row is not None

        yield Sealed(
            harness=harness,
            key_pem=public_key_file(services, tmp / "key.pem"),
            signer=services.tlog.signer,
            a=a,
            b=b,
            bundle_a=bundle_a,
            bundle_b=bundle_b,
            bundle_a_shredded=bundle_a_shredded,
            shred_receipt_a=bytes(row[0]),
        )
    finally:
        for request_id in running:
            await temporal.client.get_workflow_handle(request_id).terminate("test module finished")
        executor.shutdown()
        services.close()
        drop_schemas(database_url, [ledger, *estates])


def drop_schemas(database_url: str, schemas: list[str]) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for name in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


# -- bundles as files -----------------------------------------------------------------------------------------------


def entries_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def write_entries(path: Path, entries: dict[str, bytes]) -> Path:
    """The entries as the exporter writes them, the manifest as it is (stale if an entry was changed)."""
    write_canonical_zip(path, entries)
    return path


def write_signed(path: Path, entries: dict[str, bytes], signer: Signer) -> Path:
    """The entries with the manifest signed anew over them: for a defect aimed at a check after the manifest's."""
    contents = {name: data for name, data in entries.items() if name != MANIFEST}
    return write_entries(path, {**contents, MANIFEST: sign_manifest(contents, signer)})


def pretty(document: object) -> bytes:
    """The bundle's own layout of log/*.json, so a changed value is the only changed byte range."""
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def payload_of(envelope: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    return document


def change_base64_char(envelope: bytes, field: str, *, middle: bool = False) -> bytes:
    """One character of a base64 field replaced by another base64 character: one changed byte in the file."""
    start = envelope.index(f'"{field}":"'.encode()) + len(field) + 4
    end = envelope.index(b'"', start)
    at = (start + end) // 2 if middle else start + 10
    replacement = b"B" if envelope[at : at + 1] == b"A" else b"A"
    return envelope[:at] + replacement + envelope[at + 1 :]


# -- defects: each changes a copy of a real bundle in exactly one way ------------------------------------------------

Entries = dict[str, bytes]
Defect = Callable[[Entries, Sealed], None]


def _payload_byte(name: str) -> Defect:
    def change(e: Entries, s: Sealed) -> None:
        e[name] = change_base64_char(e[name], "payload", middle=True)

    return change


def _signature_byte(name: str) -> Defect:
    def change(e: Entries, s: Sealed) -> None:
        e[name] = change_base64_char(e[name], "sig")

    return change


def _payload_type_changed(name: str) -> Defect:
    def change(e: Entries, s: Sealed) -> None:
        old = b'"payloadType":"application/vnd.in-toto+json"'
        assert old in e[name]
        e[name] = e[name].replace(old, b'"payloadType":"application/json"')

    return change


def _receipt_listed_but_missing(e: Entries, s: Sealed) -> None:
    del e[UPLOADS]


def _receipt_present_but_not_listed(e: Entries, s: Sealed) -> None:
    # A real receipt of this request, signed and logged, but after the certificate: the shredding receipt.
    e["receipts/vault.dsse.json"] = s.shred_receipt_a


def _receipt_of_other_request_added(e: Entries, s: Sealed) -> None:
    e["receipts/app_db-2.dsse.json"] = entries_of(s.bundle_b)[APP_DB]


def _receipt_of_other_request_swapped_in(e: Entries, s: Sealed) -> None:
    e[APP_DB] = entries_of(s.bundle_b)[APP_DB]


def _proofs(e: Entries) -> dict[str, Any]:
    proofs: dict[str, Any] = json.loads(e[PROOFS])
    assert pretty(proofs) == e[PROOFS]
    return proofs


def _proof_hash_changed(e: Entries, s: Sealed) -> None:
    proofs = _proofs(e)
    first = bytearray.fromhex(proofs[APP_DB]["hashes"][0])
    first[0] ^= 1
    proofs[APP_DB]["hashes"][0] = first.hex()
    e[PROOFS] = pretty(proofs)


def _proof_leaf_index_wrong(e: Entries, s: Sealed) -> None:
    proofs = _proofs(e)
    proofs[APP_DB]["leaf_index"] = proofs[UPLOADS]["leaf_index"]  # a real index of the tree, the other receipt's
    e[PROOFS] = pretty(proofs)


def _proof_tree_size_wrong(e: Entries, s: Sealed) -> None:
    proofs = _proofs(e)
    proofs[APP_DB]["tree_size"] += 1
    e[PROOFS] = pretty(proofs)


def _checkpoint_signature_bad(e: Entries, s: Sealed) -> None:
    body, _, line = e[CHECKPOINT].decode().rpartition("\n\u2014 ")
    name, encoded = line.split(" ")
    at = 20  # inside the Ed25519 signature, past the 4-byte key id
    flipped = encoded[:at] + ("B" if encoded[at] == "A" else "A") + encoded[at + 1 :]
    e[CHECKPOINT] = f"{body}\n\u2014 {name} {flipped}".encode()


def _checkpoint_root_changed(e: Entries, s: Sealed) -> None:
    origin, size, root, rest = e[CHECKPOINT].decode().split("\n", 3)
    changed = bytearray(base64.b64decode(root))
    changed[0] ^= 1
    e[CHECKPOINT] = "\n".join([origin, size, base64.b64encode(changed).decode(), rest]).encode()


def _envelope_signature_forged(e: Entries, s: Sealed) -> None:
    # A valid Ed25519 signature over the right PAE bytes, by another key, under the operator's key id.
    envelope = Envelope.from_json(e[APP_DB])
    forged = Signature(s.signer.keyid, Ed25519Signer.generate().sign(pae(envelope.payload_type, envelope.payload)))
    e[APP_DB] = dataclasses.replace(envelope, signatures=(forged,)).to_json()


def _envelope_signature_transplanted(e: Entries, s: Sealed) -> None:
    # A real signature by the operator's key, but over the other receipt.
    other = Envelope.from_json(e[UPLOADS])
    e[APP_DB] = dataclasses.replace(Envelope.from_json(e[APP_DB]), signatures=other.signatures).to_json()


def _consistency_proof_removed(e: Entries, s: Sealed) -> None:
    e[CONSISTENCY] = pretty({})


# (bundle it changes, the change, what verify_bundle must say)
DEFECTS: dict[str, tuple[str, Defect, str]] = {
    "certificate_payload_byte_changed": (
        "a",
        _payload_byte(CERTIFICATE),
        r"^certificate\.dsse\.json: envelope signature does not verify",
    ),
    "certificate_signature_byte_changed": (
        "a",
        _signature_byte(CERTIFICATE),
        r"^certificate\.dsse\.json: envelope signature does not verify",
    ),
    "app_db_receipt_payload_byte_changed": (
        "a",
        _payload_byte(APP_DB),
        r"^receipts/app_db\.dsse\.json: envelope signature does not verify",
    ),
    "app_db_receipt_signature_byte_changed": (
        "a",
        _signature_byte(APP_DB),
        r"^receipts/app_db\.dsse\.json: envelope signature does not verify",
    ),
    "uploads_receipt_payload_byte_changed": (
        "b",
        _payload_byte(UPLOADS),
        r"^receipts/uploads\.dsse\.json: envelope signature does not verify",
    ),
    "uploads_receipt_signature_byte_changed": (
        "b",
        _signature_byte(UPLOADS),
        r"^receipts/uploads\.dsse\.json: envelope signature does not verify",
    ),
    "receipt_payload_type_changed": (
        "a",
        _payload_type_changed(APP_DB),
        r"^receipts/app_db\.dsse\.json: envelope has wrong payload type: "
        r"expected 'application/vnd\.in-toto\+json', got 'application/json'",
    ),
    "certificate_payload_type_changed": (
        "a",
        _payload_type_changed(CERTIFICATE),
        r"^certificate\.dsse\.json: envelope has wrong payload type",
    ),
    "receipt_listed_but_missing": (
        "a",
        _receipt_listed_but_missing,
        r"receipts do not match the certificate's subjects: "
        r"missing \['receipts/uploads\.dsse\.json'\], not in the certificate \[\]",
    ),
    "receipt_present_but_not_listed": (
        "a",
        _receipt_present_but_not_listed,
        r"missing \[\], not in the certificate \['receipts/vault\.dsse\.json'\]",
    ),
    "receipt_of_other_request_added": (
        "a",
        _receipt_of_other_request_added,
        r"^receipts/app_db-2\.dsse\.json: receipt is for another request",
    ),
    "receipt_of_other_request_swapped_in": (
        "a",
        _receipt_of_other_request_swapped_in,
        r"^receipts/app_db\.dsse\.json: receipt is for another request",
    ),
    "proof_hash_changed": (
        "a",
        _proof_hash_changed,
        r"^receipts/app_db\.dsse\.json: inclusion proof leads to wrong root",
    ),
    "proof_leaf_index_wrong": (
        "a",
        _proof_leaf_index_wrong,
        r"^receipts/app_db\.dsse\.json: inclusion proof leads to wrong root",
    ),
    "proof_tree_size_wrong": (
        "a",
        _proof_tree_size_wrong,
        r"^receipts/app_db\.dsse\.json: inclusion proof is for another tree size: "
        r"expected 4, got 5",
    ),
    "checkpoint_signature_bad": (
        "a",
        _checkpoint_signature_bad,
        r"^log/checkpoint\.txt: checkpoint signature does not verify",
    ),
    "checkpoint_root_changed": (
        "a",
        _checkpoint_root_changed,
        r"^log/checkpoint\.txt: checkpoint signature does not verify",
    ),
    "envelope_signature_forged": (
        "a",
        _envelope_signature_forged,
        r"^receipts/app_db\.dsse\.json: envelope signature does not verify",
    ),
    "envelope_signature_transplanted": (
        "a",
        _envelope_signature_transplanted,
        r"^receipts/app_db\.dsse\.json: envelope signature does not verify",
    ),
}


@pytest.fixture
def tampered(sealed: Sealed, tmp_path: Path) -> Callable[[str], Path]:
    """Factory: a copy of a real bundle with one defect, written as bundle_<defect>.zip."""

    def make(defect: str) -> Path:
        source, change, _ = DEFECTS.get(defect) or LOG_DEFECTS[defect]
        entries = entries_of(sealed.bundle(source))
        before = dict(entries)
        change(entries, sealed)
        changed = {n for n in before.keys() | entries.keys() if before.get(n) != entries.get(n)}
        assert len(changed) == 1, f"{defect} changes {sorted(changed)}, not exactly one entry"
        # Signed anew by the operator's key, so that each defect meets the check it is aimed at; without that,
        # the manifest catches every one of them (test_changed_entry_is_caught_by_the_manifest).
        return write_signed(tmp_path / f"bundle_{defect}.zip", entries, sealed.signer)

    return make


def verify(sealed: Sealed, path: Path, previous: str | None = None) -> Any:
    return verify_bundle(path, trusted_keys=[sealed.signer.public_key], previous_checkpoint=previous)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["evidence", "verify", *args])


# -- the real bundles verify ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "outcome", "size"), [("a", "complete", 4), ("b", "partial", 8)])
def test_real_bundle_verifies_with_the_signers_key(sealed: Sealed, name: str, outcome: str, size: int) -> None:
    report = verify(sealed, sealed.bundle(name))

    assert report.request_id == {"a": sealed.a, "b": sealed.b}[name]
    assert (report.outcome, report.tree_size, report.keys_from_bundle) == (outcome, size, False)
    assert len(report.checks) == 9
    assert report.checks[0] == "bundle layout is exact: a certificate, 2 receipts, the log files and keys"


def test_cli_verify_prints_each_check_and_exits_0(sealed: Sealed) -> None:
    report = verify(sealed, sealed.bundle_b)

    result = cli(str(sealed.bundle_b), "--trusted-key", str(sealed.key_pem))

    assert result.exit_code == 0, result.output
    for check in report.checks:
        assert f"ok {check}" in result.stdout
    assert f"bundle verified: request {sealed.b}, outcome partial, log size 8" in result.stdout
    assert "warning" not in result.stderr


def test_cli_without_a_trusted_key_refuses_and_names_the_key_to_trust(sealed: Sealed) -> None:
    result = cli(str(sealed.bundle_a))

    assert result.exit_code == 1
    assert "verification failed: no trusted key given" in result.stderr
    assert f"this bundle's keys have key ids ['{sealed.signer.keyid}']" in result.stderr
    assert "bundle verified" not in result.stdout


def test_cli_verifies_with_the_operators_key_id(sealed: Sealed) -> None:
    result = cli(str(sealed.bundle_b), "--trusted-keyid", sealed.signer.keyid)

    assert result.exit_code == 0, result.output
    assert f"bundle verified: request {sealed.b}, outcome partial, log size 8" in result.stdout


def test_cli_refuses_a_malformed_key_id(sealed: Sealed) -> None:
    result = cli(str(sealed.bundle_b), "--trusted-keyid", "../x")

    assert result.exit_code == 2
    assert "--trusted-keyid" in result.stderr and "64 lower-case hex" in result.stderr


def test_cli_trusting_the_bundled_key_says_it_checks_integrity_only(sealed: Sealed) -> None:
    result = cli(str(sealed.bundle_a), "--trust-bundled-key")

    assert result.exit_code == 0, result.output
    assert "this checked the bundle's integrity only" in result.stderr


@pytest.mark.parametrize("name", ["a", "b"])
def test_report_names_request_kind_outcome_and_every_system(sealed: Sealed, name: str) -> None:
    report = entries_of(sealed.bundle(name))[REPORT].decode()
    request_id = {"a": sealed.a, "b": sealed.b}[name]

    assert f"Erasure certificate {request_id}" in report
    assert "<tr><th>Kind</th><td>court order</td></tr>" in report
    if name == "a":
        assert '<p class="outcome complete">Complete: every system verified</p>' in report
    else:
        assert '<p class="outcome partial">Not complete: 1 system blocked by a legal hold' in report
    for system, level in [("app_db", "verified_absent"), ("uploads", "verified_absent" if name == "a" else "blocked")]:
        assert f"<tr><td>{system}</td><td>storage</td><td><code>{level}</code></td>" in report


def test_receipt_states_counts_per_location(sealed: Sealed) -> None:
    receipt = payload_of(entries_of(sealed.bundle_a)[APP_DB])["predicate"]

    assert set(receipt["locations"]) == {"users", "videos", "comments", "follows", "device_tokens"}
    assert sum(counts["before"] for counts in receipt["locations"].values()) == receipt["records_before"] == 18
    assert all(counts["after"] == 0 for counts in receipt["locations"].values())


@pytest.mark.parametrize("name", ["a", "b", "a_shredded"])
def test_bundle_holds_no_identifier_of_the_subject(sealed: Sealed, name: str) -> None:
    entries = entries_of(sealed.bundle(name))
    texts = {n: data.decode() for n, data in entries.items()}
    texts |= {f"{n} (payload)": json.dumps(payload_of(data)) for n, data in entries.items() if n.endswith(".dsse.json")}

    for where, text in texts.items():
        for identifier in IDENTIFIERS:
            assert identifier not in text, f"{where} holds an identifier of the subject"


# -- known-bad bundles ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_bundle_with_defect_is_rejected(sealed: Sealed, tampered: Callable[[str], Path], defect: str) -> None:
    path = tampered(defect)

    with pytest.raises(VerificationError, match=DEFECTS[defect][2]):
        verify(sealed, path)


@pytest.mark.parametrize(
    "defect",
    [
        "app_db_receipt_payload_byte_changed",
        "receipt_listed_but_missing",
        "proof_hash_changed",
        "envelope_signature_forged",
    ],
)
def test_cli_rejects_bundle_with_defect(sealed: Sealed, tampered: Callable[[str], Path], defect: str) -> None:
    result = cli(str(tampered(defect)), "--trusted-key", str(sealed.key_pem))

    assert result.exit_code == 1
    assert "verification failed:" in result.stderr
    assert "bundle verified" not in result.stdout


@pytest.mark.parametrize("envelope", [CERTIFICATE, APP_DB])
def test_every_single_byte_change_in_an_envelope_is_rejected(sealed: Sealed, tmp_path: Path, envelope: str) -> None:
    # Every byte of the JSON, the key id, the payload type, the signature and the end of the payload (where
    # base64 has unused bits: the certificate's payload then decodes to the same bytes, and only the inclusion
    # proof catches the change); inside the payload, every 16th byte.
    entries = entries_of(sealed.bundle_a)
    original = entries[envelope]
    start = original.index(b'"payload":"') + len(b'"payload":"')
    end = original.index(b'"', start)
    positions = [at for at in range(len(original)) if not start + 4 <= at < end - 4 or at % 16 == 0]
    path = tmp_path / "bundle_byte_changed.zip"
    for at in positions:
        changed = bytearray(original)
        changed[at] ^= 0x01
        write_signed(path, {**entries, envelope: bytes(changed)}, sealed.signer)
        with pytest.raises(VerificationError, match=f"^{re.escape(envelope)}: "):
            verify(sealed, path)


def test_untrusted_key_is_rejected(sealed: Sealed) -> None:
    stranger = Ed25519Signer.generate()

    with pytest.raises(VerificationError, match=r"^manifest\.dsse\.json: envelope has no signature by a trusted key"):
        verify_bundle(sealed.bundle_a, trusted_keys=[stranger.public_key])


def test_cli_rejects_untrusted_key(sealed: Sealed, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.pem"
    from evidence.keys import public_key_pem

    stranger.write_bytes(public_key_pem(Ed25519Signer.generate().public_key))

    result = cli(str(sealed.bundle_a), "--trusted-key", str(stranger))

    assert result.exit_code == 1
    assert "verification failed: manifest.dsse.json: envelope has no signature by a trusted key" in result.stderr


# -- the log over time: previous checkpoints ---------------------------------------------------------------------------


@pytest.fixture
def forked_checkpoint(sealed: Sealed, database_url: str) -> Iterator[Callable[[int], str]]:
    """Factory: the checkpoint of another log of the same origin, signed by the same key, in a second ledger
    schema: it holds the real log's first size - 1 entries, then a different last entry."""
    schemas: list[str] = []

    def make(size: int) -> str:
        schema = f"ledger_fork_{uuid.uuid4().hex[:12]}"
        schemas.append(schema)
        migrate(database_url, schema)
        pool = open_pool(database_url, schema, max_size=2)
        try:
            fork = TransparencyLog(pool, sealed.signer, sealed.harness.services.tlog.origin)
            for entry in sealed.leaves(size - 1):
                fork.append_entry(entry)
            fork.append_entry(b"an entry written over the real one")
            checkpoint, note = fork.checkpoint()
            assert checkpoint.size == size
            return note
        finally:
            pool.close()

    yield make
    drop_schemas(database_url, schemas)


def test_second_bundle_verifies_against_first_bundles_checkpoint(sealed: Sealed) -> None:
    report = verify(sealed, sealed.bundle_b, previous=sealed.checkpoint("a"))

    assert report.checks[-1] == "log at size 8 is consistent with the previous checkpoint at size 4"
    assert set(json.loads(entries_of(sealed.bundle_b)[CONSISTENCY])) == {"4"}


def test_cli_verifies_against_previous_checkpoint(sealed: Sealed, tmp_path: Path) -> None:
    previous = tmp_path / "checkpoint-a.txt"
    previous.write_text(sealed.checkpoint("a"))

    result = cli(str(sealed.bundle_b), "--trusted-key", str(sealed.key_pem), "--previous-checkpoint", str(previous))

    assert result.exit_code == 0, result.output
    assert "ok log at size 8 is consistent with the previous checkpoint at size 4" in result.stdout


def test_forked_log_is_rejected(sealed: Sealed, forked_checkpoint: Callable[[int], str]) -> None:
    # A's approval record and first two receipts, then another entry where its certificate is; at a size that is a
    # power of two the old root is a node of the new tree, so the proof shows the fork in the new root
    fork = forked_checkpoint(4)

    with pytest.raises(
        VerificationError,
        match=r"^log is not consistent with the previous checkpoint \(forked\?\): "
        r"consistency proof leads to wrong new root",
    ):
        verify(sealed, sealed.bundle_b, previous=fork)


def test_forked_log_of_equal_size_is_rejected(sealed: Sealed, forked_checkpoint: Callable[[int], str]) -> None:
    fork = forked_checkpoint(8)

    with pytest.raises(
        VerificationError,
        match=r"^log is not consistent with the previous checkpoint \(forked\?\): "
        r"trees of equal size 8 have different roots",
    ):
        verify(sealed, sealed.bundle_b, previous=fork)


def test_rolled_back_log_is_rejected(sealed: Sealed) -> None:
    # An auditor who already saw B's checkpoint is handed A's older bundle: the log seems to have shrunk.
    with pytest.raises(
        VerificationError,
        match=r"^log was rolled back: previous checkpoint has size 8, "
        r"greater than this one's 4",
    ):
        verify(sealed, sealed.bundle_a, previous=sealed.checkpoint("b"))


def test_missing_consistency_proof_is_rejected(sealed: Sealed, tampered: Callable[[str], Path]) -> None:
    with pytest.raises(VerificationError, match=r"^no consistency proof from the previous size 4 to 8"):
        verify(sealed, tampered("consistency_proof_removed"), previous=sealed.checkpoint("a"))


def test_previous_checkpoint_signed_by_another_key_is_rejected(sealed: Sealed) -> None:
    # The same log state, but vouched for by a key the auditor does not trust.
    from evidence.checkpoint import open_checkpoint, sign_checkpoint

    real = open_checkpoint(sealed.checkpoint("a"), [(sealed.harness.services.tlog.origin, sealed.signer.public_key)])
    other = sign_checkpoint(real, Ed25519Signer.generate(), real.origin)

    with pytest.raises(VerificationError, match=r"^previous checkpoint: checkpoint is not signed by a trusted key"):
        verify(sealed, sealed.bundle_b, previous=other)


def test_an_auditors_older_checkpoint_is_proved_on_request(sealed: Sealed, tmp_path: Path) -> None:
    """Bundles carry proofs from the latest published checkpoints; an auditor holding an older one asks for it."""
    services = sealed.harness.services
    for i in range(RECENT_CHECKPOINTS + 1):  # many requests later, each bundle publishing a checkpoint
        services.tlog.append_entry(b"a later entry %d" % i)
        services.tlog.checkpoint()
    export_bundle(services, sealed.a, tmp_path / "later.zip")
    with pytest.raises(VerificationError, match=r"no consistency proof from the previous size 4 .*--since"):
        verify(sealed, tmp_path / "later.zip", previous=sealed.checkpoint("a"))

    export_bundle(services, sealed.a, tmp_path / "later_since.zip", since=[sealed.checkpoint("a")])
    report = verify(sealed, tmp_path / "later_since.zip", previous=sealed.checkpoint("a"))

    assert report.checks[-1].endswith("is consistent with the previous checkpoint at size 4")


def test_export_refuses_a_checkpoint_from_another_log(
    sealed: Sealed, forked_checkpoint: Callable[[int], str], tmp_path: Path
) -> None:
    with pytest.raises(ErasureError, match="does not match this log's root"):
        export_bundle(sealed.harness.services, sealed.a, tmp_path / "x.zip", since=[forked_checkpoint(4)])


@pytest.mark.parametrize("defect", ["fork", "rollback"])
def test_cli_rejects_inconsistent_previous_checkpoint(
    sealed: Sealed, forked_checkpoint: Callable[[int], str], tmp_path: Path, defect: str
) -> None:
    bundle, note = (
        (sealed.bundle_b, forked_checkpoint(4)) if defect == "fork" else (sealed.bundle_a, sealed.checkpoint("b"))
    )
    previous = tmp_path / "previous.txt"
    previous.write_text(note)

    result = cli(str(bundle), "--trusted-key", str(sealed.key_pem), "--previous-checkpoint", str(previous))

    assert result.exit_code == 1
    expected = "log is not consistent with the previous checkpoint" if defect == "fork" else "log was rolled back"
    assert f"verification failed: {expected}" in result.stderr


LOG_DEFECTS: dict[str, tuple[str, Defect, str]] = {
    "consistency_proof_removed": ("b", _consistency_proof_removed, ""),
}


# -- standard tools -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", [APP_DB, CERTIFICATE])
def test_openssl_alone_verifies_a_real_envelope_signature(sealed: Sealed, tmp_path: Path, envelope: str) -> None:
    document = json.loads(entries_of(sealed.bundle_a)[envelope])
    payload_type = document["payloadType"].encode()
    payload = base64.b64decode(document["payload"])
    (tmp_path / "pae.bin").write_bytes(b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload))
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(document["signatures"][0]["sig"]))
    (tmp_path / "bad-pae.bin").write_bytes((tmp_path / "pae.bin").read_bytes().replace(b"DSSEv1", b"DSSEv2"))
    openssl = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(sealed.key_pem),
        "-rawin",
        "-sigfile",
        str(tmp_path / "sig.bin"),
        "-in",
    ]

    good = subprocess.run([*openssl, str(tmp_path / "pae.bin")], capture_output=True, text=True, check=False)
    bad = subprocess.run([*openssl, str(tmp_path / "bad-pae.bin")], capture_output=True, text=True, check=False)

    assert good.returncode == 0, good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert bad.returncode != 0
    assert "Signature Verification Failure" in bad.stdout


@pytest.mark.parametrize("name", ["b", "a_shredded"])
def test_the_bundles_own_verify_txt_passes_with_standard_tools(sealed: Sealed, tmp_path: Path, name: str) -> None:
    """The instructions a real bundle carries, run exactly as written, against that bundle."""
    bundle = sealed.bundle(name)

    result = run_verify_txt(own_instructions(bundle), bundle, tmp_path / "audit", sealed.signer.keyid)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout
    assert result.stdout.count("is signed by the trusted key") == 5 + (name == "a_shredded")
    assert result.stdout.count(" included") == 3 + (name == "a_shredded") and "NOT INCLUDED" not in result.stdout
    assert ("OK this request's data key was destroyed" in result.stdout) == (name == "a_shredded")


# -- forgeries: what an attacker builds, checked by hand (VERIFY.txt) and by the command --------------------------------


class NamedAs:
    """A signer whose signatures name another key id: the envelope's `keyid` is the forger's to choose."""

    def __init__(self, signer: Ed25519Signer, keyid: str) -> None:
        self._signer, self.keyid, self.public_key = signer, keyid, signer.public_key

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


def forge(entries: Entries, origin: str, attacker: Ed25519Signer, keyid: str) -> Entries:
    """The bundle rebuilt by an attacker: every envelope, the log, its checkpoint and the manifest signed by the
    attacker's key under `keyid`, and the certificate made to say "complete"."""
    signer = NamedAs(attacker, keyid)
    receipts = {n: _resign(d, signer) for n, d in entries.items() if n.startswith("receipts/")}
    certificate = payload_of(entries[CERTIFICATE])
    certificate["predicate"]["outcome"] = "complete"
    certificate["subject"] = [{"name": n, "digest": {"sha256": sha256(d)}} for n, d in sorted(receipts.items())]
    receipts[CERTIFICATE] = sign_envelope(canonical(certificate), IN_TOTO_PAYLOAD_TYPE, signer).to_json()
    tree = MemoryTree()
    indexes = {name: tree.append(data) for name, data in receipts.items()}
    proofs = {
        name: {
            "leaf_index": i,
            "tree_size": tree.size,
            "hashes": [h.hex() for h in inclusion_proof(i, tree.size, tree)],
        }
        for name, i in indexes.items()
    }
    kept = {n: d for n, d in entries.items() if n in (REPORT, "VERIFY.txt") or n.startswith("keys/")}
    return {
        **kept,
        **receipts,
        CHECKPOINT: sign_checkpoint(Checkpoint(origin, tree.size, tree.root()), signer, origin).encode(),
        PROOFS: pretty(proofs),
        CONSISTENCY: pretty({}),
        f"keys/{attacker.keyid}.pem": public_key_pem(attacker.public_key),
    }


def _resign(envelope: bytes, signer: Signer) -> bytes:
    return sign_envelope(Envelope.from_json(envelope).payload, IN_TOTO_PAYLOAD_TYPE, signer).to_json()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _attackers_key(e: Entries, s: Sealed, attacker: Ed25519Signer) -> tuple[Entries, Signer]:
    return forge(e, s.harness.services.tlog.origin, attacker, attacker.keyid), attacker


def _keyid_dot_dot(e: Entries, s: Sealed, attacker: Ed25519Signer) -> tuple[Entries, Signer]:
    # keys/../x.pem is x.pem: the old instructions read the key named by the envelope, outside keys/
    forged = forge(e, s.harness.services.tlog.origin, attacker, "../x")
    forged["x.pem"] = public_key_pem(attacker.public_key)
    return forged, NamedAs(attacker, "../x")


def _keyid_dot_dot_inside_keys(e: Entries, s: Sealed, attacker: Ed25519Signer) -> tuple[Entries, Signer]:
    # The same within the layout: keys/../keys/<id>.pem; the operator's key file is there too, and genuine.
    keyid = f"../keys/{attacker.keyid}"
    return forge(e, s.harness.services.tlog.origin, attacker, keyid), NamedAs(attacker, keyid)


def _look_alike_proof_paths(e: Entries, s: Sealed, attacker: Ed25519Signer) -> tuple[Entries, Signer]:
    # As many proofs as envelopes, each line "included", but uploads' receipt has none: a look-alike path of
    # app_db's takes its place. The manifest is signed by the operator's key, so the proofs' own check is tested.
    proofs = _proofs(e)
    del proofs[UPLOADS]
    proofs["receipts/./app_db.dsse.json"] = proofs[APP_DB]
    return {**e, PROOFS: pretty(proofs)}, s.signer


# (the forgery, what VERIFY.txt prints, what the command says with the operator's key)
FORGERIES: dict[str, tuple[Callable[[Entries, Sealed, Ed25519Signer], tuple[Entries, Signer]], str, str]] = {
    "attackers_key": (
        _attackers_key,
        "FAILED: manifest.dsse.json is not signed by the trusted key",
        "manifest.dsse.json: envelope has no signature by a trusted key",
    ),
    "keyid_dot_dot": (
        _keyid_dot_dot,
        "FAILED: entry outside the layout: x.pem",
        "bundle has an entry outside the layout: 'x.pem'",
    ),
    "keyid_dot_dot_inside_keys": (
        _keyid_dot_dot_inside_keys,
        "FAILED: manifest.dsse.json is not signed by the trusted key",
        "manifest.dsse.json: envelope has no signature by a trusted key",
    ),
    "look_alike_proof_paths": (
        _look_alike_proof_paths,
        "FAILED: log/proofs.json does not hold exactly one proof per envelope",
        r"inclusion proofs do not match the envelopes: missing ['receipts/uploads.dsse.json'], "
        r"extra ['receipts/./app_db.dsse.json']",
    ),
}


@pytest.fixture
def forged(sealed: Sealed, tmp_path: Path) -> Callable[[str], Path]:
    """Factory: bundle A forged as named, its manifest signed by whoever forged it."""
    attacker = Ed25519Signer.generate()

    def make(name: str) -> Path:
        entries, signer = FORGERIES[name][0](entries_of(sealed.bundle_a), sealed, attacker)
        entries = {n: d for n, d in entries.items() if n != MANIFEST}
        signed = {**entries, MANIFEST: sign_manifest(entries, signer)}
        path = tmp_path / f"bundle_forged_{name}.zip"
        return zips.raw_zip(path, [zips.entry(n, d) for n, d in sorted(signed.items())])  # x.pem is not in the layout

    return make


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_verify_txt_fails_on_a_forged_bundle(
    sealed: Sealed, forged: Callable[[str], Path], tmp_path: Path, name: str
) -> None:
    instructions = own_instructions(sealed.bundle_a)  # the genuine ones: a forger would rewrite the bundle's own

    result = run_verify_txt(instructions, forged(name), tmp_path / "audit", sealed.signer.keyid)

    assert result.returncode != 0
    assert FORGERIES[name][1] in result.stdout + result.stderr  # python3 prints its FAILED line to stderr
    assert "included" not in result.stdout  # it stopped at the first failure


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_cli_rejects_a_forged_bundle(sealed: Sealed, forged: Callable[[str], Path], name: str) -> None:
    result = cli(str(forged(name)), "--trusted-key", str(sealed.key_pem))

    assert result.exit_code == 1
    assert f"verification failed: {FORGERIES[name][2]}" in result.stderr
    assert "bundle verified" not in result.stdout


def test_cli_names_the_forgers_key_and_trusts_it_only_when_told(sealed: Sealed, forged: Callable[[str], Path]) -> None:
    path = forged("attackers_key")
    forger = next(n for n in entries_of(path) if n.startswith("keys/") and sealed.signer.keyid not in n)[5:-4]

    untrusted = cli(str(path))
    integrity_only = cli(str(path), "--trust-bundled-key")
    pinned = cli(str(path), "--trusted-keyid", sealed.signer.keyid)

    assert untrusted.exit_code == 1 and forger in untrusted.stderr and "no trusted key given" in untrusted.stderr
    assert integrity_only.exit_code == 0 and "integrity only" in integrity_only.stderr
    assert "outcome complete" in integrity_only.stdout  # what the forger wrote: nothing says who
    assert pinned.exit_code == 1 and "manifest.dsse.json: envelope has no signature by a trusted key" in pinned.stderr


# -- one reading of a bundle, within caps ----------------------------------------------------------------------------


def test_unicode_path_naming_another_file_is_rejected_by_hand_and_by_the_command(
    sealed: Sealed, tmp_path: Path
) -> None:
    """unzip would extract B's report.html as a second certificate.dsse.json; Python reads report.html."""
    entries = [
        zips.entry(name, data, zips.unicode_path(name, CERTIFICATE) if name == REPORT else b"")
        for name, data in sorted(entries_of(sealed.bundle_b).items())
    ]
    path = zips.raw_zip(tmp_path / "bundle_unicode_path.zip", entries)

    manual = run_verify_txt(own_instructions(sealed.bundle_b), path, tmp_path / "audit", sealed.signer.keyid)
    command = cli(str(path), "--trusted-key", str(sealed.key_pem))

    assert manual.returncode != 0 and "FAILED: an entry has an extra field" in manual.stdout
    assert command.exit_code == 1
    assert "verification failed: bundle entry has extra fields ['0x7075']: 'report.html'" in command.stderr


def test_zip_bomb_in_a_real_bundle_is_refused_in_small_memory(sealed: Sealed, tmp_path: Path) -> None:
    zeros = zips.zeros(32 * 1024 * 1024)
    bombs = [dataclasses.replace(zeros, name=f"receipts/z{i}.dsse.json") for i in range(40)]
    path = zips.raw_zip(tmp_path / "bundle_bomb.zip", [*zips.entries_of(sealed.bundle_b), *bombs])
    assert path.stat().st_size < 2_000_000  # 1.3 GB of zeros

    tracemalloc.start()
    try:
        with pytest.raises(VerificationError, match=r"^bundle is too large uncompressed: expected <= 33554432 bytes"):
            verify(sealed, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 4 * 1024 * 1024


# -- every byte covered ------------------------------------------------------------------------------------------------


def test_report_changed_to_read_complete_is_rejected_by_hand_and_by_the_command(sealed: Sealed, tmp_path: Path) -> None:
    entries = entries_of(sealed.bundle_b)
    partial = '<p class="outcome partial">Not complete: 1 system blocked by a legal hold or retention lock</p>'
    assert partial.encode() in entries[REPORT]
    entries[REPORT] = entries[REPORT].replace(
        partial.encode(), b'<p class="outcome complete">Complete: every system verified</p>'
    )
    path = write_entries(tmp_path / "bundle_report_says_complete.zip", entries)

    manual = run_verify_txt(own_instructions(sealed.bundle_b), path, tmp_path / "audit", sealed.signer.keyid)
    command = cli(str(path), "--trusted-key", str(sealed.key_pem))

    assert manual.returncode != 0
    assert "report.html: FAILED" in manual.stdout
    assert "FAILED: manifest.json: a file's SHA-256 differs from the one listed" in manual.stdout
    assert command.exit_code == 1
    assert "verification failed: report.html: digest does not match the manifest" in command.stderr


@pytest.mark.parametrize("name", [REPORT, "VERIFY.txt", CHECKPOINT, APP_DB])
def test_changed_entry_is_caught_by_the_manifest(sealed: Sealed, tmp_path: Path, name: str) -> None:
    entries = entries_of(sealed.bundle_a)
    entries[name] = entries.get(name, b"") + b"\n"

    with pytest.raises(VerificationError, match=rf"^manifest does not list|^{re.escape(name)}: digest does not match"):
        verify(sealed, write_entries(tmp_path / "bundle_changed.zip", entries))


def own_instructions(bundle: Path) -> str:
    return entries_of(bundle)["VERIFY.txt"].decode()


def test_cli_refuses_a_previous_checkpoint_that_is_not_text(sealed: Sealed, tmp_path: Path) -> None:
    previous = tmp_path / "previous.txt"
    previous.write_bytes(b"\xff\xfe" + sealed.checkpoint("a").encode("utf-16-le"))  # saved as UTF-16 by an editor

    result = cli(str(sealed.bundle_b), "--trusted-key", str(sealed.key_pem), "--previous-checkpoint", str(previous))

    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2
    assert "is not UTF-8 text" in result.stderr


# -- shredding --------------------------------------------------------------------------------------------------------


def test_bundle_still_verifies_after_the_request_key_is_shredded(sealed: Sealed) -> None:
    services = sealed.harness.services
    assert services.vault.is_destroyed(sealed.a)
    with pytest.raises(VaultSealed):
        services.vault.subject(sealed.a)
    assert services.ledger.request(sealed.a).state == "closed"  # type: ignore[union-attr]

    report = verify(sealed, sealed.bundle_a_shredded, previous=sealed.checkpoint("a"))

    assert (report.request_id, report.outcome, report.tree_size, report.shredded) == (sealed.a, "complete", 9, True)
    assert "shredding receipt is signed by a trusted key: this request's data key was destroyed" in report.checks
    assert report.checks[-1] == "log at size 9 is consistent with the previous checkpoint at size 4"
    before, after = entries_of(sealed.bundle_a), entries_of(sealed.bundle_a_shredded)
    for name in ENVELOPES:  # the same signed evidence, now in a larger log
        assert before[name] == after[name]
    assert after[SHRED] == sealed.shred_receipt_a and SHRED not in before
    assert payload_of(sealed.shred_receipt_a)["predicate"]["action"] == "shred"
    assert verify(sealed, sealed.bundle_a_shredded, previous=sealed.checkpoint("b")).shredded
    assert not verify(sealed, sealed.bundle_a).shredded  # what was exported before verifies still


# -- exactly once, under activity retries ---------------------------------------------------------------------------


async def test_erase_and_record_receipt_run_twice_change_nothing_the_second_time(
    sealed: Sealed, database_url: str, s3_client: Any, schema: str, bucket_name: str
) -> None:
    harness = sealed.harness
    plant(database_url, schema, s3_client, bucket_name)
    # A fresh request on the same ledger whose workflow no worker polls: the activities run here, by hand.
    idle = Services.open(harness.config.with_(task_queue=f"tq-idle-{uuid.uuid4()}"))
    async with AsyncExitStack() as stack:
        stack.callback(idle.close)
        order, systems = validate(
            harness.write_yaml("order-c.yaml", court_order({"user_id": ["1"]})),
            harness.write_yaml("systems-c.yaml", catalogue(schema, bucket_name)),
        )
        request_id = (await submit(idle, harness.client, order, systems)).request_id
        stack.push_async_callback(harness.client.get_workflow_handle(request_id).terminate, "test finished")
        activities = ErasureActivities(
            ledger=harness.services.ledger,
            vault=harness.services.vault,
            tlog=harness.services.tlog,
            suppression=harness.services.suppression,
            holds=harness.services.holds,
            task_queue=harness.config.task_queue,
            grace_s=harness.config.grace_days * 86400,
            reminder_leads_s=[],
            backups=notary.Backups(harness.config.backup_retention_days),
            code_version=code_version(),
            executor=harness.executor,
            recipient_ack_s=harness.config.recipient_ack_days * 86400,
        )
        env = ActivityEnvironment()

        for system in ("app_db", "uploads"):
            step = StepInput(request_id, system)
            await env.run(activities.locate, step)
            await env.run(activities.erase, step)
            first = harness.services.ledger.task(request_id, system)  # what the erasure recorded
            with psycopg.connect(database_url) as conn:
                rows = count_rows(conn, schema)
            keys = surviving_keys(s3_client, bucket_name)
            env.info = dataclasses.replace(env.info, attempt=2)  # Temporal retries the same activity
            await env.run(activities.erase, step)
            second = harness.services.ledger.task(request_id, system)
            env.info = dataclasses.replace(env.info, attempt=1)

            assert first.deleted == {"app_db": 18, "uploads": 8}[system]
            # the retry deletes nothing more, and still commits to what the first attempt deleted
            assert (second.deleted, second.blocked, second.key_count) == (first.deleted, 0, first.deleted)
            assert second.key_commitment == first.key_commitment is not None
            with psycopg.connect(database_url) as conn:
                assert count_rows(conn, schema) == rows
            assert surviving_keys(s3_client, bucket_name) == keys
            assert (await env.run(activities.verify, step)).level == "verified_absent"
        with psycopg.connect(database_url) as conn:
            assert count_rows(conn, schema) == {
                "users": 3,
                "videos": 6,
                "comments": 6,
                "follows": 6,
                "device_tokens": 3,
            }
        assert surviving_keys(s3_client, bucket_name) == neighbour_keys()

        receipt = ReceiptInput(
            request_id=request_id,
            system="app_db",
            action="erase",
            level="verified_absent",
            detail="",
            notes=[],
            workflow_id=f"{request_id}/app_db",
            run_id="run-1",
            started_at="2026-11-20T10:00:00+00:00",
            finished_at="2026-11-20T10:00:05+00:00",
        )
        logged = await env.run(activities.record_receipt, receipt)
        size, rows_before = harness.services.tlog.size(), receipt_rows(harness, request_id)
        env.info = dataclasses.replace(env.info, attempt=2)
        again = await env.run(activities.record_receipt, receipt)

        assert again == logged
        assert harness.services.tlog.size() == size
        assert receipt_rows(harness, request_id) == rows_before == [("app_db", "erase", logged.leaf_index)]

        # Two attempts at once (a retry racing a slow first attempt that had not yet timed out): one leaf.
        uploads = dataclasses.replace(receipt, system="uploads", workflow_id=f"{request_id}/uploads")
        racing = await asyncio.gather(
            *(ActivityEnvironment().run(activities.record_receipt, uploads) for _ in range(4))
        )
        assert len(set(racing)) == 1
        assert harness.services.tlog.size() == size + 1
        assert [r[:2] for r in receipt_rows(harness, request_id)] == [("app_db", "erase"), ("uploads", "erase")]


def receipt_rows(harness: Harness, request_id: str) -> list[tuple[str, str, int]]:
    with harness.services.pool.connection() as conn:
        rows = conn.execute(
            "SELECT system, action, leaf_index FROM receipts WHERE request_id = %s ORDER BY system", [request_id]
        ).fetchall()
    return [(str(s), str(a), int(i)) for s, a, i in rows]
