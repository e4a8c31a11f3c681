"""The states a request, a system's task and a request's workflow go through, as the ledger and status show them.

request   received -> [awaiting_review ->] executing -> certified -> closed (the data key destroyed)
task      planned -> locating -> erasing -> [waiting_vendor] -> verifying -> done, or not_applicable from the start
workflow  [resolving -> awaiting review ->] planning -> executing -> sealing -> grace period -> closed
"""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    RECEIVED = "received"
    AWAITING_REVIEW = "awaiting_review"  # near-matches, or a subject no identity source knows: a person decides
    EXECUTING = "executing"
    CERTIFIED = "certified"
    CLOSED = "closed"  # the request's data key is destroyed

    @property
    def settled(self) -> bool:
        """The certificate is issued: nothing about the request's outcome changes any more."""
        return self in (RequestState.CERTIFIED, RequestState.CLOSED)


class TaskState(StrEnum):
    PLANNED = "planned"
    LOCATING = "locating"
    ERASING = "erasing"
    WAITING_VENDOR = "waiting_vendor"
    VERIFYING = "verifying"
    DONE = "done"
    NOT_APPLICABLE = "not_applicable"  # the request has no identifier of a type the system is keyed by


class Phase(StrEnum):
    """Where a request's workflow is, as its status query reports it."""

    RESOLVING = "resolving"
    AWAITING_REVIEW = "awaiting review"
    PLANNING = "planning"
    EXECUTING = "executing"
    SEALING = "sealing"
    GRACE_PERIOD = "grace period"
    CLOSED = "closed"
