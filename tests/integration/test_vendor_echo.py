"""Vendors that echo the child: Segment and Meta emulators (over HTTP) that put the child's identifier in every field
they return, or a lone UTF-16 surrogate in every string, through the whole stack (CLI, worker, Temporal dev server,
Postgres ledger). Each request reaches a certificate with honest levels (never vendor_attested on an echoed answer),
and the leak scan finds no identifier in any form (as given, lower, upper, base64, plain SHA-256 of it or of its JSON
form, a 12-digit prefix of those) in Temporal, the ledger, the logs or the bundle, with DSSE payloads and bytea
columns decoded. The neighbours the vendors hold survive.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client

from connectors.hashing import meta_email, meta_phone, sha256_hex
from examples.estate import NEIGHBOURS
from tests.integration.conftest import Harness, Vendors, court_order
from tests.integration.test_leak_scan import CHILD, IDENTIFIERS, decoded_payloads, pg_dump

AUDIENCE = "23850000000000009"
# what Meta's session answer may hold of no documented shape while its progress still reads as processed
ECHOED_SESSION_FIELDS = frozenset({"stage", "num_matched", "start_time"})
FAST = {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S"}
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/]{16,}={0,2}")
_BYTEA = re.compile(rb"\\\\?x((?:[0-9a-f]{2}){8,})")


def needles() -> set[bytes]:
    """Every form of every identifier a reader could turn back into it, including unkeyed digests: a dictionary of
    emails or user ids reverses a plain SHA-256, and a 12-digit prefix of one still confirms a guess."""
    values = [*IDENTIFIERS, meta_email(CHILD.email or ""), meta_phone(CHILD.phone or "", "44")]
    found: set[bytes] = set()
    for value in values:
        for form in {value, value.lower(), value.upper()}:
            found.update({form.encode(), base64.b64encode(form.encode())})
            for digest in (hashlib.sha256(form.encode()).hexdigest(), sha256_hex(json.dumps(form))):
                found.update({digest.encode(), digest[:12].encode()})
    return found


NEEDLES = needles()


def expanded(blob: bytes, depth: int = 3) -> bytes:
    """The blob with every hex bytea literal and base64 run in it decoded, recursively: a DSSE envelope's payload in
    a bundle entry, in a Temporal payload or in a ledger bytea column is read as its plain text."""
    if depth == 0:
        return blob
    inner: list[bytes] = []
    for match in _BYTEA.finditer(blob):
        inner.append(binascii.unhexlify(match.group(1)))
    for match in _BASE64_RUN.finditer(blob):
        run = match.group(0)
        try:
            inner.append(base64.b64decode(run + b"=" * (-len(run) % 4)))
        except (binascii.Error, ValueError):
            pass
    return blob + b"\n" + b"\n".join(expanded(part, depth - 1) for part in inner)


def hits(blob: bytes) -> list[bytes]:
    whole = expanded(blob)
    return sorted(n for n in NEEDLES if n.lower() in whole.lower())


def segment_catalogue() -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "segment",
                "connector": "segment",
                "category": "analytics",
                "identifiers": ["user_id"],
                "connection": {"base_url_env": "ERASURE_SEGMENT_URL", "token_env": "SEGMENT_TOKEN"},
                "poll": {"every": "PT0.5S"},
                "retry": FAST,
            }
        ]
    }


def meta_catalogue() -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "meta_audiences",
                "connector": "meta_audiences",
                "category": "ad_targeting",
                "identifiers": ["email", "phone"],
                "connection": {"base_url_env": "ERASURE_META_URL", "access_token_env": "META_ACCESS_TOKEN"},
                "mapping": {
                    "audiences": [{"id": AUDIENCE, "schema": ["EMAIL", "PHONE"]}],
                    "default_country_code": "44",
                },
                # a session that never reads as processed fails at this deadline instead of Meta's 7 days
                "poll": {"every": "PT0.5S", "service_time": "PT4S", "deadline": "PT8S"},
                "retry": FAST,
            }
        ]
    }


def echo_segment_at_once(vendors: Vendors) -> None:
    vendors.segment.mode = "echo"  # the regulateId itself is the child's id


def surrogates_from_segment(vendors: Vendors) -> None:
    vendors.segment.mode = "surrogates"


def echo_meta_everywhere(vendors: Vendors) -> None:
    vendors.meta.echo = (CHILD.email or "",)


def echo_meta_session_fields(vendors: Vendors) -> None:
    # the session stays findable (its id is ours) while every field read from it is the child's email
    vendors.meta.echo, vendors.meta.corrupt, vendors.meta.echo_keys = (
        (CHILD.email or "",),
        frozenset({"sessions"}),
        ECHOED_SESSION_FIELDS,
    )


def surrogates_from_meta(vendors: Vendors) -> None:
    vendors.meta.lone_surrogates = True


CASES: dict[str, tuple[str, Callable[[Vendors], None], str]] = {
    # case: (system, how the vendor misbehaves from the start, what the failure's detail says)
    "segment echoes at once": ("segment", echo_segment_at_once, "undocumented shape"),
    "segment sends surrogates": ("segment", surrogates_from_segment, "invalid unicode"),
    "segment echoes while running": ("segment", lambda vendors: None, "undocumented regulation status"),
    "meta echoes everywhere": ("meta_audiences", echo_meta_everywhere, ""),
    "meta echoes session fields": ("meta_audiences", echo_meta_session_fields, "outside their documented shape"),
    "meta sends surrogates": ("meta_audiences", surrogates_from_meta, "invalid unicode"),
}


async def echo_once_running(vendors: Vendors) -> None:
    """Segment answers normally until the regulation exists, then echoes the child in every field it returns."""
    while not vendors.segment.regulations:
        await asyncio.sleep(0.1)
    vendors.segment.mode = "echo"


@pytest.mark.parametrize("case", list(CASES))
async def test_a_vendor_echoing_the_child_ends_failed_certified_and_leaves_no_trace(
    case: str, harness: Harness, vendors: Vendors, database_url: str, tmp_path: Path
) -> None:
    system, misbehave, detail = CASES[case]
    neighbour_ids = {str(p.user_id) for p in NEIGHBOURS}
    vendors.segment.profiles = {str(CHILD.user_id), *neighbour_ids}
    vendors.segment.finish_after_polls = None if case == "segment echoes while running" else 1
    neighbour_member = (sha256_hex(meta_email(NEIGHBOURS[1].email or "")),)
    child_member = (sha256_hex(meta_email(CHILD.email or "")), sha256_hex(meta_phone(CHILD.phone or "", "44")))
    vendors.meta.audiences = {AUDIENCE: {child_member, neighbour_member}}
    vendors.meta.finish_after_polls = 1
    misbehave(vendors)

    home = tmp_path / "home"
    env = harness.process_env(home)
    identifiers = (
        {"user_id": [str(CHILD.user_id)]}
        if system == "segment"
        else {"email": [CHILD.email or ""], "phone": [CHILD.phone or ""]}
    )
    (tmp_path / "order.yaml").write_text(yaml.safe_dump(court_order(identifiers)))
    catalogue = segment_catalogue() if system == "segment" else meta_catalogue()
    (tmp_path / "systems.yaml").write_text(yaml.safe_dump(catalogue))
    worker = harness.start_worker(env)
    flip = asyncio.create_task(echo_once_running(vendors)) if case == "segment echoes while running" else None
    try:
        submitted = await harness.cli_run(env, str(tmp_path / "order.yaml"), str(tmp_path / "systems.yaml"))
        assert submitted.returncode == 0, submitted.stderr  # settled, whatever the outcome
        status = json.loads(submitted.stdout)
        request_id = status["request_id"]
        bundle = tmp_path / "bundle.zip"
        exported = await harness.cli(env, "evidence", "export", request_id, "-o", str(bundle))
        assert exported.returncode == 0, exported.stderr
    finally:
        if flip is not None:
            flip.cancel()
        worker.terminate()
        worker.wait(timeout=30)

    # honest: the request ended (a certificate, not stuck), the vendor's system failed, nothing claims success
    assert status["outcome"] == "incomplete", status
    [outcome] = status["systems"]
    assert outcome["system"] == system and outcome["evidence_level"] == "failed", outcome
    assert detail in outcome["detail"], outcome["detail"]
    if case == "segment echoes while running":
        assert any(name.startswith("destination.") and name.endswith("_hmac") for name in _facts(bundle))
    if case == "meta echoes session fields":
        facts = _facts(bundle)
        assert facts[f"{AUDIENCE}.stage"] == "unknown" and len(facts[f"{AUDIENCE}.stage_hmac"]) == 64
    # the neighbours the vendors hold survive
    assert neighbour_ids <= vendors.segment.profiles
    assert neighbour_member in vendors.meta.audiences[AUDIENCE]

    places = await _places(harness, request_id, database_url, home, bundle)
    assert any(name.startswith("log worker") for name in places) and any(n.startswith("bundle ") for n in places)
    # the scanner sees through the encodings: a DSSE envelope holding the child's email, as a bundle would carry it
    planted = json.dumps({"payload": base64.b64encode(json.dumps({"x": CHILD.email}).encode()).decode()}).encode()
    assert hits(planted) and hits(b"\\x" + binascii.hexlify(planted))
    leaks = {place: hits(blob) for place, blob in places.items() if hits(blob)}
    assert leaks == {}


def _facts(bundle: Path) -> dict[str, Any]:
    with zipfile.ZipFile(bundle) as archive:
        receipts = [
            json.loads(base64.b64decode(json.loads(archive.read(name))["payload"]))["predicate"]
            for name in archive.namelist()
            if name.startswith("receipts/")
        ]
    return {name: value for receipt in receipts for name, value in receipt.get("vendor_facts", {}).items()}


async def _places(harness: Harness, request_id: str, database_url: str, home: Path, bundle: Path) -> dict[str, bytes]:
    places: dict[str, bytes] = {}
    bare = await Client.connect(harness.config.temporal_address)  # read without the codec
    ids = {request_id}
    async for listed in bare.list_workflows(f"TaskQueue = '{harness.config.task_queue}'"):
        ids.add(listed.id)
    for workflow_id in ids:
        handle = bare.get_workflow_handle(workflow_id)
        description = await handle.describe()
        history = json.loads((await handle.fetch_history()).to_json())
        places[f"history {workflow_id}"] = json.dumps(history).encode() + b"".join(decoded_payloads(history))
        places[f"ids and attributes {workflow_id}"] = (
            workflow_id.encode()
            + repr(description.raw_description.workflow_execution_info.search_attributes).encode()
            + repr(description.raw_description.workflow_execution_info.memo).encode()
        )
    places["pg_dump"] = pg_dump(database_url, harness.config.ledger_schema)
    for log in (home / "logs").iterdir():
        places[f"log {log.name}"] = log.read_bytes()
    places["bundle.zip"] = bundle.read_bytes()
    with zipfile.ZipFile(io.BytesIO(places["bundle.zip"])) as archive:
        for name in archive.namelist():
            places[f"bundle {name}"] = archive.read(name)
    return places
