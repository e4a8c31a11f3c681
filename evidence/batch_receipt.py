"""A class order's evidence: one receipt per (system, batch), and the certificate over all of them.

A batch receipt is an in-toto Statement v1 whose one subject is the batch: its name says request, system and batch
index, its digest is the RFC 9162 Merkle root (SHA-256) over the batch's subjects' pseudonyms in order
(domain/classes.py). The predicate holds the batch's size, counts before and after, the commitment to the deleted
keys and the evidence level. The certificate names every batch receipt by path and SHA-256 of its envelope.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evidence._json import canonical
from evidence.statement import (
    CERTIFICATE_PREDICATE_TYPE,
    EVIDENCE_LEVELS,
    STATEMENT_TYPE,
    CertificateFacts,
)

BATCH_RECEIPT_PREDICATE_TYPE = "https://erasure-orchestrator.dev/batch-receipt/v1"
CANCELLATION_PREDICATE_TYPE = "https://erasure-orchestrator.dev/class-cancellation/v1"
CANCELLATION = "cancellation"  # the log's action of a cancelled class order's statement
CLEAN_UP_FILE = "clean-up.dsse.json"
CLEAN_UP = "clean_up"  # the action of a system's clean-up receipt, an ordinary receipt (receipt/v1)
MERKLE_DIGEST = "rfc9162_sha256"  # the subject digest's algorithm: a Merkle tree head, not a file's hash


@dataclass(frozen=True)
class BatchFacts:
    request_id: str
    system: str
    category: str
    connector: str
    batch: int
    subjects: int
    batch_root: str  # hex
    evidence_level: str
    records_before: int | None
    records_after: int | None
    locations: Mapping[str, tuple[int | None, int | None]]
    blocked: int
    key_commitment: str | None
    key_count: int
    detail: str
    workflow_id: str
    run_id: str
    activity_id: str
    code_version: str
    started_at: str
    finished_at: str

    def __post_init__(self) -> None:
        if self.evidence_level not in EVIDENCE_LEVELS:
            raise ValueError(f"invalid evidence_level: {self.evidence_level!r}")
        if self.batch < 0 or self.subjects < 1 or len(self.batch_root) != 64:
            raise ValueError("invalid batch: expected an index from 0, a size from 1 and a 32-byte root")


# the weakest level first: a system's line in a class certificate is its weakest batch's
WEAKEST_FIRST = ("failed", "blocked", "accepted", "vendor_attested", "verified_absent")


def weakest_level(levels: Iterable[str]) -> str:
    seen = set(levels)
    unknown = seen - set(WEAKEST_FIRST)
    if not seen or unknown:
        raise ValueError(f"expected evidence levels, got {sorted(unknown) or 'none'}")
    return next(level for level in WEAKEST_FIRST if level in seen)


def batch_path(system: str, batch: int) -> str:
    """Where a batch's receipt lies in a bundle, and how the certificate names it."""
    return f"receipts/{system}/batch-{batch:06d}.dsse.json"


def clean_up_path(system: str) -> str:
    """Where a system's clean-up receipt lies in a bundle: beside its batches, which it completes."""
    return f"receipts/{system}/{CLEAN_UP_FILE}"


def batch_subject_name(request_id: str, system: str, batch: int) -> str:
    """The in-toto subject name of a batch receipt (its digest is the batch's Merkle root)."""
    return f"erasure-request/{request_id}/{system}/batch/{batch}"


def batch_receipt_statement(facts: BatchFacts) -> bytes:
    predicate = {field.name: getattr(facts, field.name) for field in dataclasses.fields(facts)}
    predicate["locations"] = {name: {"before": b, "after": a} for name, (b, a) in facts.locations.items()}
    subject = {
        "name": batch_subject_name(facts.request_id, facts.system, facts.batch),
        "digest": {MERKLE_DIGEST: facts.batch_root},
    }
    return canonical(
        {
            "_type": STATEMENT_TYPE,
            "subject": [subject],
            "predicateType": BATCH_RECEIPT_PREDICATE_TYPE,
            "predicate": predicate,
        }
    )


def class_cancellation_statement(
    request_id: str, reason: str, receipts: Mapping[str, bytes], facts: Mapping[str, Any]
) -> bytes:
    """A cancelled class order's statement: one subject per batch receipt logged before it stopped (path -> envelope),
    the operator's reason, and `facts` (batches done and planned, log origin, code version, time)."""
    subjects = [
        {"name": path, "digest": {"sha256": hashlib.sha256(receipts[path]).hexdigest()}} for path in sorted(receipts)
    ]
    predicate = {"request_id": request_id, "reason": reason, **facts}
    return canonical(
        {
            "_type": STATEMENT_TYPE,
            "subject": subjects or [{"name": f"erasure-request/{request_id}", "digest": {"sha256": _NOTHING}}],
            "predicateType": CANCELLATION_PREDICATE_TYPE,
            "predicate": predicate,
        }
    )


_NOTHING = hashlib.sha256(b"").hexdigest()  # the subject of a cancellation before any batch was done


def class_certificate_statement(
    facts: CertificateFacts, receipts: Mapping[str, bytes], class_facts: Mapping[str, Any]
) -> bytes:
    """The certificate of a class order: one subject per batch receipt (path -> envelope); each system's line names
    the folder of its batch receipts, and `class` holds the count, Merkle root and snapshot time of the subjects."""
    for outcome in facts.systems:
        if not any(path.startswith(outcome.receipt) for path in receipts):
            raise ValueError(f"certificate names a system without batch receipts: {outcome.system}")
    subjects = [
        {"name": path, "digest": {"sha256": hashlib.sha256(receipts[path]).hexdigest()}} for path in sorted(receipts)
    ]
    predicate = {**dataclasses.asdict(facts), "class": dict(class_facts)}
    return canonical(
        {
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": CERTIFICATE_PREDICATE_TYPE,
            "predicate": predicate,
        }
    )
