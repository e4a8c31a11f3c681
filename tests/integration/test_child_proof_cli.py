"""One child's proof of a class order through the command line: made by the operator from an identifier read on
standard input, checked offline by `erasure evidence verify-proof`; a tampered proof, a neighbour outside the class
and a shredded request each get exit 1 and one line that does not echo the identifier."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from activities.class_order import SEALED_CLASS
from domain.classes import subject_from_canonical
from domain.model import IdentifierType, Subject
from evidence.keys import public_key_pem
from stores.pseudonyms import subject_pseudonym
from tests.integration.approval import approve
from tests.integration.conftest import Harness
from tests.integration.test_class_order import plant, submit

BATCH_SIZE = 100


@pytest.fixture
def app_schema(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    return f"app_{uuid.uuid4().hex[:12]}"


def class_pseudonyms(harness: Harness, request_id: str) -> dict[bytes, Subject]:
    """Every subject of the sealed class by its pseudonym."""
    vault = harness.services.vault
    forms = vault.open(request_id, SEALED_CLASS)["subjects"]
    with harness.services.pool.connection() as conn:
        keyed = vault.pseudonyms(conn, request_id)
    subjects = [subject_from_canonical(f.encode()) for f in forms]
    return {subject_pseudonym(keyed, s): s for s in subjects}


async def test_one_child_is_proven_and_verified_offline_and_no_one_else_is(
    harness: Harness, database_url: str, app_schema: str, tmp_path: Path
) -> None:
    groups = plant(database_url, app_schema)
    async with harness.worker():
        request_id, count = await submit(harness, app_schema, BATCH_SIZE)
        await approve(harness.client, request_id)
        status = await harness.wait_certified(request_id, timeout_s=180)
    assert status["outcome"] == "complete"
    env = harness.process_env()
    key = tmp_path / "operator.pem"
    key.write_bytes(public_key_pem(harness.services.tlog.signer.public_key))
    out = tmp_path / "proofs"
    out.mkdir()

    child = f"kid{groups['child'][41]}@example.org"
    made = await harness.cli(env, "evidence", "prove", request_id, "--email", "--out", str(out), stdin=child + "\n")
    assert made.returncode == 0, made.stderr
    proof = out / "app_db.proof.json"
    assert sorted(p.name for p in out.iterdir()) == ["app_db.proof.json"]
    pseudonym = json.loads(proof.read_bytes())["pseudonym"]
    assert f"--pseudonym): {pseudonym}" in made.stdout

    verified = await harness.cli(
        env, "evidence", "verify-proof", str(proof), "--trusted-key", str(key), "--pseudonym", pseudonym
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"request {request_id}, system app_db" in verified.stdout and "verified_absent" in verified.stdout

    # the same child by another identifier, printed as one JSON line: the same proof
    by_id = await harness.cli(env, "evidence", "prove", request_id, "--user-id", stdin=str(groups["child"][41]))
    assert by_id.returncode == 0, by_id.stderr
    assert [json.loads(line) for line in by_id.stdout.splitlines()] == [json.loads(proof.read_bytes())]

    # the proof shows this child only: no other child's pseudonym is in it
    everyone = class_pseudonyms(harness, request_id)
    assert len(everyone) == count and everyone[bytes.fromhex(pseudonym)].values(IdentifierType.EMAIL) == (child,)
    text = proof.read_text()
    assert [p for p in everyone if p.hex() in text] == [bytes.fromhex(pseudonym)]

    # a tampered proof: the child moved to another place in its batch
    document = json.loads(proof.read_bytes())
    document["batch_path"]["position"] ^= 1
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(document))
    rejected = await harness.cli(env, "evidence", "verify-proof", str(tampered), "--trusted-key", str(key))
    assert rejected.returncode == 1 and "batch path" in rejected.stderr

    # neighbours just outside the class: a 13th birthday on the cutoff, another tenant's look-alike address
    for neighbour in (f"kid{groups['child'][0]}@example.org.uk", f"Kid{groups['child'][0]}@example.org"):
        refused = await harness.cli(env, "evidence", "prove", request_id, "--email", stdin=neighbour)
        assert refused.returncode == 1 and refused.stdout == ""
        assert "not a subject of class order" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert "kid" not in refused.stderr.lower()

    with harness.services.pool.connection() as conn, conn.transaction():
        assert harness.services.vault.destroy(conn, request_id)
    shredded = await harness.cli(env, "evidence", "prove", request_id, "--email", stdin=child)
    assert shredded.returncode == 1 and shredded.stdout == ""
    assert "key is gone" in shredded.stderr and len(shredded.stderr.strip().splitlines()) == 1
    assert "kid" not in shredded.stderr.lower()


async def test_bad_arguments_exit_2_before_anything_is_read(harness: Harness, tmp_path: Path) -> None:
    env = harness.process_env()
    request_id = "0b7e4a52-8f1c-4d6e-9a3b-5c2d1e0f9a87"
    readable = tmp_path / "address.txt"
    readable.write_text("kid1@example.org\n")
    readable.chmod(0o644)
    for args, stdin, field in (
        (("--email", "--from-file", str(readable)), "", "expected mode 0600"),
        (("--email", "--phone"), "kid1@example.org", "expected one type, got 2"),
        (("--email",), "not an address", "an email must look like"),
    ):
        result = await harness.cli(env, "evidence", "prove", request_id, *args, stdin=stdin)
        assert result.returncode == 2 and field in result.stderr, result.stderr
        assert "kid1" not in result.stderr and "not an address" not in result.stderr
