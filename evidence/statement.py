"""in-toto Statement v1 documents: a receipt per system and action, a certificate per request.

Both are canonical JSON (sorted keys, compact) so the same facts always give the same bytes. The facts validate
themselves when built; a ValueError there is a bug in the caller, never a verification failure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from evidence._json import canonical, loads_strict, typed
from evidence.errors import VerificationError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
RECEIPT_PREDICATE_TYPE = "https://erasure-orchestrator.dev/receipt/v1"
CERTIFICATE_PREDICATE_TYPE = "https://erasure-orchestrator.dev/certificate/v1"
AUTHORITY_PREDICATE_TYPE = "https://erasure-orchestrator.dev/authority/v1"
AUTHORITY_DECISIONS = frozenset({"verified", "rejected"})
DECISION_PREDICATE_TYPE = "https://erasure-orchestrator.dev/decision/v1"
DECISIONS = frozenset({"approved", "rejected", "cancelled"})

DONE_LEVELS = frozenset({"verified_absent", "vendor_attested", "accepted"})
EVIDENCE_LEVELS = DONE_LEVELS | {"blocked", "failed"}
# hold: a legal hold stopped the erasure; clean_up: a class order's one clean-up of a system after its batches
ACTIONS = frozenset({"erase", "hold", "shred", "clean_up"})
NOTICE_OUTCOMES = frozenset({"notified", "acknowledged", "not_confirmed", "failed", "not_notified"})

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_FACT_NAME = re.compile(r"[a-z0-9_.]{1,80}")
# enumerated words, versions, ids, hex digests, timestamps, and destination names declared in the catalogue
_FACT_WORD = re.compile(r"[A-Za-z0-9_.:+() -]{1,120}")


@dataclass(frozen=True)
class ReceiptFacts:
    """What one system did for one request. Nothing here may identify the child: counts, names and ids only."""

    request_id: str
    system: str
    category: str
    connector: str
    action: str
    evidence_level: str
    records_before: int | None
    records_after: int | None
    blocked: int
    locations: Mapping[str, tuple[int | None, int | None]]
    key_commitment: str | None
    key_count: int
    vendor_job_id: str | None
    vendor_status: str | None
    detail: str
    notes: tuple[str, ...]
    workflow_id: str
    run_id: str
    activity_id: str
    code_version: str
    started_at: str
    finished_at: str
    # the vendor's answers as typed facts (counts, enumerated words, validated ids, digests), never its raw strings
    vendor_facts: Mapping[str, str | int] = dataclasses.field(default_factory=dict)
    # where the subject's data remains although this system's own erasure is done: each needs its own erasure
    residual: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        for place in self.residual:
            _check(isinstance(place, str) and _FACT_WORD.fullmatch(place) is not None, "residual", "not a plain name")
        _check(bool(self.system) and "/" not in self.system and not self.system.isspace(), "system", self.system)
        _check(self.action in ACTIONS, "action", self.action)
        _check(self.evidence_level in EVIDENCE_LEVELS, "evidence_level", self.evidence_level)
        for name in ("records_before", "records_after", "blocked", "key_count"):
            _check_count(getattr(self, name), name)
        for before, after in self.locations.values():
            _check_count(before, "locations")
            _check_count(after, "locations")
        if self.key_commitment is not None:
            _check(bool(_HEX_DIGEST.fullmatch(self.key_commitment)), "key_commitment", "not 64 lowercase hex")
        _check_timestamp(self.started_at, "started_at")
        _check_timestamp(self.finished_at, "finished_at")
        for name, value in self.vendor_facts.items():
            _check(bool(_FACT_NAME.fullmatch(name)), "vendor_facts", name)
            _check(
                type(value) is int or (isinstance(value, str) and _FACT_WORD.fullmatch(value) is not None),
                "vendor_facts",
                f"{name} is neither a count nor a plain word",
            )

    @property
    def subject_name(self) -> str:
        return f"erasure-request/{self.request_id}/{self.system}/{self.action}"


@dataclass(frozen=True)
class SystemOutcome:
    """One line of the certificate: a system's evidence level and where its receipt is in the bundle."""

    system: str
    category: str
    evidence_level: str
    records_before: int | None
    records_after: int | None
    receipt: str
    residual: tuple[str, ...] = ()  # copies this system's erasure could not reach: the request is then not complete

    def __post_init__(self) -> None:
        _check(self.evidence_level in EVIDENCE_LEVELS, "evidence_level", self.evidence_level)
        _check_count(self.records_before, "records_before")
        _check_count(self.records_after, "records_after")


@dataclass(frozen=True)
class CertificateFacts:
    """What was asked, on what authority, and how each system ended. `outcome` must agree with the systems."""

    request_id: str
    kind: str
    legal_basis: str
    jurisdiction_reference: str
    received_at: str
    deadline: str
    days_overdue: int  # days from the deadline to the certificate, 0 when on time
    outcome: str
    outcome_reason: str
    systems: tuple[SystemOutcome, ...]
    exceptions: tuple[str, ...]
    log_origin: str
    code_version: str
    issued_at: str
    # the day the last backup of the orchestrator's ledger that can hold the request's sealed identifiers expires
    ledger_backups_beyond_use_by: str
    # how the subject's identifiers were resolved (counts per type, source names) and every reviewer's decision
    identity: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reviews: tuple[Mapping[str, Any], ...] = ()
    # who among the recipients of the data was told, how and when (GDPR Art. 19)
    recipients: tuple[Mapping[str, str], ...] = ()
    # every state the request entered before this certificate, with its actor, time and reason
    timeline: tuple[Mapping[str, str], ...] = ()
    # a guardian's authority: relationship, method, who verified it and when (or that it was verified at intake)
    authority: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    # the SHA-256 of the certificate envelope this one supersedes (issued while a legal hold stopped systems)
    supersedes: str = ""
    # who submitted the request and who approved it, when, and the signed record of the approval (empty where the
    # approval policy asked for none)
    approval: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(not self.supersedes or bool(_HEX_DIGEST.fullmatch(self.supersedes)), "supersedes", self.supersedes)
        for notice in self.recipients:
            _check(notice.get("outcome") in NOTICE_OUTCOMES, "recipients", notice.get("outcome"))
            _check_timestamp(notice.get("at", ""), "recipients")
        for step in self.timeline:
            _check_timestamp(step.get("at", ""), "timeline")
        _check(
            _is_date(self.ledger_backups_beyond_use_by),
            "ledger_backups_beyond_use_by",
            self.ledger_backups_beyond_use_by,
        )
        expected = outcome_for((s.evidence_level for s in self.systems), residual=any(s.residual for s in self.systems))
        _check(self.outcome == expected, "outcome", f"{self.outcome}, but the systems' levels give {expected}")
        _check(bool(self.log_origin) and "\n" not in self.log_origin, "log_origin", self.log_origin)
        _check_timestamp(self.received_at, "received_at")
        _check_timestamp(self.issued_at, "issued_at")
        _check(self.days_overdue >= 0, "days_overdue", f"{self.days_overdue}, but a delay is never negative")


@dataclass(frozen=True)
class AuthorityFacts:
    """A decision on a guardian's authority: verified (relationship, method, verifier) or rejected (the reason).
    Roles and methods only: the guardian's name and contact stay sealed in the vault."""

    request_id: str
    decision: str
    relationship: str
    method: str  # empty when rejected: nothing was verified
    verifier: str  # the operator who verified it, or "workflow" for a rejection when the time ran out
    decided_at: str
    reason: str

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(self.decision in AUTHORITY_DECISIONS, "decision", self.decision)
        for name in ("relationship", "method", "verifier"):
            value = getattr(self, name)
            _check(value == "" or _FACT_WORD.fullmatch(value) is not None, name, "not a plain word")
        _check(bool(self.verifier), "verifier", "none")
        _check_timestamp(self.decided_at, "decided_at")


def authority_statement(facts: AuthorityFacts) -> bytes:
    """The signed record of a decision on a guardian's authority; its subject names the request."""
    return _statement([request_subject(facts.request_id)], AUTHORITY_PREDICATE_TYPE, dataclasses.asdict(facts))


@dataclass(frozen=True)
class DecisionFacts:
    """An operator's decision on a previewed request, before anything was erased: who submitted it, who decided,
    when and why, and what the preview had located (records per system)."""

    request_id: str
    decision: str
    actor: str
    submitted_by: str
    reason: str
    at: str
    located: Mapping[str, int | None]
    workflow_id: str
    run_id: str
    code_version: str

    def __post_init__(self) -> None:
        _check_request_id(self.request_id)
        _check(self.decision in DECISIONS, "decision", self.decision)
        _check(bool(self.actor.strip()), "actor", self.actor)
        _check(self.decision != "approved" or self.actor != self.submitted_by, "actor", "the submitter approves")
        _check_timestamp(self.at, "at")
        for count in self.located.values():
            _check_count(count, "located")

    @property
    def subject_name(self) -> str:
        return f"erasure-request/{self.request_id}/decision/{self.decision}"


def decision_statement(facts: DecisionFacts) -> bytes:
    """The decision Statement: its subject names the request and the decision; the predicate holds every fact."""
    name = facts.subject_name
    subject = {"name": name, "digest": {"sha256": hashlib.sha256(name.encode("utf-8")).hexdigest()}}
    return _statement([subject], DECISION_PREDICATE_TYPE, dataclasses.asdict(facts))


def receipt_statement(facts: ReceiptFacts) -> bytes:
    """The receipt Statement: its subject names the request, system and action; the predicate holds every fact."""
    predicate = {field.name: getattr(facts, field.name) for field in dataclasses.fields(facts)}
    predicate["locations"] = {name: {"before": b, "after": a} for name, (b, a) in facts.locations.items()}
    name = facts.subject_name
    subject = {"name": name, "digest": {"sha256": hashlib.sha256(name.encode("utf-8")).hexdigest()}}
    return _statement([subject], RECEIPT_PREDICATE_TYPE, predicate)


def certificate_statement(facts: CertificateFacts, receipts: Mapping[str, bytes]) -> bytes:
    """The certificate Statement: one subject per receipt envelope (path in the bundle, SHA-256 of its bytes)."""
    unknown = sorted({s.receipt for s in facts.systems} - set(receipts))
    if unknown:
        raise ValueError(f"certificate names receipts it is not given: {unknown}")
    subjects = [
        {"name": path, "digest": {"sha256": hashlib.sha256(receipts[path]).hexdigest()}} for path in sorted(receipts)
    ]
    if not subjects:  # no system applied: an in-toto statement still needs a subject, so it names the request
        subjects = [request_subject(facts.request_id)]
    predicate = dataclasses.asdict(facts)  # systems become objects
    if not facts.supersedes:
        del predicate["supersedes"]  # only a superseding certificate names one: the others keep their bytes
    return _statement(subjects, CERTIFICATE_PREDICATE_TYPE, predicate)


def request_subject(request_id: str) -> dict[str, Any]:
    """The certificate's one subject when no system applied and so no receipt exists."""
    name = f"erasure-request/{request_id}"
    return {"name": name, "digest": {"sha256": hashlib.sha256(name.encode("utf-8")).hexdigest()}}


def parse_statement(payload: bytes) -> dict[str, Any]:
    """The Statement as a dict; VerificationError unless it is an in-toto Statement v1 with named, digested subjects."""
    statement = loads_strict(payload, "statement")
    if not isinstance(statement, dict):
        raise VerificationError(f"statement has wrong type: expected object, got {type(statement).__name__}")
    if statement.get("_type") != STATEMENT_TYPE:
        got = statement.get("_type")
        raise VerificationError(f"statement has wrong _type: expected {STATEMENT_TYPE!r}, got {got!r}")
    typed(statement, "predicateType", str, "statement")
    typed(statement, "predicate", dict, "statement")
    subjects = typed(statement, "subject", list, "statement")
    if not subjects:
        raise VerificationError("statement has no subject: expected at least 1, got 0")
    for subject in subjects:
        _check_subject(subject)
    return statement


def outcome_for(levels: Iterable[str], *, residual: bool = False) -> str:
    """complete if every system is done and no copy remains out of reach, incomplete if any failed (or none ran),
    else partial (some blocked, or residual copies that need their own erasure)."""
    seen = set(levels)
    unknown = seen - EVIDENCE_LEVELS
    if unknown:
        raise ValueError(f"unknown evidence levels: {sorted(unknown)}")
    if not seen or "failed" in seen:
        return "incomplete"
    return "complete" if seen <= DONE_LEVELS and not residual else "partial"


def _statement(subjects: list[dict[str, Any]], predicate_type: str, predicate: dict[str, Any]) -> bytes:
    statement = {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": predicate_type, "predicate": predicate}
    return canonical(statement)


def _check_subject(subject: Any) -> None:
    if not isinstance(subject, dict):
        raise VerificationError(f"statement subject has wrong type: expected object, got {type(subject).__name__}")
    typed(subject, "name", str, "statement subject")
    digest = typed(subject, "digest", dict, "statement subject")
    if not digest or not all(isinstance(v, str) for v in digest.values()):
        raise VerificationError("statement subject digest is malformed: expected algorithm-to-hex strings")


def _check(ok: bool, field: str, got: object) -> None:
    if not ok:
        raise ValueError(f"invalid {field}: {got!r}")


def _check_count(value: int | None, field: str) -> None:
    _check(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0), field, value)


def _check_request_id(request_id: str) -> None:
    try:
        uuid.UUID(request_id)
    except (ValueError, TypeError, AttributeError):
        _check(False, "request_id", "not a uuid")


def _is_date(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except (ValueError, TypeError):
        return False
    return len(value) == 10


def _check_timestamp(value: str, field: str) -> None:
    """RFC 3339 in UTC: a date and time with 'Z' or '+00:00'."""
    try:
        parsed = datetime.fromisoformat(value)
    except (ValueError, TypeError):
        parsed = None
    _check(parsed is not None and parsed.utcoffset() == timedelta(0), field, value)
