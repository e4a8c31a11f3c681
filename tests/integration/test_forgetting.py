"""After `erasure shred`, whoever holds the ledger (a dump) and every key file of the development layout cannot link
the request to its subject: they recompute keyed hashes of the subject's known identifiers under every key they can
find, or unwrap with it, and none lands on a row that names the request. The receipt and the certificate say what
was destroyed, what was checked, and until when backups keep a copy."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.model import IdentifierType
from evidence import notary
from evidence.dsse import Envelope
from examples.estate import CHILD
from stores.pseudonyms import Pseudonymizer
from stores.vault import LocalMasterKey
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue, plant
from tests.integration.test_leak_scan import pg_dump

KNOWN = {
    IdentifierType.USER_ID: str(CHILD.user_id),
    IdentifierType.EMAIL: CHILD.email or "",
    IdentifierType.PHONE: CHILD.phone or "",
}


@pytest.fixture(autouse=True)
def app_env(monkeypatch: pytest.MonkeyPatch, database_url: str, moto_url: str) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)


def copy_rows(dump: str, table: str) -> Iterator[dict[str, str]]:
    """The rows of one table in pg_dump's COPY text."""
    found = re.search(rf"^COPY \S+\.{table} \(([^)]*)\) FROM stdin;\n(.*?)^\\\.$", dump, re.M | re.S)
    assert found, f"no {table} in the dump"
    columns = found.group(1).split(", ")
    for line in found.group(2).splitlines():
        yield dict(zip(columns, line.split("\t"), strict=True))


def every_file(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def digests_under(secret: bytes, dump: str) -> set[str]:
    """Every keyed hash of the known identifiers an attacker can make with `secret`: as a pseudonym key, a raw HMAC
    key, and as a master key that unwraps a data key still in the dump."""
    keys = [secret]
    if len(secret) == 32:
        for row in copy_rows(dump, "vault_keys"):
            if row["wrapped_key"] != r"\N":
                try:
                    wrapped = bytes.fromhex(row["wrapped_key"].removeprefix(r"\\x"))
                    keys.append(LocalMasterKey(secret).unwrap(wrapped, row["request_id"], row["wrapping"]))
                except Exception:  # not a master key of this row: try the next
                    continue
    found: set[str] = set()
    for key in keys:
        for purpose in ("ledger", "suppression"):
            hashes = Pseudonymizer(key, purpose=purpose)
            found.update(hashes.pseudonym(kind, value) for kind, value in KNOWN.items())
        for kind, value in KNOWN.items():
            for message in (value, f"{kind.value}\x00{value}"):
                found.add(hmac.new(key, message.encode(), hashlib.sha256).hexdigest())
    return found


def links(home: Path, dump: str, request_id: str) -> dict[str, list[str]]:
    """Which files yield a keyed hash of the subject on a dump line that names the request."""
    lines = [line for line in dump.splitlines() if request_id in line]
    linked = {}
    for name, secret in every_file(home).items():
        digests = digests_under(secret, dump)
        hits = [line for line in lines if any(d in line for d in digests)]
        if hits:
            linked[name] = hits
    return linked


def predicate(envelope: bytes) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(Envelope.from_json(envelope).payload)
    return statement["predicate"]  # type: ignore[no-any-return]


async def test_after_shredding_no_key_file_and_no_ledger_dump_link_the_request_to_its_subject(
    harness: Harness, database_url: str, schema: str, s3_client: Any, bucket_name: str
) -> None:
    plant(database_url, schema, s3_client, bucket_name)
    home, ledger_schema = harness.config.home, harness.config.ledger_schema
    subject = {kind.value: [value] for kind, value in KNOWN.items()}
    async with harness.worker():
        request_id = (await harness.submit(court_order(subject), catalogue(schema, bucket_name))).request_id
        await approve(harness.client, request_id)
        await harness.wait_certified(request_id)
        before = pg_dump(database_url, ledger_schema).decode()
        # the attacker's search works: while the request's key lives, the master key file finds its pseudonyms
        assert list(links(home, before, request_id)) == ["keys/master.key"]
        assert harness.services.suppression.contains(IdentifierType.EMAIL, KNOWN[IdentifierType.EMAIL])

        shredded = await harness.cli(harness.process_env(), "shred", request_id, "--yes-destroy-the-key")
        assert shredded.returncode == 0, shredded.stderr

    after = pg_dump(database_url, ledger_schema).decode()
    pseudonyms = [row for row in copy_rows(after, "subject_pseudonyms") if row["request_id"] == request_id]
    assert len(pseudonyms) == len(KNOWN)  # the rows stay, keyed by a key that no longer exists
    assert links(home, after, request_id) == {}
    # the suppression list still answers for the subject, from a key file of its own, on rows that name no request
    assert (home / "suppression-key" / "suppression.key").stat().st_mode & 0o777 == 0o600
    assert (home / "suppression-key").stat().st_mode & 0o777 == 0o700
    assert not (home / "keys" / "suppression.key").exists() and not (home / "keys" / "pseudonym.key").exists()
    suppressed = digests_under((home / "suppression-key" / "suppression.key").read_bytes(), after)
    rows = list(copy_rows(after, "suppression"))
    assert {r["digest"] for r in rows} & suppressed and all(set(r) == {"identifier_type", "digest"} for r in rows)

    logged = {(r.system, r.action): r.envelope for r in harness.services.tlog.receipts(request_id)}
    shred = predicate(logged[(notary.REQUEST_SYSTEM, notary.SHRED)])
    certificate = predicate(logged[(notary.REQUEST_SYSTEM, notary.CERTIFICATE)])
    checked, not_checked, beyond_use = shred["notes"]
    assert shred["evidence_level"] == "verified_absent" and checked.endswith("this checks the live table only")
    assert "write-ahead log" in not_checked and "backups" in not_checked
    shredded_on = datetime.fromisoformat(shred["finished_at"])
    retention = timedelta(days=harness.config.backup_retention_days)
    assert f"expires by {(shredded_on + retention).date().isoformat()}" in beyond_use
    # the certificate, issued before, names the latest day: shredding after the grace period, then the retention
    issued = datetime.fromisoformat(certificate["issued_at"])
    latest = issued + timedelta(days=harness.config.grace_days) + retention
    assert certificate["ledger_backups_beyond_use_by"] == latest.date().isoformat()
