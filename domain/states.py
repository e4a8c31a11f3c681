"""The states a request, a system's task and a request's workflow go through, as the ledger and status show them.

request   received -> [awaiting_review ->] [awaiting_approval ->] scoped -> executing -> certified -> closed (the data
          key destroyed), or
          executing -> failed (no certificate could be issued; the reason is the request's `failed` event), or
          awaiting_approval -> rejected, or (any state before executing) -> cancelled
          legal.md's target adds: verifying_authority, awaiting_approval, scoped, on_hold, verifying,
          notifying_recipients; side states extended, rejected, cancelled, partially_refused
          executing -> on_hold (a legal hold stopped some systems: a partial certificate) -> executing once released
task      planned -> locating -> erasing -> [waiting_vendor] -> verifying -> done, or not_applicable from the start;
          erasing -> on_hold (a legal hold: restricted instead) -> planned when released
workflow  [verifying authority -> (rejected)] [resolving -> awaiting review ->] [previewing -> [awaiting approval ->]]
          planning -> executing -> [on hold -> executing ->] [notifying recipients ->] sealing -> grace period -> closed,
          or awaiting approval -> rejected | cancelled
"""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    RECEIVED = "received"
    AWAITING_REVIEW = "awaiting_review"  # near-matches, or a subject no identity source knows: a person decides
    VERIFYING_AUTHORITY = "verifying_authority"  # a guardian's authority is checked before anything is located
    AWAITING_APPROVAL = "awaiting_approval"  # located only; a second operator approves before anything is erased
    SCOPED = "scoped"
    ON_HOLD = "on_hold"  # a legal hold stops the systems not yet erased; they are restricted instead
    EXECUTING = "executing"
    VERIFYING = "verifying"
    NOTIFYING_RECIPIENTS = "notifying_recipients"
    CERTIFIED = "certified"
    CLOSED = "closed"  # the request's data key is destroyed
    EXTENDED = "extended"  # the deadline was extended, with its reason
    REJECTED = "rejected"  # with its reason, e.g. a guardian's authority never verified
    CANCELLED = "cancelled"  # by the operator, with the reason; a class order's done batches keep their receipts
    PARTIALLY_REFUSED = "partially_refused"  # with the Art. 17(3) exception that applies
    FAILED = "failed"  # the workflow ended without a certificate: a person must act

    @property
    def settled(self) -> bool:
        """The certificate is issued: nothing about the request's outcome changes any more."""
        return self in (RequestState.CERTIFIED, RequestState.CLOSED)

    @property
    def stopped(self) -> bool:
        """The workflow does nothing more on its own: the request is settled, or it failed and a person must act
        (its deadline still runs)."""
        return self.settled or self == RequestState.FAILED

    @property
    def ended(self) -> bool:
        """Nothing more will be done for the request: its deadline no longer runs."""
        return self.settled or self in (RequestState.REJECTED, RequestState.CANCELLED)


class TaskState(StrEnum):
    PLANNED = "planned"
    LOCATING = "locating"
    ERASING = "erasing"
    WAITING_VENDOR = "waiting_vendor"
    VERIFYING = "verifying"
    DONE = "done"
    ON_HOLD = "on_hold"  # a legal hold stopped it before erasure: restricted, or not processed, until released
    NOT_APPLICABLE = "not_applicable"  # the request has no identifier of a type the system is keyed by


class Phase(StrEnum):
    """Where a request's workflow is, as its status query reports it."""

    VERIFYING_AUTHORITY = "verifying authority"
    REJECTED = "rejected"
    RESOLVING = "resolving"
    AWAITING_REVIEW = "awaiting review"
    PLANNING = "planning"
    PREVIEWING = "previewing"  # locating only: counts per system and location, nothing erased
    AWAITING_APPROVAL = "awaiting approval"  # a second operator approves, rejects or cancels
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    NOTIFYING_RECIPIENTS = "notifying recipients"
    ON_HOLD = "on hold"  # a partial certificate is issued; the held systems wait for the hold's release
    SEALING = "sealing"
    GRACE_PERIOD = "grace period"
    CLOSED = "closed"
