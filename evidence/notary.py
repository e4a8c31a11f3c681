"""The notary: the one place that decides what a receipt, a shredding record and a certificate state.

It turns what the ledger recorded and what the workflow concluded into in-toto Statements (unsigned bytes); the
transparency log store signs and appends them. Like the rest of `evidence/`, it knows nothing of Temporal or the
database, and reads no clock: every time is given.

    erase_receipt      one system's outcome for a request
    shred_receipt      the request's data key was destroyed
    certificate        the request's outcome over all its receipts, and the reason for it
    authority_record   a guardian's authority verified, or the request rejected for want of it
    decision_record    an operator approved, rejected or cancelled the request before anything was erased
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from evidence.bundle import receipt_path
from evidence.statement import (
    AuthorityFacts,
    CertificateFacts,
    DecisionFacts,
    ReceiptFacts,
    SystemOutcome,
    authority_statement,
    certificate_statement,
    decision_statement,
    outcome_for,
    receipt_statement,
)

REQUEST_SYSTEM = "*"  # the certificate and the shredding receipt belong to the request, not to one system
ERASE = "erase"
HOLD = "hold"  # a legal hold stopped the erasure: the system's data was restricted, or not processed
SHRED = "shred"
CERTIFICATE = "certificate"
LEGAL_CLAIMS = "GDPR Art. 17(3)(e): establishment, exercise or defence of legal claims"


def certificate_action(number: int) -> str:
    """How the log names a request's n-th certificate: each after the first supersedes the one before."""
    return CERTIFICATE if number == 1 else f"{CERTIFICATE}.{number}"


def certificate_number(action: str) -> int | None:
    """The n of a certificate's log action, None for any other action."""
    if action == CERTIFICATE:
        return 1
    prefix, _, n = action.partition(".")
    return int(n) if prefix == CERTIFICATE and n.isdigit() else None


AUTHORITY = "authority"  # the signed record of a decision on a guardian's authority
DECISION_ACTIONS = {"approved": "approval", "rejected": "rejection", "cancelled": "cancellation"}  # log actions


class TaskFacts(Protocol):
    """What the ledger recorded of one system's task: the ledger's task records have these fields."""

    @property
    def system(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def connector(self) -> str: ...
    @property
    def records_before(self) -> int | None: ...
    @property
    def records_after(self) -> int | None: ...
    @property
    def counts_before(self) -> Mapping[str, int] | None: ...
    @property
    def counts_after(self) -> Mapping[str, int] | None: ...
    @property
    def blocked(self) -> int: ...
    @property
    def key_commitment(self) -> str | None: ...
    @property
    def key_count(self) -> int: ...
    @property
    def vendor_job_id(self) -> str | None: ...
    @property
    def vendor_status(self) -> str | None: ...
    @property
    def vendor_facts(self) -> Mapping[str, str | int]: ...
    @property
    def residual(self) -> Sequence[str] | None: ...


@dataclass(frozen=True)
class Run:
    """Who did the work and when: the workflow run and activity, the code, and RFC 3339 times in UTC."""

    workflow_id: str
    run_id: str
    activity_id: str
    code_version: str
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class Request:
    """What was asked, and on what authority."""

    request_id: str
    kind: str
    legal_basis: str
    reference: str
    received_on: date
    deadline: date


@dataclass(frozen=True)
class Backups:
    """How long the ledger database's backups keep a copy: a destroyed key stays in them until they expire."""

    retention_days: float

    def beyond_use_by(self, shredded_at: str) -> date:
        """The day the last backup holding a key destroyed at `shredded_at` (RFC 3339) expires."""
        return (datetime.fromisoformat(shredded_at) + timedelta(days=self.retention_days)).date()


@dataclass(frozen=True)
class FinishedSystem:
    """How one system ended: its evidence level and the records found before and left after."""

    system: str
    category: str
    evidence_level: str
    records_before: int | None
    records_after: int | None
    residual: tuple[str, ...] = ()  # copies its erasure could not reach, each needing its own


@dataclass(frozen=True)
class Notice:
    """How one recipient of a system's data was told of the erasure (GDPR Art. 19), and when; `actor` is the
    operator who recorded a manual acknowledgement, `reason` why a recipient was not told or did not confirm."""

    system: str
    recipient: str
    role: str  # processor or third_party
    method: str  # webhook or manual
    outcome: str  # notified, acknowledged, not_confirmed, failed or not_notified
    at: datetime
    actor: str = ""
    reason: str = ""


@dataclass(frozen=True)
class StateStep:
    """One step of the request's timeline: the state it entered, who moved it there, when and why."""

    state: str
    actor: str
    reason: str
    at: datetime


def erase_receipt(
    request_id: str,
    task: TaskFacts,
    *,
    level: str,
    detail: str,
    notes: Sequence[str],
    run: Run,
    action: str = ERASE,
) -> bytes:
    """One system's receipt: the ledger's counts and commitments, with the level the workflow concluded (action
    `hold` for the hold receipt of a system a legal hold stopped before erasure)."""
    return receipt_statement(
        ReceiptFacts(
            request_id=request_id,
            system=task.system,
            category=task.category,
            connector=task.connector,
            action=action,
            evidence_level=level,
            records_before=task.records_before,
            records_after=task.records_after,
            blocked=task.blocked,
            locations=_locations(task.counts_before, task.counts_after),
            key_commitment=task.key_commitment,
            key_count=task.key_count,
            vendor_job_id=task.vendor_job_id,
            vendor_status=task.vendor_status,
            detail=detail,
            notes=tuple(notes),
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            activity_id=run.activity_id,
            code_version=run.code_version,
            started_at=run.started_at,
            finished_at=run.finished_at,
            vendor_facts=dict(task.vendor_facts),
            residual=tuple(task.residual or ()),
        )
    )


def authority_record(
    request_id: str, *, decision: str, relationship: str, method: str, verifier: str, decided_at: str, reason: str
) -> bytes:
    """The signed record of a guardian's authority verified, or of the request rejected because it never was."""
    return authority_statement(AuthorityFacts(request_id, decision, relationship, method, verifier, decided_at, reason))


def decision_record(
    request_id: str,
    decision: str,
    *,
    actor: str,
    submitted_by: str,
    reason: str,
    at: str,
    located: Mapping[str, int | None],
    run: Run,
) -> bytes:
    """The signed record of an operator's decision on a previewed request (the approver is never the submitter)."""
    return decision_statement(
        DecisionFacts(
            request_id=request_id,
            decision=decision,
            actor=actor,
            submitted_by=submitted_by,
            reason=reason,
            at=at,
            located=dict(located),
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            code_version=run.code_version,
        )
    )


def shred_receipt(request_id: str, reason: str, run: Run, *, backups: Backups) -> bytes:
    """The record that the request's data key is gone, what the check looked at, and where copies can remain."""
    return receipt_statement(
        ReceiptFacts(
            request_id=request_id,
            system="vault",
            category="orchestrator",
            connector="vault",
            action=SHRED,
            evidence_level="verified_absent",  # earned by the read-back below, and by nothing more
            records_before=1,
            records_after=0,
            blocked=0,
            locations={"vault_keys": (1, 0)},
            key_commitment=None,
            key_count=0,
            vendor_job_id=None,
            vendor_status=None,
            detail=(
                f"the request's data key was destroyed ({reason}): its sealed identifiers can no longer be read, "
                "and its ledger pseudonyms and key commitments, keyed by it, can no longer be recomputed or linked"
            ),
            notes=(
                "checked: the request's row of the ledger's vault_keys table was read back holding no wrapped key; "
                "this checks the live table only",
                "not checked, copies can remain: the wrapped key in the ledger database's write-ahead log and "
                "archives, in dead row versions until their space is reused, and in ledger backups taken before now",
                f"beyond use: ledger backups are kept {backups.retention_days:g} days, so the last copy expires by "
                f"{backups.beyond_use_by(run.finished_at).isoformat()}; a backup restored before then must have "
                "this shredding applied again before any use",
            ),
            workflow_id=run.workflow_id,
            run_id=run.run_id,
            activity_id=run.activity_id,
            code_version=run.code_version,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )
    )


def certificate(
    request: Request,
    systems: Iterable[FinishedSystem],
    receipts: Mapping[str, bytes],
    *,
    not_searched: Mapping[str, str],
    log_origin: str,
    code_version: str,
    issued_at: str,
    shredding_by: str,
    backups: Backups,
    identity: Mapping[str, Any] | None = None,
    reviews: Sequence[Mapping[str, Any]] = (),
    recipients: Sequence[Notice] = (),
    timeline: Sequence[StateStep] = (),
    held: Mapping[str, Sequence[str]] | None = None,
    supersedes: str = "",
    authority: Mapping[str, Any] | None = None,
    approval: Mapping[str, str] | None = None,
) -> bytes:
    """The request's certificate over its systems' receipts (system -> envelope), the only builder of one.
    `held` names the systems a legal hold stopped, with the holds' case references; `supersedes` is the SHA-256 of
    the certificate this one replaces."""
    facts = certificate_facts(
        request,
        systems,
        not_searched=not_searched,
        log_origin=log_origin,
        code_version=code_version,
        issued_at=issued_at,
        shredding_by=shredding_by,
        backups=backups,
        identity=identity,
        reviews=reviews,
        recipients=recipients,
        timeline=timeline,
        held=held,
        supersedes=supersedes,
        authority=authority,
        approval=approval,
    )
    return certificate_statement(facts, {receipt_path(system): envelope for system, envelope in receipts.items()})


def certificate_facts(
    request: Request,
    systems: Iterable[FinishedSystem],
    *,
    not_searched: Mapping[str, str],
    log_origin: str,
    code_version: str,
    issued_at: str,
    shredding_by: str,
    backups: Backups,
    identity: Mapping[str, Any] | None = None,
    reviews: Sequence[Mapping[str, Any]] = (),
    recipients: Sequence[Notice] = (),
    timeline: Sequence[StateStep] = (),
    held: Mapping[str, Sequence[str]] | None = None,
    supersedes: str = "",
    authority: Mapping[str, Any] | None = None,
    approval: Mapping[str, str] | None = None,
) -> CertificateFacts:
    """What the certificate states: the outcome follows from the levels, the reason counts them; the ledger's
        backups hold the request's sealed identifiers until they expire after the scheduled shredding (`shredding_by`,
        RFC 3339), the beyond-use date; the identity section says how the subject's identifiers were resolved and what
        each reviewer decided (counts, never values); who among the recipients of the data was told, how and when; and the
    request's timeline of states with their actors and times."""
    outcomes = tuple(
        SystemOutcome(
            s.system,
            s.category,
            s.evidence_level,
            s.records_before,
            s.records_after,
            receipt_path(s.system),
            residual=s.residual,
        )
        for s in sorted(systems, key=lambda s: s.system)
    )
    levels = [s.evidence_level for s in outcomes]
    residual = [(s.system, place) for s in outcomes for place in s.residual]
    return CertificateFacts(
        request_id=request.request_id,
        kind=request.kind,
        legal_basis=request.legal_basis,
        jurisdiction_reference=request.reference,
        received_at=f"{request.received_on.isoformat()}T00:00:00Z",
        deadline=request.deadline.isoformat(),
        days_overdue=max((date.fromisoformat(issued_at[:10]) - request.deadline).days, 0),
        outcome=outcome_for(levels, residual=bool(residual)),
        outcome_reason=outcome_reason(levels, residual=len(residual)),
        systems=outcomes,
        exceptions=tuple(f"{system}: not searched, {why}" for system, why in sorted(not_searched.items()))
        + tuple(
            f"{system}: the subject's data remains in {place}, which needs its own erasure"
            for system, place in residual
        )
        + tuple(
            f"{system}: not erased, restricted under legal hold (case {', '.join(cases)}): {LEGAL_CLAIMS}"
            for system, cases in sorted((held or {}).items())
        ),
        log_origin=log_origin,
        code_version=code_version,
        issued_at=issued_at,
        ledger_backups_beyond_use_by=backups.beyond_use_by(shredding_by).isoformat(),
        identity=dict(identity or {}),
        reviews=tuple(dict(r) for r in reviews),
        recipients=tuple(
            {**_without_time(n), "at": _rfc3339(n.at)}
            for n in sorted(recipients, key=lambda n: (n.system, n.recipient))
        ),
        timeline=tuple({**_without_time(step), "at": _rfc3339(step.at)} for step in timeline),
        supersedes=supersedes,
        authority=dict(authority or {}),
        approval=dict(approval or {}),
    )


def _without_time(fact: Notice | StateStep) -> dict[str, str]:
    return {name: value for name, value in fact.__dict__.items() if name != "at"}


def _rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def outcome_reason(levels: Iterable[str], *, residual: int = 0) -> str:
    """How many systems ended at each evidence level, e.g. '1 blocked, 2 verified_absent', and how many copies
    remain out of reach."""
    levels = list(levels)
    if not levels:
        return "no system applies: the request has no identifier of a type any system in scope is keyed by"
    counts: dict[str, int] = {}
    for level in levels:
        counts[level] = counts.get(level, 0) + 1
    reason = ", ".join(f"{n} {level}" for level, n in sorted(counts.items()))
    return f"{reason}; {residual} residual cop{'y' if residual == 1 else 'ies'} out of reach" if residual else reason


def _locations(
    before: Mapping[str, int] | None, after: Mapping[str, int] | None
) -> dict[str, tuple[int | None, int | None]]:
    """Counts per location, before and after; a location seen only once has None on the other side."""
    before, after = before or {}, after or {}
    return {name: (before.get(name), after.get(name)) for name in sorted(before.keys() | after.keys())}
