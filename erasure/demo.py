"""`erasure demo`: the main job on the embedded stack, from a fresh clone.

It starts the stack, plants the Clipstream estate (the child among look-alike neighbours) in every system,
submits the court order in `examples/`, waits for the certificate, checks that the child's data is gone and the
neighbours' data is not, exports and verifies the evidence bundle, writes `$ERASURE_HOME/demo/result.json`, stops
the stack, and succeeds only if every system reached its expected outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from rich.console import Console

from connectors.hashing import meta_email, meta_phone, sha256_hex
from erasure import devstack
from erasure.config import Config
from erasure.export import export_bundle, public_key_file
from erasure.intake import submit, validate
from erasure.services import Services, connect_temporal
from erasure.status import StatusReport, print_status, request_status
from evidence.keys import load_public_key_pem
from evidence.verify import verify_bundle
from examples.estate import CHILD, NEIGHBOURS, count_rows, create_app_schema, seed_people, upload_keys

EXAMPLES = Path("examples")
EXPECTED = {
    "app_db": "verified_absent",
    "uploads": "verified_absent",
    "events": "verified_absent",
    "segment": "vendor_attested",
    "meta_audiences": "vendor_attested",
}
APP_SCHEMA = "app"
UPLOADS_BUCKET = "clipstream-uploads"
LAKE_URI = "s3://clipstream-lake/events"
AUDIENCE = "23850000000000001"
PEOPLE = (CHILD, *NEIGHBOURS)


@dataclass
class Checks:
    results: dict[str, bool] = field(default_factory=dict)

    def add(self, name: str, ok: bool) -> None:
        self.results[name] = ok

    @property
    def passed(self) -> bool:
        return all(self.results.values())


def run_demo(config: Config, console: Console) -> bool:
    order_path, catalogue_path = EXAMPLES / "court-order.yaml", EXAMPLES / "systems.yaml"
    order, catalogue = validate(order_path, catalogue_path)
    demo_dir = config.home / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    seed_file = demo_dir / "emulators-seed.json"
    seed_file.write_text(json.dumps(emulator_seed()))
    console.print(f"starting the stack under {config.home} ...")
    stack = devstack.up(config, emulator_seed=seed_file)
    try:
        config = Config.from_env(stack.process_env())
        console.print(f"Temporal UI at {stack.temporal_ui}; planting the Clipstream estate ...")
        plant_estate(stack)
        services = Services.open(config)  # `up` migrated the ledger
        try:
            return _run(config, services, console, demo_dir, order, catalogue, stack)
        finally:
            services.close()
    finally:
        console.print("stopping the stack ...")
        devstack.down(config.home)


def _run(
    config: Config,
    services: Services,
    console: Console,
    demo_dir: Path,
    order: Any,
    catalogue: Any,
    stack: devstack.Stack,
) -> bool:

    async def go() -> str:
        client = await connect_temporal(config)
        return (await submit(services, client, order, catalogue)).request_id

    request_id = asyncio.run(go())
    console.print(f"submitted the court order as request [bold]{request_id}[/bold]; waiting for the certificate ...")
    status = _wait(services, request_id, timeout_s=300)
    print_status(console, status)

    checks = Checks()
    levels = {s.system: s.evidence_level for s in status.systems}
    for system, expected in EXPECTED.items():
        checks.add(f"{system} is {expected}", levels.get(system) == expected)
    checks.add("the request is certified complete", status.outcome == "complete")
    for name, ok in neighbour_checks(stack).items():
        checks.add(name, ok)

    bundle_path = demo_dir / f"evidence-{request_id}.zip"
    key_path = public_key_file(services, demo_dir / "signing-key.pem")
    export_bundle(services, request_id, bundle_path)
    report = verify_bundle(bundle_path, trusted_keys=[load_public_key_pem(key_path.read_bytes())])
    checks.add("the evidence bundle verifies offline", report.outcome == "complete")

    for name, ok in checks.results.items():
        console.print(f"  [{'green' if ok else 'red'}]{'ok  ' if ok else 'FAIL'}[/] {name}")
    result = {
        "request_id": request_id,
        "outcome": status.outcome,
        "systems": {
            s.system: {
                "evidence_level": s.evidence_level,
                "records_before": s.records_before,
                "records_after": s.records_after,
            }
            for s in status.systems
        },
        "checks": checks.results,
        "bundle": str(bundle_path),
        "trusted_key": str(key_path),
        "passed": checks.passed,
    }
    (demo_dir / "result.json").write_text(json.dumps(result, indent=2))
    console.print(f"evidence bundle: {bundle_path}")
    console.print(f"verify it yourself: erasure evidence verify {bundle_path} --trusted-key {key_path}")
    console.print(
        f"result: {demo_dir / 'result.json'}: [{'green' if checks.passed else 'red'}]"
        f"{'passed' if checks.passed else 'FAILED'}[/]"
    )
    return checks.passed


def _wait(services: Services, request_id: str, timeout_s: float) -> StatusReport:
    deadline = time.monotonic() + timeout_s
    status = request_status(services.ledger, request_id)
    while not status.state.settled and time.monotonic() < deadline:
        time.sleep(0.5)
        status = request_status(services.ledger, request_id)
    return status


# -- the estate -------------------------------------------------------------------------------------------------


def emulator_seed() -> dict[str, Any]:
    """What the vendors hold before the order: Segment profiles and one Meta audience, neighbours included.

    Meta matches on normalised hashes, so an address that differs from the child's only in case is the child's
    address there; the audience's neighbours differ by a plus tag or a digit of the phone number.
    """
    members = [[sha256_hex(meta_email(CHILD.email or "")), sha256_hex(meta_phone(CHILD.phone or "", "44"))]]
    for person in NEIGHBOURS[1:]:
        row = [sha256_hex(meta_email(person.email or ""))]
        if person.phone:
            row.append(sha256_hex(meta_phone(person.phone, "44")))
        members.append(row)
    members.append([sha256_hex(meta_phone(NEIGHBOURS[0].phone or "", "44"))])
    return {
        "segment": {"profiles": [str(p.user_id) for p in PEOPLE]},
        # Meta applies removals within hours; the demo's emulator takes seconds, so polling is still seen to wait
        "meta": {"audiences": {AUDIENCE: members}, "processing_time": "6s"},
    }


def plant_estate(stack: devstack.Stack) -> None:
    with psycopg.connect(devstack.app_database_url(stack.database_url), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {APP_SCHEMA} CASCADE")
        create_app_schema(conn, APP_SCHEMA)
        seed_people(conn, APP_SCHEMA, PEOPLE)
    s3 = _s3(stack)
    s3.create_bucket(Bucket=UPLOADS_BUCKET)
    s3.put_bucket_versioning(Bucket=UPLOADS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for person in PEOPLE:
        for key in upload_keys(person):
            s3.put_object(Bucket=UPLOADS_BUCKET, Key=key, Body=b"clip")
    s3.put_object(Bucket=UPLOADS_BUCKET, Key=upload_keys(CHILD)[0], Body=b"re-encoded clip")  # a second version
    s3.create_bucket(Bucket="clipstream-lake")
    for batch in range(3):  # several commits, so old files and log entries hold the child's id too
        rows = [person for person in PEOPLE for _ in range(batch + 1)]
        write_deltalake(
            LAKE_URI,
            pa.table({"user_id": [str(p.user_id) for p in rows], "event": ["play"] * len(rows)}),
            mode="append",
            storage_options=_lake_options(stack),
        )


def neighbour_checks(stack: devstack.Stack) -> dict[str, bool]:
    """The neighbours' data is all still there, in every system."""
    with psycopg.connect(devstack.app_database_url(stack.database_url)) as conn:
        counts = count_rows(conn, APP_SCHEMA)
        users = {row[0] for row in conn.execute(f"SELECT id FROM {APP_SCHEMA}.users").fetchall()}
    s3 = _s3(stack)
    listing = s3.list_object_versions(Bucket=UPLOADS_BUCKET)
    keys = {v["Key"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])}
    lake = DeltaTable(LAKE_URI, storage_options=_lake_options(stack)).to_pyarrow_table()
    lake_users = set(lake.column("user_id").to_pylist())
    vendors = httpx.get(f"{stack.emulators_url}/_emulator/state", timeout=10).json()
    audience = vendors["meta"]["audiences"][AUDIENCE]
    return {
        "app_db keeps the neighbours' rows": users == {p.user_id for p in NEIGHBOURS}
        and counts == {"users": 3, "videos": 6, "comments": 6, "follows": 6, "device_tokens": 3},
        "uploads keeps the neighbours' objects": keys == {k for p in NEIGHBOURS for k in upload_keys(p)},
        "events keeps the neighbours' rows": lake_users == {str(p.user_id) for p in NEIGHBOURS}
        and lake.num_rows == 6 * len(NEIGHBOURS),
        "segment keeps the neighbours' profiles": set(vendors["segment"]["profiles"])
        == {str(p.user_id) for p in NEIGHBOURS},
        "meta keeps the neighbours in the audience": len(audience) == len(NEIGHBOURS),
    }


# The stack's moto accepts any credentials; the demo's own clients say so rather than borrow the environment's.
_MOTO_KEY = {"aws_access_key_id": "dev", "aws_secret_access_key": "dev"}


def _s3(stack: devstack.Stack) -> Any:
    return boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1", **_MOTO_KEY)


def _lake_options(stack: devstack.Stack) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": stack.s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": _MOTO_KEY["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": _MOTO_KEY["aws_secret_access_key"],
    }
