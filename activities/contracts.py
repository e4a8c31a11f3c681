"""What crosses Temporal: activity names and their one-dataclass-in, one-dataclass-out types.

Only request ids, system names, levels, digests and vendor job ids travel here: never an identifier. A system's
facts (counts, key commitments, vendor statuses) go one way only: the activities write them to the ledger, and the
receipt and the certificate read them back from there. Results carry only what the workflows decide on.
Workflows import this module (and nothing else of `activities/`), so it stays free of I/O and heavy imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Activity names: one place, used by the workflows and the activity class alike.
RESOLVE = "erasure.resolve"
APPLY_REVIEW = "erasure.apply_review"
PLAN = "erasure.plan"
SCOPE = "erasure.scope"
PREVIEW = "erasure.preview"
PREVIEWED = "erasure.previewed"
DECIDE = "erasure.decide"
LOCATE = "erasure.locate"
ERASE = "erasure.erase"
POLL = "erasure.poll"
VERIFY = "erasure.verify"
ERASE_VERIFIED = "erasure.erase_verified"  # locate, erase and verify of a synchronous store, in one activity
RECORD_EVENT = "erasure.record_event"
RECORD_RECEIPT = "erasure.record_receipt"
SEAL = "erasure.seal"
SHRED = "erasure.shred"
EXTEND = "erasure.extend"
FAIL = "erasure.fail"
RECIPIENTS = "erasure.recipients"
SEND_NOTICE = "erasure.send_notice"
ERASE_UNLESS_HELD = "erasure.erase_unless_held"
RESTRICT = "erasure.restrict"
LIFT = "erasure.lift"
AWAIT_AUTHORITY = "erasure.await_authority"
VERIFY_AUTHORITY = "erasure.verify_authority"
REJECT = "erasure.reject"
NOTIFY_REMINDER = "erasure.notify_reminder"

# The request's workflow type: the intake starts it by name, so `erasure submit` loads no workflow code.
REQUEST_WORKFLOW = "ErasureRequest"


def vendor_task_queue(main: str, connector: str) -> str:
    """A rate-limited vendor's own task queue: the server enforces its rate across every worker."""
    return f"{main}-{connector}"


# Error types the workflows branch on (ApplicationError.type).
JOB_STILL_RUNNING = "JobStillRunning"
TERMINAL = "TerminalError"
VAULT_SEALED = "VaultSealed"
INVALID_DATA = "InvalidData"  # a ValueError: the same data fails the same way on every attempt
NON_RETRYABLE = [TERMINAL, VAULT_SEALED, INVALID_DATA]


@dataclass(frozen=True)
class RetrySpec:
    initial_interval_s: float
    backoff: float
    maximum_interval_s: float
    maximum_attempts: int
    start_to_close_s: float
    heartbeat_s: float
    # None in plans made before the budget: Temporal's attempt limit then counts every attempt, deaths included
    schedule_to_close_s: float | None = None


@dataclass(frozen=True)
class SystemPlan:
    system: str
    category: str
    connector: str
    task_queue: str
    asynchronous: bool
    verifiable: bool
    retry: RetrySpec
    poll_every_s: float
    service_time_s: float
    deadline_s: float


@dataclass(frozen=True)
class RequestInput:
    request_id: str


# Review: what a candidate group is, and what a reviewer may decide about it.
NEAR_MATCH = "near_match"  # an identity source's row equal to the subject's identifiers only after normalisation
NOTHING_FOUND = "nothing_found"  # no identity source holds the subject at all
INCLUDE = "include"
EXCLUDE = "exclude"
CONFIRM_NOTHING_FOUND = "confirm_nothing_found"
DECISIONS = {NEAR_MATCH: (INCLUDE, EXCLUDE), NOTHING_FOUND: (CONFIRM_NOTHING_FOUND,)}


@dataclass(frozen=True)
class ReviewGroup:
    """One thing a reviewer decides on, described without a value: which source, which rule, how many of each type."""

    group: str
    kind: str  # NEAR_MATCH or NOTHING_FOUND
    source: str  # the identity source that holds the candidate ("" when nothing was found)
    rules: dict[str, str]  # identifier type -> the near rule that ties it to the subject
    counts: dict[str, int]  # identifier type -> how many the candidate holds


@dataclass(frozen=True)
class ResolveResult:
    resolved: bool  # the catalogue names identity sources, and they were searched
    review: list[ReviewGroup]


@dataclass(frozen=True)
class ReviewDecision:
    group: str
    decision: str  # one of DECISIONS[group kind]
    reason: str
    reviewer: str


@dataclass(frozen=True)
class ApplyReviewInput:
    request_id: str
    decisions: list[ReviewDecision]


# A guardian's authority: how it may be verified, and what the guardian may be to the child.
AUTHORITY_METHODS = ("document_check", "verified_parental_consent", "payment_card_check", "court_order")
RELATIONSHIPS = ("parent", "legal_guardian", "other_with_authority")


@dataclass(frozen=True)
class AuthorityWait:
    """Whether the request waits for a guardian's authority to be verified, and for how long at most."""

    waits: bool
    limit_s: float


@dataclass(frozen=True)
class AuthorityVerification:
    """An operator's verification of a guardian's authority, as `erasure verify-authority` asks for it."""

    method: str  # one of AUTHORITY_METHODS
    relationship: str  # one of RELATIONSHIPS
    verifier: str  # the operator, from the configuration or the OS user


@dataclass(frozen=True)
class VerifyAuthorityInput:
    request_id: str
    verification: AuthorityVerification
    at: str  # the workflow's time of the verification


@dataclass(frozen=True)
class VerifyAuthorityResult:
    deadline: str  # the deadline the rule gives from the verification (ISO date), or "" if none


@dataclass(frozen=True)
class RejectInput:
    request_id: str
    reason: str  # never an identifier
    at: str  # the workflow's time of the rejection


@dataclass(frozen=True)
class ReminderInput:
    request_id: str
    deadline: str  # ISO date
    lead_days: str
    at: str  # the workflow's time of the reminder


@dataclass(frozen=True)
class Plan:
    systems: list[SystemPlan]
    max_concurrency: int
    grace_s: float
    deadline: str = ""  # the request's deadline (ISO date); empty in plans made before deadlines were watched
    reminder_leads_s: list[float] = field(default_factory=list)  # reminders this long before the deadline
    # what the deadline rule allows an extension: the furthest deadline and the last day of a first one ("": no limit)
    extendable: bool = True
    latest_deadline: str = ""
    first_extension_by: str = ""


@dataclass(frozen=True)
class Scope:
    """The systems a request would run, before anything runs: previewed, then approved where the policy asks."""

    plan: Plan
    approval_required: bool
    submitted_by: str  # the operator who submitted it: an approver must be someone else


@dataclass(frozen=True)
class PreviewedInput:
    request_id: str
    awaiting_approval: bool
    at: str  # the workflow's time of the preview


# What an operator decides on a previewed request (the update's name says which): approve, reject or cancel.
APPROVED = "approved"
REJECTED = "rejected"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class OperatorDecision:
    actor: str  # the operator, from the configuration or the OS user
    reason: str = ""  # required to reject or cancel; never an identifier


@dataclass(frozen=True)
class DecideInput:
    request_id: str
    decision: str  # APPROVED, REJECTED or CANCELLED
    actor: str
    reason: str
    at: str  # the workflow's time of the decision


@dataclass(frozen=True)
class DecideResult:
    record_sha256: str  # the signed record of the decision, in the transparency log


@dataclass(frozen=True)
class Extension:
    """An operator's extension of the request's deadline, as `erasure extend` asks for it."""

    days: int
    reason: str
    actor: str  # the operator, from the configuration or the OS user


@dataclass(frozen=True)
class ExtendInput:
    request_id: str
    extension: Extension
    number: int  # the request's n-th extension: a retried activity moves the deadline only once
    at: str  # the workflow's time of the extension


@dataclass(frozen=True)
class ExtendResult:
    deadline: str  # the new deadline (ISO date)


# Recipients of the data (GDPR Art. 19): how each is told, and the outcomes its event records.
WEBHOOK = "webhook"
MANUAL = "manual"
NOTICE_EVENTS = {
    "recipient_notified": "notified",  # the webhook accepted the notice
    "recipient_acknowledged": "acknowledged",  # an operator recorded the recipient's acknowledgement
    "recipient_not_confirmed": "not_confirmed",  # no acknowledgement within the limit
    "recipient_failed": "failed",  # the webhook refused or failed past its retries
    "recipient_not_notified": "not_notified",  # the system's erasure is not done: nothing to tell yet
}


def notice_key(system: str, recipient: str) -> str:
    """One outcome per recipient of a system: the first event recorded under this key stands."""
    return f"recipient:{system}:{recipient}"


@dataclass(frozen=True)
class Recipient:
    system: str
    name: str
    notify: str  # WEBHOOK or MANUAL


@dataclass(frozen=True)
class Recipients:
    """Whom to tell now that the systems are done, and how long a manual acknowledgement may take."""

    recipients: list[Recipient]
    ack_within_s: float


@dataclass(frozen=True)
class NoticeInput:
    request_id: str
    recipient: Recipient
    at: str  # the workflow's time of the notice


@dataclass(frozen=True)
class Acknowledgement:
    """An operator's record that a manual recipient acknowledged the erasure, as `erasure recipients ack` sends it."""

    recipient: str
    actor: str


@dataclass(frozen=True)
class SystemInput:
    request_id: str
    plan: SystemPlan
    resumed: bool = False  # a legal hold on the system was released: lift its restriction, then erase


@dataclass(frozen=True)
class StepInput:
    request_id: str
    system: str


@dataclass(frozen=True)
class EraseResult:
    level: str
    job_id: str | None
    detail: str
    held: bool = False  # a legal hold covers the system: nothing was erased


@dataclass(frozen=True)
class RestrictResult:
    level: str  # blocked: the data stays, restricted where the system can restrict it, else not processed
    detail: str


@dataclass(frozen=True)
class PollInput:
    request_id: str
    system: str
    job_id: str


@dataclass(frozen=True)
class PollResult:
    succeeded: bool
    detail: str


@dataclass(frozen=True)
class VerifyResult:
    level: str
    detail: str


@dataclass(frozen=True)
class ErasedAndVerified:
    erased: EraseResult
    verified: VerifyResult | None  # none when a legal hold stopped the erasure


@dataclass(frozen=True)
class EventInput:
    request_id: str
    system: str | None
    kind: str
    event_key: str
    at: str  # the workflow's time of the event
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReceiptInput:
    """The facts of one system's outcome, as the workflow saw them; the activity signs and logs them once."""

    request_id: str
    system: str
    action: str
    level: str
    detail: str
    notes: list[str]
    workflow_id: str
    run_id: str
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class ReceiptResult:
    sha256: str
    leaf_index: int


@dataclass(frozen=True)
class SystemResult:
    system: str
    level: str
    receipt_sha256: str
    held: bool = False  # stopped by a legal hold: its receipt is a hold receipt, its erasure waits for the release


@dataclass(frozen=True)
class SealInput:
    request_id: str
    number: int = 1  # the request's n-th certificate: each one after a legal hold's release supersedes the last


@dataclass(frozen=True)
class SealResult:
    outcome: str
    certificate_sha256: str


@dataclass(frozen=True)
class FailInput:
    request_id: str
    reason: str  # an activity's error message: never an identifier
    at: str  # the workflow's time of the failure


@dataclass(frozen=True)
class ShredInput:
    request_id: str
    reason: str
    requested_at: str  # the workflow's time when the grace period ended (or the operator asked)


@dataclass(frozen=True)
class ShredResult:
    receipt_sha256: str


@dataclass(frozen=True)
class RequestResult:
    outcome: str
    systems: list[SystemResult]
