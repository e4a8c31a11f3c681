"""A per-child proof of a class order: this child's pseudonym is in a batch whose signed receipt is in the log.

A class order erases its subjects in batches, with one receipt per (system, batch) whose subject digest is the RFC
9162 Merkle root over the batch's pseudonyms (leaves = the raw 32 bytes, in order; evidence/batch_receipt.py). A
child's proof, one per system, is a JSON document:

    {
      "type": "https://erasure-orchestrator.dev/child-proof/v1",
      "pseudonym": "<hex: the child's per-request pseudonym>",
      "batch_path": {"position": <the child's leaf index in the batch>, "hashes": ["<hex>", ...]},
      "receipt": "<base64: the batch receipt's DSSE envelope, exact bytes>",
      "log_inclusion": {"leaf_index": n, "tree_size": n, "hashes": ["<hex>", ...]},
      "checkpoint": "<the signed checkpoint note of the log at tree_size>"
    }

It reveals no other child: the batch path holds only sibling hashes (of other pseudonyms, themselves keyed HMACs),
and the receipt holds counts. Whoever is given the child's pseudonym (by the operator, who alone holds the key that
makes it) checks the proof offline with the operator's public key; `verify_child_proof` runs these steps in order
and fails closed at the first one that fails, with a VerificationError:

 (1) The document is read strictly: JSON without duplicate keys, exactly the fields above, each of its type, hashes
     of 32 bytes in lower-case hex, at most 64 hashes per path.
 (2) The checkpoint is a C2SP signed note, signed by a trusted key under a key name equal to its origin, at the
     tree size the log inclusion names.
 (3) The receipt is a DSSE envelope of payload type application/vnd.in-toto+json signed by a trusted key, holding
     an in-toto Statement v1 of the batch receipt predicate type.
 (4) The receipt's one subject names its request, system and batch (as its predicate does), and its digest is the
     batch root of the predicate.
 (5) The batch path leads from the leaf hash of the pseudonym's raw bytes, at its position in a tree of the
     receipt's batch size, to the batch root (RFC 9162 section 2.1.3.2).
 (6) The log inclusion leads from the leaf hash of the receipt's exact bytes to the checkpoint's root.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence._json import canonical, exact_fields, loads_strict, typed
from evidence.batch_receipt import BATCH_RECEIPT_PREDICATE_TYPE, MERKLE_DIGEST, batch_subject_name
from evidence.checkpoint import open_checkpoint
from evidence.dsse import Envelope, verify_envelope
from evidence.errors import VerificationError
from evidence.keys import keyid_of
from evidence.merkle import MemoryTree, inclusion_proof, leaf_hash, verify_inclusion
from evidence.statement import parse_statement

CHILD_PROOF_TYPE = "https://erasure-orchestrator.dev/child-proof/v1"
_FIELDS = {"type", "pseudonym", "batch_path", "receipt", "log_inclusion", "checkpoint"}
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_MAX_PATH = 64  # a tree of 2**63 leaves needs fewer


@dataclass(frozen=True)
class LogInclusion:
    """Where the receipt is in the log, and the path from it to the checkpoint's root."""

    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ChildProofReport:
    """What a verified proof shows; the checks passed, one line each, in order."""

    checks: list[str]
    request_id: str
    system: str
    batch: int
    batch_subjects: int
    evidence_level: str
    records_before: int | None
    records_after: int | None
    log_origin: str
    tree_size: int


def child_proof(
    pseudonym: bytes,
    batch: Sequence[bytes],
    receipt: bytes,
    log_inclusion: LogInclusion,
    checkpoint_note: str,
) -> bytes:
    """The proof document (canonical JSON) for the child of `pseudonym` among its batch's pseudonyms, in order.

    `receipt` is the batch receipt's envelope as logged, `log_inclusion` its path to the root of `checkpoint_note`.
    A pseudonym outside the batch is a caller bug (ValueError): there is nothing to prove.
    """
    if pseudonym not in batch:
        raise ValueError("child proof: the pseudonym is not in the batch")
    tree = MemoryTree()
    for leaf in batch:
        tree.append(leaf)
    position = batch.index(pseudonym)
    return canonical(
        {
            "type": CHILD_PROOF_TYPE,
            "pseudonym": pseudonym.hex(),
            "batch_path": {
                "position": position,
                "hashes": [h.hex() for h in inclusion_proof(position, len(batch), tree)],
            },
            "receipt": base64.b64encode(receipt).decode("ascii"),
            "log_inclusion": {
                "leaf_index": log_inclusion.leaf_index,
                "tree_size": log_inclusion.tree_size,
                "hashes": [h.hex() for h in log_inclusion.hashes],
            },
            "checkpoint": checkpoint_note,
        }
    )


def verify_child_proof(
    document: bytes, trusted_keys: Sequence[Ed25519PublicKey], *, pseudonym: bytes | None = None
) -> ChildProofReport:
    """Verify a child's proof with the operator's public keys, obtained separately; VerificationError at the first
    failed step. With `pseudonym` (the one the operator gave for this child), the proof must be about that one."""
    if not trusted_keys:
        raise VerificationError("no trusted key given: expected the operator's public key, obtained separately")
    trusted = {keyid_of(key): key for key in trusted_keys}

    # (1)
    proof = exact_fields(loads_strict(document, "child proof"), _FIELDS, "child proof")
    if proof["type"] != CHILD_PROOF_TYPE:
        raise VerificationError(f"child proof has wrong type: expected {CHILD_PROOF_TYPE!r}, got {proof['type']!r}")
    child = _hash(typed(proof, "pseudonym", str, "child proof"), "child proof pseudonym")
    if pseudonym is not None and child != pseudonym:
        raise VerificationError("child proof is about another pseudonym than the one given")
    batch_path = exact_fields(proof["batch_path"], {"position", "hashes"}, "child proof batch_path")
    position = _count(batch_path, "position", "child proof batch_path")
    path = _hashes(batch_path, "child proof batch_path")
    receipt = _base64(typed(proof, "receipt", str, "child proof"), "child proof receipt")
    inclusion = exact_fields(proof["log_inclusion"], {"leaf_index", "tree_size", "hashes"}, "child proof log_inclusion")
    log = LogInclusion(
        _count(inclusion, "leaf_index", "child proof log_inclusion"),
        _count(inclusion, "tree_size", "child proof log_inclusion"),
        _hashes(inclusion, "child proof log_inclusion"),
    )
    note = typed(proof, "checkpoint", str, "child proof")
    checks = ["proof document is exact: a pseudonym, a batch path, a receipt, its log inclusion and a checkpoint"]

    # (2)
    origin = note.split("\n", 1)[0]  # the key name must equal the origin; the signature covers that line
    try:
        checkpoint = open_checkpoint(note, [(origin, key) for key in trusted.values()])
    except VerificationError as exc:
        raise VerificationError(f"child proof checkpoint: {exc}") from exc
    if checkpoint.size != log.tree_size:
        raise VerificationError(
            f"child proof log inclusion is for another tree size: expected {checkpoint.size}, got {log.tree_size}"
        )
    checks.append(f"checkpoint of log {checkpoint.origin} at size {checkpoint.size} is signed by a trusted key")

    # (3)
    try:
        statement = parse_statement(verify_envelope(Envelope.from_json(receipt), trusted))
    except VerificationError as exc:
        raise VerificationError(f"child proof receipt: {exc}") from exc
    if statement["predicateType"] != BATCH_RECEIPT_PREDICATE_TYPE:
        raise VerificationError(
            f"child proof receipt has wrong predicate type: expected {BATCH_RECEIPT_PREDICATE_TYPE!r}, "
            f"got {statement['predicateType']!r}"
        )
    checks.append("receipt is a batch receipt signed by a trusted key")

    # (4)
    predicate = statement["predicate"]
    facts = _batch_facts(predicate)
    root = _named_root(statement["subject"], facts)
    checks.append(f"receipt names batch {facts['batch']} of system {facts['system']} and its merkle root")

    # (5)
    try:
        verify_inclusion(leaf_hash(child), position, facts["subjects"], path, root)
    except VerificationError as exc:
        raise VerificationError(f"child proof batch path: {exc}") from exc
    checks.append(f"pseudonym is subject {position} of the batch's {facts['subjects']}")

    # (6)
    try:
        verify_inclusion(leaf_hash(receipt), log.leaf_index, log.tree_size, log.hashes, checkpoint.root_hash)
    except VerificationError as exc:
        raise VerificationError(f"child proof log inclusion: {exc}") from exc
    checks.append(f"receipt is entry {log.leaf_index} of the log at size {checkpoint.size}")

    return ChildProofReport(
        checks=checks,
        request_id=facts["request_id"],
        system=facts["system"],
        batch=facts["batch"],
        batch_subjects=facts["subjects"],
        evidence_level=typed(predicate, "evidence_level", str, "child proof receipt predicate"),
        records_before=_optional_count(predicate, "records_before"),
        records_after=_optional_count(predicate, "records_after"),
        log_origin=checkpoint.origin,
        tree_size=checkpoint.size,
    )


def _batch_facts(predicate: Mapping[str, Any]) -> dict[str, Any]:
    what = "child proof receipt predicate"
    facts = {
        "request_id": typed(predicate, "request_id", str, what),
        "system": typed(predicate, "system", str, what),
        "batch": _count(predicate, "batch", what),
        "subjects": _count(predicate, "subjects", what),
        "batch_root": _hash(typed(predicate, "batch_root", str, what), f"{what} batch_root"),
    }
    if facts["subjects"] < 1:
        raise VerificationError(f"{what} field 'subjects' is out of range: expected at least 1, got 0")
    return facts


def _named_root(subjects: Any, facts: Mapping[str, Any]) -> bytes:
    """The batch root, once the receipt's one subject names this batch and carries the predicate's root."""
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise VerificationError("child proof receipt has wrong subjects: expected exactly one, the batch")
    subject = exact_fields(subjects[0], {"name", "digest"}, "child proof receipt subject")
    expected = batch_subject_name(facts["request_id"], facts["system"], facts["batch"])
    if subject["name"] != expected:
        raise VerificationError(
            f"child proof receipt subject names another batch: expected {expected!r}, got {subject['name']!r}"
        )
    digest = exact_fields(subject["digest"], {MERKLE_DIGEST}, "child proof receipt subject digest")
    root = _hash(typed(digest, MERKLE_DIGEST, str, "child proof receipt subject digest"), "receipt subject digest")
    if root != facts["batch_root"]:
        raise VerificationError(
            f"child proof receipt subject digest is not its batch root: expected {facts['batch_root'].hex()}, "
            f"got {root.hex()}"
        )
    return root


def _hashes(document: Mapping[str, Any], what: str) -> tuple[bytes, ...]:
    values = typed(document, "hashes", list, what)
    if len(values) > _MAX_PATH:
        raise VerificationError(f"{what} has too many hashes: expected <= {_MAX_PATH}, got {len(values)}")
    return tuple(_hash(value, f"{what} hash") for value in values)


def _hash(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX_HASH.fullmatch(value):
        raise VerificationError(f"{what} is not a hash: expected 64 lower-case hex characters")
    return bytes.fromhex(value)


def _count(document: Mapping[str, Any], key: str, what: str) -> int:
    value: int = typed(document, key, int, what)
    if value < 0:
        raise VerificationError(f"{what} field {key!r} is out of range: expected >= 0, got {value}")
    return value


def _optional_count(predicate: Mapping[str, Any], key: str) -> int | None:
    value = predicate.get(key)
    return None if value is None else _count(predicate, key, "child proof receipt predicate")


def _base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise VerificationError(f"{what} is not valid standard base64") from exc
