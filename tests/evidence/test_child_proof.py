"""A child's proof in a class order: valid proofs verify offline; every tampered part is rejected.

The batch receipts are made as the class order makes them (evidence/batch_receipt.py), signed into a log that
already holds other entries; the pseudonyms are 32 random bytes, as HMACs are.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erasure.cli import app
from evidence.batch_receipt import BatchFacts, batch_receipt_statement
from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.child_proof import CHILD_PROOF_TYPE, LogInclusion, child_proof, verify_child_proof
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer, public_key_pem
from evidence.merkle import MemoryTree, inclusion_proof

ORIGIN = "erasure-orchestrator.test/log"
REQUEST_ID = "0b7e4a52-8f1c-4d6e-9a3b-5c2d1e0f9a87"
BATCH_SIZE = 7


@dataclass
class ClassLog:
    pseudonyms: list[bytes]  # sorted, as the sealed class is
    receipts: dict[int, tuple[bytes, int]]  # batch -> (envelope, leaf index)
    log: MemoryTree
    note: str


def batch_root(pseudonyms: list[bytes]) -> bytes:
    tree = MemoryTree()
    for p in pseudonyms:
        tree.append(p)
    return tree.root()


def receipt(signer: Ed25519Signer, batch: int, members: list[bytes], request_id: str = REQUEST_ID) -> bytes:
    facts = BatchFacts(
        request_id=request_id,
        system="app_db",
        category="storage",
        connector="postgres",
        batch=batch,
        subjects=len(members),
        batch_root=batch_root(members).hex(),
        evidence_level="verified_absent",
        records_before=11 * len(members),
        records_after=0,
        locations={"users": (len(members), 0)},
        blocked=0,
        key_commitment=None,
        key_count=11 * len(members),
        detail="",
        workflow_id=f"{request_id}/app_db/batch/{batch}",
        run_id="run",
        activity_id="7",
        code_version="test",
        started_at="2026-12-01T10:00:00+00:00",
        finished_at="2026-12-01T10:00:01+00:00",
    )
    return sign_envelope(batch_receipt_statement(facts), IN_TOTO_PAYLOAD_TYPE, signer).to_json()


@pytest.fixture(scope="module")
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture(scope="module")
def class_log(signer: Ed25519Signer) -> ClassLog:
    pseudonyms = sorted(os.urandom(32) for _ in range(3 * BATCH_SIZE - 2))  # a short last batch
    log = MemoryTree()
    for i in range(5):
        log.append(b"an earlier entry %d" % i)
    receipts = {}
    for batch, start in enumerate(range(0, len(pseudonyms), BATCH_SIZE)):
        envelope = receipt(signer, batch, pseudonyms[start : start + BATCH_SIZE])
        receipts[batch] = (envelope, log.append(envelope))
    log.append(b"a later entry")
    note = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer, ORIGIN)
    return ClassLog(pseudonyms, receipts, log, note)


def prove(class_log: ClassLog, child: int, note: str | None = None) -> bytes:
    batch = child // BATCH_SIZE
    envelope, index = class_log.receipts[batch]
    members = class_log.pseudonyms[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE]
    size = class_log.log.size
    inclusion = LogInclusion(index, size, tuple(inclusion_proof(index, size, class_log.log)))
    return child_proof(class_log.pseudonyms[child], members, envelope, inclusion, note or class_log.note)


def edited(document: bytes, change: dict[str, object]) -> bytes:
    proof = json.loads(document)
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        target = proof
        for key in parents:
            target = target[key]
        target[last] = value
    return json.dumps(proof).encode()


@pytest.mark.parametrize("child", [0, 3, BATCH_SIZE - 1, BATCH_SIZE, 2 * BATCH_SIZE + 2, 3 * BATCH_SIZE - 3])
def test_a_childs_proof_verifies_offline(class_log: ClassLog, signer: Ed25519Signer, child: int) -> None:
    report = verify_child_proof(prove(class_log, child), [signer.public_key], pseudonym=class_log.pseudonyms[child])

    batch = child // BATCH_SIZE
    assert (report.request_id, report.system, report.batch) == (REQUEST_ID, "app_db", batch)
    assert report.batch_subjects == len(class_log.pseudonyms[batch * BATCH_SIZE : (batch + 1) * BATCH_SIZE])
    assert (report.evidence_level, report.records_after) == ("verified_absent", 0)
    assert (report.log_origin, report.tree_size) == (ORIGIN, class_log.log.size)
    assert len(report.checks) == 6


def test_a_proof_reveals_no_other_child(class_log: ClassLog) -> None:
    document = prove(class_log, 3)

    proof = json.loads(document)
    assert proof["type"] == CHILD_PROOF_TYPE
    others = [p for i, p in enumerate(class_log.pseudonyms) if i != 3]
    decoded = document + base64.b64decode(proof["receipt"])
    for other in others:
        for form in (other.hex().encode(), base64.b64encode(other), other):
            assert form not in decoded
    assert len(proof["batch_path"]["hashes"]) == 3  # siblings only: log2 of the batch of 7, rounded up


def test_a_proof_about_another_pseudonym_than_the_one_given_is_rejected(
    class_log: ClassLog, signer: Ed25519Signer
) -> None:
    with pytest.raises(VerificationError, match="^child proof is about another pseudonym than the one given$"):
        verify_child_proof(prove(class_log, 3), [signer.public_key], pseudonym=class_log.pseudonyms[4])


def swap_pseudonym(class_log: ClassLog) -> bytes:
    return edited(prove(class_log, 3), {"pseudonym": class_log.pseudonyms[4].hex()})  # a neighbour in the batch


def tamper_path(class_log: ClassLog) -> bytes:
    proof = json.loads(prove(class_log, 3))
    proof["batch_path"]["hashes"][1] = hashlib.sha256(b"forged").hexdigest()
    return json.dumps(proof).encode()


def move_position(class_log: ClassLog) -> bytes:
    return edited(prove(class_log, 3), {"batch_path.position": 4})


def another_batch_receipt(class_log: ClassLog) -> bytes:
    return edited(prove(class_log, 3), {"receipt": base64.b64encode(class_log.receipts[1][0]).decode()})


def tamper_receipt(class_log: ClassLog) -> bytes:
    envelope = json.loads(class_log.receipts[0][0])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["subjects"] = BATCH_SIZE + 1  # claims a larger batch
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return edited(prove(class_log, 3), {"receipt": base64.b64encode(json.dumps(envelope).encode()).decode()})


def tamper_log_path(class_log: ClassLog) -> bytes:
    proof = json.loads(prove(class_log, 3))
    proof["log_inclusion"]["hashes"][0] = hashlib.sha256(b"forged").hexdigest()
    return json.dumps(proof).encode()


def tamper_checkpoint(class_log: ClassLog) -> bytes:
    forged = class_log.note.replace(f"\n{class_log.log.size}\n", f"\n{class_log.log.size + 1}\n")
    return edited(prove(class_log, 3), {"checkpoint": forged, "log_inclusion.tree_size": class_log.log.size + 1})


def checkpoint_of_another_size(class_log: ClassLog, signer: Ed25519Signer) -> bytes:
    earlier = MemoryTree()
    for i in range(5):
        earlier.append(b"an earlier entry %d" % i)
    note = sign_checkpoint(Checkpoint(ORIGIN, earlier.size, earlier.root()), signer, ORIGIN)
    return prove(class_log, 3, note)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (swap_pseudonym, "^child proof batch path: inclusion proof leads to wrong root"),
        (tamper_path, "^child proof batch path: inclusion proof leads to wrong root"),
        (move_position, "^child proof batch path: inclusion proof"),
        (another_batch_receipt, "^child proof batch path: inclusion proof leads to wrong root"),
        (tamper_receipt, "^child proof receipt: envelope signature does not verify"),
        (tamper_log_path, "^child proof log inclusion: inclusion proof leads to wrong root"),
        (tamper_checkpoint, "^child proof checkpoint: checkpoint signature does not verify"),
    ],
)
def test_a_tampered_proof_is_rejected(class_log: ClassLog, signer: Ed25519Signer, tamper, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VerificationError, match=message):
        verify_child_proof(tamper(class_log), [signer.public_key])


def test_a_checkpoint_of_another_tree_size_is_rejected(class_log: ClassLog, signer: Ed25519Signer) -> None:
    with pytest.raises(VerificationError, match="^child proof log inclusion is for another tree size: expected 5"):
        verify_child_proof(checkpoint_of_another_size(class_log, signer), [signer.public_key])


def test_a_proof_signed_by_another_key_is_rejected(class_log: ClassLog, signer: Ed25519Signer) -> None:
    other = Ed25519Signer.generate()
    with pytest.raises(VerificationError, match="^child proof checkpoint: checkpoint is not signed by a trusted key"):
        verify_child_proof(prove(class_log, 3), [other.public_key])
    with pytest.raises(VerificationError, match="^no trusted key given"):
        verify_child_proof(prove(class_log, 3), [])


def test_a_proof_resigned_by_another_key_is_rejected(class_log: ClassLog, signer: Ed25519Signer) -> None:
    """A forger with a key of their own signs a receipt and checkpoint for a batch that holds the child."""
    forger = Ed25519Signer.generate()
    members = class_log.pseudonyms[:BATCH_SIZE]
    log = MemoryTree()
    envelope = receipt(forger, 0, members)
    log.append(envelope)
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, log.root()), forger, ORIGIN)
    forged = child_proof(members[3], members, envelope, LogInclusion(0, 1, ()), note)

    assert verify_child_proof(forged, [forger.public_key]).batch == 0  # well formed: only the key tells
    with pytest.raises(VerificationError, match="^child proof checkpoint: checkpoint is not signed by a trusted key"):
        verify_child_proof(forged, [signer.public_key])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "https://example.com/other"}, "^child proof has wrong type"),
        ({"pseudonym": "AB" * 32}, "^child proof pseudonym is not a hash"),
        ({"batch_path.position": -1}, "^child proof batch_path field 'position' is out of range"),
        ({"batch_path.position": True}, "^child proof batch_path field 'position' has wrong type"),
        ({"batch_path.hashes": ["00" * 32] * 65}, "^child proof batch_path has too many hashes"),
        ({"receipt": "not base64!"}, "^child proof receipt is not valid standard base64"),
        ({"log_inclusion.extra": 1}, "^child proof log_inclusion has wrong fields"),
    ],
)
def test_a_malformed_proof_is_rejected(
    class_log: ClassLog, signer: Ed25519Signer, change: dict[str, object], message: str
) -> None:
    with pytest.raises(VerificationError, match=message):
        verify_child_proof(edited(prove(class_log, 3), change), [signer.public_key])
    with pytest.raises(VerificationError, match="^child proof has wrong fields"):
        verify_child_proof(edited(prove(class_log, 3), {"extra": 1}), [signer.public_key])


def test_the_builder_refuses_a_pseudonym_outside_the_batch(class_log: ClassLog) -> None:
    envelope, index = class_log.receipts[0]
    with pytest.raises(ValueError, match="not in the batch"):
        child_proof(
            class_log.pseudonyms[BATCH_SIZE],
            class_log.pseudonyms[:BATCH_SIZE],
            envelope,
            LogInclusion(index, 1, ()),
            "",
        )


def test_the_cli_verifies_a_proof_and_rejects_a_tampered_one(
    class_log: ClassLog, signer: Ed25519Signer, tmp_path: Path
) -> None:
    key = tmp_path / "operator.pem"
    key.write_bytes(public_key_pem(signer.public_key))
    good, forged = tmp_path / "proof.json", tmp_path / "forged.json"
    good.write_bytes(prove(class_log, 3))
    forged.write_bytes(swap_pseudonym(class_log))
    child = class_log.pseudonyms[3].hex()

    verified = CliRunner().invoke(
        app, ["evidence", "verify-proof", str(good), "--trusted-key", str(key), "--pseudonym", child]
    )
    assert verified.exit_code == 0, verified.output
    assert "proof verified: request " + REQUEST_ID + ", system app_db, batch 0 of 7 subjects" in verified.output

    rejected = CliRunner().invoke(app, ["evidence", "verify-proof", str(forged), "--trusted-key", str(key)])
    assert rejected.exit_code == 1
    assert "verification failed" in rejected.output and "batch path" in rejected.output

    bad = CliRunner().invoke(
        app, ["evidence", "verify-proof", str(good), "--trusted-key", str(key), "--pseudonym", "not hex"]
    )
    assert bad.exit_code == 2 and "--pseudonym" in bad.output
