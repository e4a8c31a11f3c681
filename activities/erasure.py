"""The activities: thin glue between the workflows and the connectors, the vault, the ledger and the evidence.

Each activity reads the subject from the vault by request id, so no identifier ever crosses Temporal. Blocking work
runs in a thread while the activity heartbeats, so a dead worker is noticed within one heartbeat timeout. Errors are
mapped here once: terminal ones stop Temporal's retries, transient ones are retried, throttling waits as asked.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import json
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import authority, recipients, resolution
from activities.class_contracts import ERASE_BATCH
from activities.contracts import (
    APPLY_REVIEW,
    APPROVED,
    AWAIT_AUTHORITY,
    DECIDE,
    ERASE,
    ERASE_UNLESS_HELD,
    ERASE_VERIFIED,
    EXTEND,
    FAIL,
    INVALID_DATA,
    JOB_STILL_RUNNING,
    LIFT,
    LOCATE,
    NOTIFY_REMINDER,
    PLAN,
    POLL,
    PREVIEW,
    PREVIEWED,
    RECIPIENTS,
    RECORD_EVENT,
    RECORD_RECEIPT,
    REJECT,
    REJECTED,
    RESOLVE,
    RESTRICT,
    SCOPE,
    SEAL,
    SEND_NOTICE,
    SHRED,
    TERMINAL,
    VAULT_SEALED,
    VERIFY,
    VERIFY_AUTHORITY,
    ApplyReviewInput,
    AuthorityWait,
    DecideInput,
    DecideResult,
    ErasedAndVerified,
    EraseResult,
    EventInput,
    ExtendInput,
    ExtendResult,
    FailInput,
    NoticeInput,
    Plan,
    PollInput,
    PollResult,
    PreviewedInput,
    ReceiptInput,
    ReceiptResult,
    Recipients,
    RejectInput,
    ReminderInput,
    RequestInput,
    ResolveResult,
    RestrictResult,
    RetrySpec,
    Scope,
    SealInput,
    SealResult,
    ShredInput,
    ShredResult,
    StepInput,
    SystemPlan,
    VerifyAuthorityInput,
    VerifyAuthorityResult,
    VerifyResult,
    vendor_task_queue,
)
from activities.hold import hold
from connectors.base import Connector
from connectors.registry import build_connector
from domain.deadlines import extensions
from domain.errors import TerminalError, Throttled, TransientError
from domain.model import DestinationStatus, EvidenceLevel, JobHandle, JobStatus, Opaque, Subject, VendorFacts
from domain.states import RequestState, TaskState
from evidence import notary
from evidence.merkle import MemoryTree
from evidence.statement import outcome_for
from stores.catalogue import Catalogue, SystemSpec, catalogue_from_snapshot
from stores.deadline_rules import deadline_rules
from stores.holds import HoldRecord, HoldRegistry
from stores.ledger import Ledger, RequestRecord, TaskRecord
from stores.suppression import SuppressionList
from stores.tlog import TransparencyLog
from stores.vault import Vault, VaultSealed

T = TypeVar("T")

# The steps that run with a system's connector options (workflows/options.py): no attempt limit in Temporal's retry
# policy, so the activity counts the system's own errors against the catalogue's maximum_attempts.
CONNECTOR_STEPS = frozenset(
    {PREVIEW, LOCATE, ERASE, ERASE_UNLESS_HELD, ERASE_VERIFIED, VERIFY, RESTRICT, LIFT, ERASE_BATCH}
)
log = structlog.get_logger("erasure.activities")


class ErasureActivities:
    def __init__(
        self,
        *,
        ledger: Ledger,
        vault: Vault,
        tlog: TransparencyLog,
        suppression: SuppressionList,
        holds: HoldRegistry,
        task_queue: str,
        grace_s: float,
        reminder_leads_s: list[float],
        backups: notary.Backups,
        code_version: str,
        executor: ThreadPoolExecutor,
        recipient_ack_s: float,
        hold_dir: Path | None = None,
        authority_limit_s: float = 30 * 86400,
        reminder_webhook: str | None = None,
    ) -> None:
        self._ledger = ledger
        self._vault = vault
        self._tlog = tlog
        self._suppression = suppression
        self._holds = holds
        self._task_queue = task_queue
        self._grace_s = grace_s
        self._reminder_leads_s = reminder_leads_s
        self._backups = backups
        self._code_version = code_version
        self._executor = executor
        self._hold_dir = hold_dir
        self._recipient_ack_s = recipient_ack_s
        self._authority_limit_s = authority_limit_s
        self._reminder_webhook = reminder_webhook
        self._catalogue = lru_cache(maxsize=256)(self._load_catalogue)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.resolve,
            self.apply_review,
            self.plan,
            self.scope,
            self.preview,
            self.previewed,
            self.decide,
            self.locate,
            self.erase,
            self.poll,
            self.verify,
            self.erase_verified,
            self.record_event,
            self.record_receipt,
            self.seal,
            self.fail,
            self.shred,
            self.extend,
            self.recipients_to_tell,
            self.send_notice,
            self.erase_unless_held,
            self.restrict,
            self.lift,
            self.await_authority,
            self.verify_authority,
            self.reject,
            self.notify_reminder,
        ]

    # -- identity and planning --------------------------------------------------------------------------------

    @activity.defn(name=RESOLVE)
    async def resolve(self, input: RequestInput) -> ResolveResult:
        return await self._run(
            input.request_id,
            None,
            lambda: resolution.resolve_request(
                self._ledger, self._vault, self._catalogue(input.request_id), input.request_id, _now()
            ),
        )

    @activity.defn(name=APPLY_REVIEW)
    async def apply_review(self, input: ApplyReviewInput) -> None:
        await self._run(
            input.request_id,
            None,
            lambda: resolution.apply_review(
                self._ledger, self._vault, self._catalogue(input.request_id), input.request_id, input.decisions, _now()
            ),
        )

    @activity.defn(name=PLAN)
    async def plan(self, input: RequestInput) -> Plan:
        return await self._run(input.request_id, None, lambda: self._plan(input.request_id))

    @activity.defn(name=SCOPE)
    async def scope(self, input: RequestInput) -> Scope:
        def work() -> Scope:
            request = self._request(input.request_id)
            policy = self._catalogue(input.request_id).approval
            plan = self._plan(input.request_id, executing=False)
            return Scope(plan, policy.requires_approval(request.kind), request.submitted_by)

        return await self._run(input.request_id, None, work)

    def _plan(self, request_id: str, *, executing: bool = True) -> Plan:
        catalogue = self._catalogue(request_id)
        systems = [
            self._system_plan(catalogue.system(task.system))
            for task in self._ledger.tasks(request_id)
            if task.state != TaskState.NOT_APPLICABLE
        ]
        if executing:
            self._ledger.executing(request_id)
        request = self._request(request_id)
        rule = deadline_rules().find(request.regime, request.kind)
        allowed = extensions(rule, request.clock_started_on) if rule is not None else None
        return Plan(
            systems=systems,
            max_concurrency=catalogue.max_concurrency,
            grace_s=self._grace_s,
            deadline=request.deadline.isoformat() if request.deadline else "",
            reminder_leads_s=list(self._reminder_leads_s),
            extendable=allowed is None or allowed.allowed,
            latest_deadline=allowed.latest.isoformat() if allowed and allowed.latest else "",
            first_extension_by=allowed.first_by.isoformat() if allowed and allowed.first_by else "",
        )

    def _system_plan(self, spec: SystemSpec) -> SystemPlan:
        caps = spec.kind.capabilities
        queue = vendor_task_queue(self._task_queue, spec.connector) if caps.rate_per_second else self._task_queue
        retry = spec.retry
        return SystemPlan(
            system=spec.name,
            category=spec.category.value,
            connector=spec.connector,
            task_queue=queue,
            asynchronous=caps.asynchronous,
            verifiable=caps.verifiable,
            retry=RetrySpec(
                initial_interval_s=retry.initial_interval.total_seconds(),
                backoff=retry.backoff,
                maximum_interval_s=retry.maximum_interval.total_seconds(),
                maximum_attempts=retry.maximum_attempts,
                start_to_close_s=retry.start_to_close.total_seconds(),
                heartbeat_s=retry.heartbeat.total_seconds(),
                schedule_to_close_s=retry.schedule_to_close.total_seconds(),
            ),
            poll_every_s=(spec.poll.every or caps.poll_every).total_seconds(),
            service_time_s=(spec.poll.service_time or caps.service_time).total_seconds(),
            deadline_s=(spec.poll.deadline or caps.deadline).total_seconds(),
        )

    def _request(self, request_id: str) -> RequestRecord:
        request = self._ledger.request(request_id)
        if request is None:
            raise TerminalError(f"request {request_id} is not in the ledger")
        return request

    # -- preview and decision ---------------------------------------------------------------------------------

    @activity.defn(name=PREVIEW)
    async def preview(self, input: StepInput) -> None:
        """Locate only: what the system holds of the subject, counted per location; nothing is erased."""

        def work() -> None:
            with self._connector(input) as (connector, subject):
                inventory = connector.locate(subject)
            self._ledger.previewed(
                input.request_id, input.system, total=inventory.total, counts=inventory.counts, note=inventory.note
            )

        await self._run(input.request_id, input.system, work)

    @activity.defn(name=PREVIEWED)
    async def previewed(self, input: PreviewedInput) -> None:
        def work() -> None:
            located = {t.system: t.records_before for t in self._ledger.tasks(input.request_id)}
            detail = {"located": located, "awaiting_approval": input.awaiting_approval}
            at = datetime.fromisoformat(input.at)
            self._ledger.record_event(input.request_id, None, "previewed", "previewed", at, detail)
            if input.awaiting_approval:
                self._ledger.awaiting_approval(input.request_id)

        await self._run(input.request_id, None, work)

    @activity.defn(name=DECIDE)
    async def decide(self, input: DecideInput) -> DecideResult:
        """An operator's decision: a signed record in the log, an event with the actor and the time, the state."""

        def work() -> DecideResult:
            tasks = self._ledger.tasks(input.request_id)
            submitted_by = self._request(input.request_id).submitted_by
            info = activity.info()
            run = notary.Run(
                workflow_id=info.workflow_id or "",
                run_id=info.workflow_run_id or "",
                activity_id=info.activity_id,
                code_version=self._code_version,
                started_at=input.at,
                finished_at=input.at,
            )
            logged = self._tlog.notarise(
                input.request_id,
                notary.REQUEST_SYSTEM,
                notary.DECISION_ACTIONS[input.decision],
                lambda: notary.decision_record(
                    input.request_id,
                    input.decision,
                    actor=input.actor,
                    submitted_by=submitted_by,
                    reason=input.reason,
                    at=datetime.fromisoformat(input.at).astimezone(UTC).isoformat(),
                    located={t.system: t.records_before for t in tasks if t.state != TaskState.NOT_APPLICABLE},
                    run=run,
                ),
            )
            sha256 = hashlib.sha256(logged.envelope).hexdigest()
            detail = {
                "actor": input.actor,
                "submitted_by": submitted_by,
                "reason": input.reason,
                "record_sha256": sha256,
            }
            at = datetime.fromisoformat(input.at)
            self._ledger.record_event(input.request_id, None, input.decision, input.decision, at, detail)
            if input.decision == APPROVED:
                self._ledger.scoped(input.request_id, input.actor)
            elif input.decision == REJECTED:
                self._ledger.rejected_at_approval(input.request_id, input.actor, input.reason)
            else:
                self._ledger.cancelled(input.request_id, input.actor, input.reason)
            return DecideResult(sha256)

        return await self._run(input.request_id, None, work)

    # -- one system -------------------------------------------------------------------------------------------

    @activity.defn(name=LOCATE)
    async def locate(self, input: StepInput) -> None:
        def work() -> None:
            with self._connector(input) as (connector, subject):
                self._locate(input, connector, subject)

        await self._run(input.request_id, input.system, work)

    @activity.defn(name=ERASE)
    async def erase(self, input: StepInput) -> EraseResult:
        def work() -> EraseResult:
            with self._connector(input) as (connector, subject):
                return self._erase(input, connector, subject)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=ERASE_UNLESS_HELD)
    async def erase_unless_held(self, input: StepInput) -> EraseResult:
        """Erase, unless a legal hold covers the system: checked here, right before the deletion, so that a hold
        placed while the request runs stops every system that has not erased yet."""

        def work() -> EraseResult:
            held = self._held(input)
            if held is not None:
                return held
            with self._connector(input) as (connector, subject):
                return self._erase(input, connector, subject)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=ERASE_VERIFIED)
    async def erase_verified(self, input: StepInput) -> ErasedAndVerified:
        """A synchronous store's locate, erase (unless held) and verify in one activity: each step is recorded in
        the ledger as it finishes, and a retry never locates again once the baseline is recorded (after a deletion
        it would find less than there was)."""

        def work() -> ErasedAndVerified:
            with self._connector(input) as (connector, subject):
                if self._ledger.task(input.request_id, input.system).state in (TaskState.PLANNED, TaskState.LOCATING):
                    self._locate(input, connector, subject)
                held = self._held(input)
                if held is not None:
                    return ErasedAndVerified(held, None)
                erased = self._erase(input, connector, subject)
                if erased.job_id is not None:
                    raise TerminalError(f"system {input.system} returned a vendor job: it is not a synchronous store")
                return ErasedAndVerified(erased, self._verify(input, connector, subject))

        return await self._run(input.request_id, input.system, work)

    def _locate(self, input: StepInput, connector: Connector, subject: Subject) -> None:
        self._ledger.locating(input.request_id, input.system, _now())
        inventory = connector.locate(subject)
        self._ledger.located(
            input.request_id, input.system, total=inventory.total, counts=inventory.counts, note=inventory.note
        )

    def _held(self, input: StepInput) -> EraseResult | None:
        """What erasing gives when a legal hold covers the system: nothing erased."""
        holds = self._holds_on(input)
        if not holds:
            return None
        cases = ", ".join(sorted({h.case_reference for h in holds}))
        return EraseResult(EvidenceLevel.BLOCKED.value, None, f"legal hold (case {cases})", held=True)

    def _erase(self, input: StepInput, connector: Connector, subject: Subject) -> EraseResult:
        journal = _LedgerJournal(
            self._ledger, input.request_id, input.system, self._vault.commitment_key(input.request_id)
        )
        outcome = connector.erase(subject, f"{input.request_id}/{input.system}", journal)
        hold(self._hold_dir, f"erased.{input.system}")  # a test may kill the worker here
        journal.intend(outcome.deleted_keys)  # already there, unless a connector deletes without journaling
        # Counts and commitment come from the journal, which holds every attempt's deletions: a retry after a
        # crash finds nothing left to delete, yet its receipt still commits to what the crashed attempt deleted.
        leaves = self._ledger.journaled(input.request_id, input.system)
        job_id = outcome.job.job_id if outcome.job else None
        self._ledger.erased(
            input.request_id,
            input.system,
            deleted=len(leaves),
            blocked=outcome.blocked,
            key_commitment=_merkle_root(leaves),
            key_count=len(leaves),
            vendor_job_id=job_id,
            vendor_status=outcome.vendor_status or None,
            vendor_facts=self._keyed(input.request_id, outcome.facts),
            detail=outcome.detail,
        )
        return EraseResult(level=outcome.level.value, job_id=job_id, detail=outcome.detail)

    @activity.defn(name=RESTRICT)
    async def restrict(self, input: StepInput) -> RestrictResult:
        """Under a legal hold: restrict the system's data where the system can (Art. 18), else leave it untouched
        and unprocessed; either way nothing is erased and the task is on hold."""

        def work() -> RestrictResult:
            cases = ", ".join(sorted({h.case_reference for h in self._holds_on(input)})) or "released meanwhile"
            with self._connector(input) as (connector, subject):
                restriction = connector.restrict(subject)
            if restriction is None:
                detail = f"not processed: legal hold (case {cases}); the system offers no restriction, nothing erased"
            else:
                secret = self._vault.commitment_key(input.request_id)
                tokens = [hmac.new(secret, label.encode(), hashlib.sha256).digest() for label in restriction.labels]
                self._holds.restricted(input.request_id, input.system, tokens)
                detail = f"restricted: legal hold (case {cases}); {restriction.detail}; nothing erased"
            self._ledger.held(input.request_id, input.system, detail=detail)
            return RestrictResult(EvidenceLevel.BLOCKED.value, detail)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=LIFT)
    async def lift(self, input: StepInput) -> None:
        """The hold was released: lift the restrictions this orchestrator placed, and no other; the system is then
        erased afresh."""

        def work() -> None:
            mine = self._holds.restrictions(input.request_id, input.system)
            secret = self._vault.commitment_key(input.request_id)
            with self._connector(input) as (connector, subject):
                connector.lift(subject, lambda label: hmac.new(secret, label.encode(), hashlib.sha256).digest() in mine)
            self._holds.lifted(input.request_id, input.system)
            self._ledger.released(input.request_id, input.system)
            self._ledger.hold_released(input.request_id)

        await self._run(input.request_id, input.system, work)

    def _holds_on(self, step: StepInput) -> list[HoldRecord]:
        """Holds in place over the system: on the request, or on any of its subject's identifiers (all types, not
        only those the system is keyed by). Each is recorded once as an event of the request."""
        spec = self._catalogue(step.request_id).system(step.system)
        holds = self._holds.placed_on(
            step.request_id, self._vault.subject(step.request_id), spec.name, spec.category.value
        )
        for h in holds:
            self._ledger.record_event(
                step.request_id,
                step.system,
                "hold_applied",
                f"hold_applied:{h.hold_id}:{step.system}",
                _now(),
                {"hold": h.hold_id, "case": h.case_reference},
            )
        return holds

    @activity.defn(name=POLL)
    async def poll(self, input: PollInput) -> PollResult:
        def work() -> PollResult:
            with self._connector(StepInput(input.request_id, input.system), need_subject=False) as (connector, _):
                state = connector.poll(JobHandle(job_id=input.job_id))
            running = state.status is JobStatus.RUNNING
            self._ledger.polled(
                input.request_id,
                input.system,
                vendor_status=state.vendor_status,
                vendor_facts=self._keyed(input.request_id, {**state.facts, **_destination_facts(state.destinations)}),
                finished=not running,
                residual=state.residual,
            )
            if running:
                # retryable on purpose: the workflow's retry policy is the polling schedule
                raise ApplicationError(
                    f"vendor job {state.vendor_status}",
                    type=JOB_STILL_RUNNING,
                    category=ApplicationErrorCategory.BENIGN,  # expected while waiting: not logged as a failure
                )
            return PollResult(succeeded=state.status is JobStatus.SUCCEEDED, detail=state.detail)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=VERIFY)
    async def verify(self, input: StepInput) -> VerifyResult:
        def work() -> VerifyResult:
            with self._connector(input) as (connector, subject):
                return self._verify(input, connector, subject)

        return await self._run(input.request_id, input.system, work)

    def _verify(self, input: StepInput, connector: Connector, subject: Subject) -> VerifyResult:
        verification = connector.verify(subject)
        verifiable = connector.capabilities.verifiable
        self._ledger.verified(
            input.request_id,
            input.system,
            records_after=verification.total_remaining if verifiable else None,
            counts_after=verification.remaining if verifiable else None,
            vendor_facts=self._keyed(input.request_id, verification.facts),
        )
        return VerifyResult(level=verification.level.value, detail=verification.detail)

    @activity.defn(name=RECORD_EVENT)
    async def record_event(self, input: EventInput) -> None:
        await self._run(
            input.request_id,
            input.system,
            lambda: self._ledger.record_event(
                input.request_id,
                input.system,
                input.kind,
                input.event_key,
                datetime.fromisoformat(input.at),
                dict(input.detail),
            ),
        )

    @activity.defn(name=RECORD_RECEIPT)
    async def record_receipt(self, input: ReceiptInput) -> ReceiptResult:
        def work() -> ReceiptResult:
            run = notary.Run(
                workflow_id=input.workflow_id,
                run_id=input.run_id,
                activity_id=activity.info().activity_id,
                code_version=self._code_version,
                started_at=input.started_at,
                finished_at=input.finished_at,
            )
            task = self._ledger.task(input.request_id, input.system)
            identity = resolution.receipt_notes(self._ledger.events(input.request_id))

            def statement() -> bytes:
                made = notary.erase_receipt(
                    input.request_id,
                    task,
                    level=input.level,
                    detail=input.detail,
                    notes=[*input.notes, *identity],
                    run=run,
                    action=input.action,
                )
                # a test may kill the worker here: inside the log's transaction, before the envelope is signed
                hold(self._hold_dir, f"signing.{input.system}")
                return made

            logged = self._tlog.notarise(input.request_id, input.system, input.action, statement)
            started, finished = datetime.fromisoformat(input.started_at), datetime.fromisoformat(input.finished_at)
            if input.action == notary.HOLD:
                self._ledger.hold_receipted(
                    input.request_id,
                    input.system,
                    evidence_level=input.level,
                    started_at=started,
                    finished_at=finished,
                )
            else:
                self._ledger.done(
                    input.request_id,
                    input.system,
                    evidence_level=input.level,
                    detail=input.detail,
                    started_at=started,
                    finished_at=finished,
                )
            return ReceiptResult(hashlib.sha256(logged.envelope).hexdigest(), logged.leaf_index)

        return await self._run(input.request_id, input.system, work)

    # -- the request ------------------------------------------------------------------------------------------

    @activity.defn(name=EXTEND)
    async def extend(self, input: ExtendInput) -> ExtendResult:
        def work() -> ExtendResult:
            ext = input.extension
            detail = {"days": ext.days, "reason": ext.reason, "actor": ext.actor}
            at = datetime.fromisoformat(input.at)
            deadline = self._ledger.extend(input.request_id, ext.days, f"extended:{input.number}", at, detail)
            return ExtendResult(deadline.isoformat())

        return await self._run(input.request_id, None, work)

    @activity.defn(name=RECIPIENTS)
    async def recipients_to_tell(self, input: RequestInput) -> Recipients:
        def work() -> Recipients:
            catalogue = self._catalogue(input.request_id)
            told = recipients.to_tell(self._ledger, catalogue, input.request_id, _scheduled_at())
            return Recipients(told, self._recipient_ack_s)

        return await self._run(input.request_id, None, work)

    @activity.defn(name=SEND_NOTICE)
    async def send_notice(self, input: NoticeInput) -> None:
        await self._run(
            input.request_id,
            input.recipient.system,
            # the time of the attempt that gets through, on the workflow's clock
            lambda: recipients.send(
                self._ledger, self._catalogue(input.request_id), input.request_id, input.recipient, _scheduled_at()
            ),
        )

    @activity.defn(name=AWAIT_AUTHORITY)
    async def await_authority(self, input: RequestInput) -> AuthorityWait:
        return await self._run(
            input.request_id,
            None,
            lambda: authority.authority_wait(self._ledger, self._tlog, input.request_id, self._authority_limit_s),
        )

    @activity.defn(name=VERIFY_AUTHORITY)
    async def verify_authority(self, input: VerifyAuthorityInput) -> VerifyAuthorityResult:
        def work() -> VerifyAuthorityResult:
            at = datetime.fromisoformat(input.at)
            due = authority.verify(self._ledger, self._tlog, deadline_rules(), input.request_id, input.verification, at)
            return VerifyAuthorityResult(due.isoformat() if due else "")

        return await self._run(input.request_id, None, work)

    @activity.defn(name=REJECT)
    async def reject(self, input: RejectInput) -> None:
        await self._run(
            input.request_id,
            None,
            lambda: authority.reject(
                self._ledger, self._tlog, input.request_id, input.reason, datetime.fromisoformat(input.at)
            ),
        )

    @activity.defn(name=NOTIFY_REMINDER)
    async def notify_reminder(self, input: ReminderInput) -> None:
        """POST the reminder to the configured webhook: the request id, the deadline and the lead, no identifier."""
        url = self._reminder_webhook
        if url is None:
            return
        body = {
            "request_id": input.request_id,
            "deadline": input.deadline,
            "lead_days": input.lead_days,
            "at": input.at,
        }

        def post() -> None:
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    answer.read(0)
            except urllib.error.HTTPError as exc:  # its body is the receiver's: never kept
                raise TransientError(f"reminder webhook: expected a 2xx answer, got {exc.code}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise TransientError(f"reminder webhook: expected an answer, got {type(reason).__name__}") from None

        await self._run(input.request_id, None, post)

    @activity.defn(name=SEAL)
    async def seal(self, input: SealInput) -> SealResult:
        return await self._run(input.request_id, None, lambda: self._seal(input.request_id, input.number))

    def _seal(self, request_id: str, number: int) -> SealResult:
        """Certify the request from what the ledger and the log hold: every system that has a receipt (the hold
        receipt of a system a legal hold stopped, which makes the certificate partial and the request on hold).
        The n-th certificate (n > 1) supersedes the one before."""
        request = self._ledger.request(request_id)
        if request is None:
            raise TerminalError(f"request {request_id} is not in the ledger")
        tasks = self._ledger.tasks(request_id)
        held = {t.system for t in tasks if t.state == TaskState.ON_HOLD}
        logged_before = self._tlog.receipts(request_id)
        receipts = {
            r.system: r.envelope
            for r in logged_before
            if r.system != notary.REQUEST_SYSTEM and r.action == (notary.HOLD if r.system in held else notary.ERASE)
        }
        earlier = [r for r in logged_before if (notary.certificate_number(r.action) or number) < number]
        unreceipted = sorted(
            t.system for t in tasks if t.state != TaskState.NOT_APPLICABLE and t.system not in receipts
        )
        if unreceipted:
            # every system in scope ends in a receipt first: a certificate never passes over one in silence
            raise TerminalError(f"expected a receipt of every system in scope, none for {unreceipted}")
        finished = [_finished(t) for t in tasks if t.system in receipts]
        if not held:
            self._ledger.verifying(request_id)
        hold_cases = self._hold_cases(request_id, held)
        issued_at = _now()
        events = self._ledger.events(request_id)
        identity, reviews = resolution.identity_record(events)
        timeline = [notary.StateStep(s.state, s.actor, s.reason, s.at) for s in self._ledger.timeline(request_id)]
        approval = next(
            (
                {
                    "submitted_by": str(e.detail["submitted_by"]),
                    "approved_by": str(e.detail["actor"]),
                    "approved_at": e.at.astimezone(UTC).isoformat(),
                    "record_sha256": str(e.detail["record_sha256"]),
                }
                for e in events
                if e.kind == APPROVED
            ),
            {},
        )
        statement = notary.certificate(
            _notary_request(request),
            finished,
            receipts,
            not_searched={t.system: t.detail for t in tasks if t.state == TaskState.NOT_APPLICABLE},
            identity=identity,
            reviews=reviews,
            recipients=recipients.notices(self._catalogue(request_id), events),
            timeline=timeline,
            authority=authority.certificate_line(events),
            approval=approval,
            log_origin=self._tlog.origin,
            code_version=self._code_version,
            issued_at=issued_at.isoformat(),
            shredding_by=(issued_at + timedelta(seconds=self._grace_s)).isoformat(),
            backups=self._backups,
            held=hold_cases,
            supersedes=hashlib.sha256(earlier[-1].envelope).hexdigest() if earlier else "",
        )
        action = notary.certificate_action(number)
        logged = self._tlog.notarise(request_id, notary.REQUEST_SYSTEM, action, lambda: statement)
        outcome = outcome_for((s.evidence_level for s in finished), residual=any(s.residual for s in finished))
        if held or earlier:
            self._tlog.checkpoint()  # published: the next certificate's bundle proves the log consistent with it
        if held:
            self._ledger.on_hold(request_id, outcome, [ref for refs in hold_cases.values() for ref in refs])
        else:
            self._suppression.add(self._vault.subject(request_id))
            self._ledger.certified(request_id, outcome)
        return SealResult(outcome, hashlib.sha256(logged.envelope).hexdigest())

    def _hold_cases(self, request_id: str, held: set[str]) -> dict[str, list[str]]:
        """The case references of the holds that stopped each held system, from the request's events."""
        cases: dict[str, set[str]] = {system: set() for system in held}
        for event in self._ledger.events(request_id):
            if event.kind == "hold_applied" and event.system in cases:
                cases[event.system].add(str(event.detail["case"]))
        return {system: sorted(refs) for system, refs in cases.items()}

    @activity.defn(name=FAIL)
    async def fail(self, input: FailInput) -> None:
        await self._run(
            input.request_id,
            None,
            lambda: self._ledger.failed(input.request_id, input.reason, datetime.fromisoformat(input.at)),
        )

    @activity.defn(name=SHRED)
    async def shred(self, input: ShredInput) -> ShredResult:
        return await self._run(
            input.request_id,
            None,
            lambda: shred_request(
                self._ledger,
                self._vault,
                self._tlog,
                input.request_id,
                input.reason,
                self._code_version,
                self._backups,
                at=datetime.fromisoformat(input.requested_at),
                workflow_id=activity.info().workflow_id or "",
                run_id=activity.info().workflow_run_id or "",
                activity_id=activity.info().activity_id,
            ),
        )

    # -- helpers ----------------------------------------------------------------------------------------------

    def _load_catalogue(self, request_id: str) -> Catalogue:
        return catalogue_from_snapshot(self._ledger.catalogue_snapshot(request_id))

    @contextmanager
    def _connector(self, step: StepInput, *, need_subject: bool = True) -> Iterator[tuple[Connector, Subject]]:
        spec = self._catalogue(step.request_id).system(step.system)
        subject = self._vault.subject(step.request_id).only(spec.identifiers) if need_subject else Subject({})
        with build_connector(spec.connector, spec.name, spec.connector_settings()) as connector:
            yield connector, subject

    def _keyed(self, request_id: str, facts: VendorFacts) -> dict[str, str | int]:
        """The facts as the evidence may hold them: each opaque vendor value becomes "unknown" and an HMAC under the
        request's vendor-value key (never a plain digest, which a dictionary of identifiers reverses)."""
        secret: bytes | None = None  # read from the vault only when a value needs it
        keyed: dict[str, str | int] = {}
        for name, value in facts.items():
            if isinstance(value, Opaque):
                secret = secret or self._vault.vendor_value_key(request_id)
                keyed[name] = "unknown"
                keyed[f"{name}_hmac"] = hmac.new(secret, value.value, hashlib.sha256).hexdigest()
            else:
                keyed[name] = value
        return keyed

    async def _run(self, request_id: str, system: str | None, work: Callable[[], T]) -> T:
        """Run blocking work in a thread, heartbeating, with errors mapped to Temporal's terms."""
        structlog.contextvars.bind_contextvars(request_id=request_id, system=system)
        info = activity.info()
        errors = _errors_so_far(info)
        loop = asyncio.get_running_loop()
        # the thread sees this activity's context (activity.info(), the bound log fields)
        future = loop.run_in_executor(self._executor, contextvars.copy_context().run, work)
        beat = (info.heartbeat_timeout or timedelta(0)).total_seconds() / 3
        try:
            while beat > 0:
                done, _ = await asyncio.wait({future}, timeout=min(beat, 5.0))
                if done:
                    break
                activity.heartbeat(errors)  # every heartbeat carries the count: the last one is what the next reads
            return await future
        except ApplicationError:
            raise
        except VaultSealed as exc:
            raise ApplicationError(str(exc), type=VAULT_SEALED, non_retryable=True) from None
        except Throttled as exc:
            _count_system_error(system, "throttled")
            delay = timedelta(seconds=exc.retry_after_s) if exc.retry_after_s else None
            raise self._retry_or_give_up(request_id, system, errors, str(exc), "Throttled", delay) from None
        except TransientError as exc:
            _count_system_error(system, "transient")
            log.warning("activity will be retried", activity=info.activity_type, error=str(exc))
            raise self._retry_or_give_up(request_id, system, errors, str(exc), "TransientError") from None
        except TerminalError as exc:
            _count_system_error(system, "terminal")
            log.error("activity refused", activity=info.activity_type, error=str(exc))
            raise ApplicationError(str(exc), type=TERMINAL, non_retryable=True) from None
        except ValueError as exc:
            # invalid data fails alike on every attempt; its message may quote the data: keep only the type
            log.error("activity refused invalid data", activity=info.activity_type, error_type=type(exc).__name__)
            raise ApplicationError(
                f"invalid data ({type(exc).__name__}) in {info.activity_type}", type=INVALID_DATA, non_retryable=True
            ) from None
        except Exception as exc:
            # An unexpected error's message may quote data: keep only its type and where it happened.
            where = "".join(traceback.format_tb(exc.__traceback__)[-3:])
            log.error(
                "unexpected error in activity", activity=info.activity_type, error_type=type(exc).__name__, where=where
            )
            message = f"unexpected {type(exc).__name__} in {info.activity_type}"
            raise self._retry_or_give_up(request_id, system, errors, message, "UnexpectedError") from None
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "system")

    def _retry_or_give_up(
        self,
        request_id: str,
        system: str | None,
        errors_before: int,
        message: str,
        error_type: str,
        delay: timedelta | None = None,
    ) -> ApplicationError:
        """A retryable error of a connector step counts against the system's `maximum_attempts`; the count travels
        in the heartbeat details, which Temporal keeps across attempts, so a worker's death is never counted."""
        if system is None or activity.info().activity_type not in CONNECTOR_STEPS:
            return ApplicationError(message, type=error_type, next_retry_delay=delay)
        errors = errors_before + 1
        allowed = self._catalogue(request_id).system(system).retry.maximum_attempts
        if errors >= allowed:
            log.error("activity gave up", activity=activity.info().activity_type, errors=errors)
            return ApplicationError(
                f"{message} (gave up: {errors} errors of the system, its maximum_attempts is {allowed})",
                type=error_type,
                non_retryable=True,
            )
        activity.heartbeat(errors)  # sent before the failure is reported (the SDK flushes it)
        return ApplicationError(message, type=error_type, next_retry_delay=delay)


def _errors_so_far(info: activity.Info) -> int:
    """The system's errors counted by the step's earlier attempts (0 on the first, or after only deaths)."""
    details = info.heartbeat_details
    return details[0] if details and isinstance(details[0], int) else 0


def _count_system_error(system: str | None, error: str) -> None:
    """Errors the erased systems (vendors above all) returned to a connector step, for the metrics endpoint."""
    if system is not None and activity.info().activity_type in (PREVIEW, LOCATE, ERASE, POLL, VERIFY, ERASE_VERIFIED):
        counter = activity.metric_meter().create_counter(
            "erasure_system_errors", "errors returned by the systems being erased, by system and kind"
        )
        counter.add(1, {"system": system, "error": error})


def shred_request(
    ledger: Ledger,
    vault: Vault,
    tlog: TransparencyLog,
    request_id: str,
    reason: str,
    code_version: str,
    backups: notary.Backups,
    *,
    at: datetime,
    workflow_id: str,
    run_id: str,
    activity_id: str,
) -> ShredResult:
    """Destroy the request's data key and log a receipt saying so; safe to run again.

    `at` is when the workflow asked (its clock is the request's clock, also on a time-skipping test server).
    """
    with ledger.pool.connection() as conn:
        destroyed_now = vault.destroy(conn, request_id)
    if not vault.is_destroyed(request_id):  # the read-back: the receipt's level rests on it
        raise TerminalError(f"request {request_id} has no vault key to destroy")
    moment = at.astimezone(UTC).isoformat()
    run = notary.Run(workflow_id, run_id, activity_id, code_version, started_at=moment, finished_at=moment)
    logged = tlog.notarise(
        request_id,
        notary.REQUEST_SYSTEM,
        notary.SHRED,
        lambda: notary.shred_receipt(request_id, reason, run, backups=backups),
    )
    record = ledger.request(request_id)
    if record is None or record.state not in (RequestState.REJECTED, RequestState.CANCELLED):
        ledger.closed(request_id, f"the data key was destroyed: {reason}")  # a request that erased nothing stays so
    if destroyed_now:
        ledger.record_event(request_id, None, "shredded", "shredded", at, {"reason": reason})
    return ShredResult(receipt_sha256=hashlib.sha256(logged.envelope).hexdigest())


class _LedgerJournal:
    """The erasure's journal in the ledger: keyed HMACs of the keys, never the keys."""

    def __init__(self, ledger: Ledger, request_id: str, system: str, secret: bytes) -> None:
        self._ledger = ledger
        self._request_id = request_id
        self._system = system
        self._secret = secret

    def intend(self, keys: Iterable[str]) -> None:
        self._ledger.journal(self._request_id, self._system, self._leaves(keys))

    def withdraw(self, keys: Iterable[str]) -> None:
        self._ledger.unjournal(self._request_id, self._system, self._leaves(keys))

    def _leaves(self, keys: Iterable[str]) -> list[bytes]:
        return [hmac.new(self._secret, key.encode(), hashlib.sha256).digest() for key in keys]


def _merkle_root(leaves: list[bytes]) -> str | None:
    """A Merkle root over the deleted keys' HMACs: binds what was deleted without revealing it."""
    if not leaves:
        return None
    tree = MemoryTree()
    for leaf in sorted(leaves):
        tree.append(leaf)
    return tree.root().hex()


def _notary_request(request: RequestRecord) -> notary.Request:
    if request.deadline is None:
        raise TerminalError(f"request {request.request_id} has no deadline: expected its rule's clock to have started")
    return notary.Request(
        request_id=request.request_id,
        kind=request.kind,
        legal_basis=request.legal_basis,
        reference=request.reference,
        received_on=request.received_on,
        deadline=request.deadline,
    )


def _finished(task: TaskRecord) -> notary.FinishedSystem:
    if task.evidence_level is None:
        raise TerminalError(f"system {task.system} has a receipt but no evidence level in the ledger")
    return notary.FinishedSystem(
        system=task.system,
        category=task.category,
        evidence_level=task.evidence_level,
        records_before=task.records_before,
        records_after=task.records_after,
        residual=tuple(task.residual or ()),
    )


def _destination_facts(destinations: tuple[DestinationStatus, ...]) -> dict[str, str | int | Opaque]:
    """Each destination's typed fields as flat facts `destination.<n>.<field>`; absent values are left out."""
    facts: dict[str, str | int | Opaque] = {}
    for n, d in enumerate(destinations):
        fields: dict[str, str | Opaque | None] = {"name": d.name, "id": d.id, "status": d.status}
        fields.update(d.opaque)
        if d.finished_at is not None:
            fields["finished_at"] = d.finished_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        facts.update({f"destination.{n}.{name}": value for name, value in fields.items() if value is not None})
    return facts


def _now() -> datetime:
    return datetime.now(UTC)


def _scheduled_at() -> datetime:
    """When this attempt of the activity was scheduled, on the workflow's clock (a test server's skipped clock too)."""
    return activity.info().current_attempt_scheduled_time.astimezone(UTC)
