"""A guardian's authority: whether the request must wait for it, its verification, and the rejection of a request
whose authority was never verified. Each decision is a ledger event and a signed record in the transparency log.

verified_at_intake  an order that carries verified_by/verified_on: recorded as verified at intake
authority_wait      whether the workflow waits, and how long at most
verify              an operator's verification: the event, the rule's clock (UK GDPR Art. 12A), the signed record
reject              the request refused with its reason and a signed record
certificate_line    what the certificate states of the authority
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from activities.contracts import AuthorityVerification, AuthorityWait
from domain.deadlines import ClockStart, deadline
from domain.errors import TerminalError
from evidence import notary
from stores.deadline_rules import DeadlineRules
from stores.ledger import EventRecord, Ledger, RequestRecord
from stores.tlog import TransparencyLog

VERIFIED = "authority_verified"
GUARDIAN_REQUEST = "guardian_request"
REJECTER = "workflow"  # a rejection for want of verification is the workflow's, when its time runs out


def verified_at_intake(requester: dict[str, Any]) -> dict[str, str] | None:
    """The event detail of an authority the order says was verified before intake (its requester record, which the
    ledger keeps without the guardian's name and contact), or None."""
    guardian = requester.get("guardian") or {}
    if not guardian.get("verified_on"):
        return None
    return {
        "relationship": str(guardian["relationship"]),
        "method": str(guardian["authority_check"]),
        "verifier": str(guardian["verified_by"]),
        "verified_at": datetime.combine(date.fromisoformat(guardian["verified_on"]), time(), UTC).isoformat(),
        "at_intake": "yes",
    }


def authority_wait(ledger: Ledger, tlog: TransparencyLog, request_id: str, limit_s: float) -> AuthorityWait:
    """A guardian's request without a verified authority waits (in verifying_authority); one verified at intake has
    its signed record made now."""
    request = _request(ledger, request_id)
    if request.kind != GUARDIAN_REQUEST:
        return AuthorityWait(waits=False, limit_s=0)
    verified = _verified(ledger.events(request_id))
    if verified is not None:  # a retried activity: recorded already
        return AuthorityWait(waits=False, limit_s=0)
    at_intake = verified_at_intake(request.requester)
    if at_intake is None:
        ledger.verifying_authority(request_id)
        return AuthorityWait(waits=True, limit_s=limit_s)
    _notarise(tlog, request_id, "verified", at_intake, "verified at intake")
    at = datetime.fromisoformat(at_intake["verified_at"])
    ledger.record_event(request_id, None, VERIFIED, VERIFIED, at, at_intake)
    return AuthorityWait(waits=False, limit_s=0)


def verify(
    ledger: Ledger,
    tlog: TransparencyLog,
    rules: DeadlineRules,
    request_id: str,
    verification: AuthorityVerification,
    at: datetime,
) -> date | None:
    """Record the verification (once); a rule whose clock starts at verified authority starts it today, the
    deadline it gives replacing none (or a later one the order stated). Returns the deadline after it."""
    request = _request(ledger, request_id)
    rule = rules.find(request.regime, request.kind)
    if rule is None:
        raise TerminalError(f"no deadline rule: expected one for {request.regime} {request.kind}, got none")
    started, due = request.clock_started_on, request.deadline
    if rule.clock_starts is ClockStart.AUTHORITY_VERIFIED:
        started = at.date()
        ruled = deadline(rule, started=started, stated=None)
        due = min(d for d in (ruled, request.deadline) if d is not None)
    detail = {
        "relationship": verification.relationship,
        "method": verification.method,
        "verifier": verification.verifier,
        "verified_at": at.astimezone(UTC).isoformat(),
        "at_intake": "no",
    }
    assert started is not None  # intake starts every other clock
    _notarise(tlog, request_id, "verified", detail, "verified by an operator")
    ledger.authority_verified(request_id, at, started, due, detail)
    return _request(ledger, request_id).deadline


def reject(ledger: Ledger, tlog: TransparencyLog, request_id: str, reason: str, at: datetime) -> None:
    request = _request(ledger, request_id)
    relationship = str(request.requester.get("guardian", {}).get("relationship", ""))
    detail = {"relationship": relationship, "method": "", "verifier": REJECTER, "verified_at": at.isoformat()}
    _notarise(tlog, request_id, "rejected", detail, reason)
    ledger.rejected(request_id, reason, at)


def certificate_line(events: Sequence[EventRecord]) -> dict[str, Any]:
    """The authority as the certificate states it: relationship, method, verifier and when, or nothing."""
    return dict(_verified(events) or {})


def _verified(events: Sequence[EventRecord]) -> dict[str, Any] | None:
    return next((dict(e.detail) for e in events if e.kind == VERIFIED), None)


def _notarise(tlog: TransparencyLog, request_id: str, decision: str, detail: dict[str, Any], reason: str) -> None:
    def record() -> bytes:
        return notary.authority_record(
            request_id,
            decision=decision,
            relationship=str(detail["relationship"]),
            method=str(detail["method"]),
            verifier=str(detail["verifier"]),
            decided_at=datetime.fromisoformat(str(detail["verified_at"])).astimezone(UTC).isoformat(),
            reason=reason,
        )

    tlog.notarise(request_id, notary.REQUEST_SYSTEM, notary.AUTHORITY, record)


def _request(ledger: Ledger, request_id: str) -> RequestRecord:
    request = ledger.request(request_id)
    if request is None:
        raise TerminalError(f"request {request_id} is not in the ledger")
    return request
