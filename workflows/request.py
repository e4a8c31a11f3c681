"""One erasure request: resolve the subject's identity (and wait for a reviewer where a person must decide), locate
only (the preview) and wait for a second operator's approval where the policy asks, plan, fan out one child workflow
per system, certify, and shred after the grace period. Until execution starts an operator may cancel it.

While it executes, durable timers record a reminder at each lead time before the deadline; `extend` moves it.
Once the systems are done, the recipients of their data are told (GDPR Art. 19): webhooks with bounded retries, manual
recipients by an operator's acknowledgement (`acknowledge_recipient`) within a limit, after which they stand as not
confirmed; then the certificate lists who was told, how and when.
A legal hold stops the systems not yet erased: they are restricted, a partial certificate is issued, and the workflow
waits durably until a hold is released, then erases them and issues a certificate that supersedes the partial one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        APPLY_REVIEW,
        APPROVED,
        AUTHORITY_METHODS,
        AWAIT_AUTHORITY,
        CANCELLED,
        DECIDE,
        DECISIONS,
        EXTEND,
        FAIL,
        MANUAL,
        NON_RETRYABLE,
        NOTIFY_REMINDER,
        PLAN,
        PREVIEW,
        PREVIEWED,
        RECIPIENTS,
        RECORD_EVENT,
        REJECT,
        REJECTED,
        RELATIONSHIPS,
        REQUEST_WORKFLOW,
        RESOLVE,
        SCOPE,
        SEAL,
        SEND_NOTICE,
        SHRED,
        VERIFY_AUTHORITY,
        WEBHOOK,
        Acknowledgement,
        ApplyReviewInput,
        AuthorityVerification,
        AuthorityWait,
        DecideInput,
        DecideResult,
        EventInput,
        ExtendInput,
        ExtendResult,
        Extension,
        FailInput,
        NoticeInput,
        OperatorDecision,
        Plan,
        PreviewedInput,
        Recipient,
        Recipients,
        RejectInput,
        ReminderInput,
        RequestInput,
        RequestResult,
        ResolveResult,
        ReviewDecision,
        ReviewGroup,
        Scope,
        SealInput,
        SealResult,
        ShredInput,
        ShredResult,
        StepInput,
        SystemInput,
        SystemPlan,
        SystemResult,
        VerifyAuthorityInput,
        VerifyAuthorityResult,
        notice_key,
    )
    from domain.states import Phase
    from workflows.options import LEDGER, connector_options
    from workflows.system import HOLDS_PATCH, SystemErasureWorkflow

STATUS_QUERY = "status"
SHRED_NOW_UPDATE = "shred_now"
REVIEW_QUERY = "review"
REVIEW_UPDATE = "review"
# Requests started before identity resolution existed replay without it (tests/histories).
RESOLUTION_PATCH = "identity-resolution"
MAX_REASON = 300
EXTEND_UPDATE = "extend"
DEADLINE_REMINDERS = "deadline-reminders"  # workflow.patched: runs started before it keep no deadline timers
RECIPIENTS_PATCH = "recipients"  # workflow.patched: runs started before it tell no recipient
ACK_RECIPIENT_UPDATE = "acknowledge_recipient"
# A webhook recipient is asked a bounded number of times; a refusal (4xx) is not asked again.
NOTICE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=30),
    backoff_coefficient=4.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
HOLD_RELEASED_SIGNAL = "hold_released"  # `erasure hold release`: a hold that stopped some of the systems is lifted
# workflow.patched: runs started before it neither wait for a guardian's authority nor call the reminder webhook
AUTHORITY_PATCH = "guardian"
REMINDER_WEBHOOK_PATCH = "guardian-reminder-webhook"
VERIFY_AUTHORITY_UPDATE = "verify_authority"
REJECTED = "rejected"
# the reminder webhook: a few tries, then the failure is an event; the workflow never waits on it for long
REMINDER_WEBHOOK: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=3),
}
APPROVAL_PATCH = "approval"  # workflow.patched: runs started before it neither preview nor wait for approval
# workflow.patched: runs started before it keep a rejected or cancelled request's data key
SHRED_ENDED_PATCH = "shred-when-rejected-or-cancelled"
APPROVE_UPDATE = "approve"
REJECT_UPDATE = "reject"
CANCEL_UPDATE = "cancel"
# where a request may still be cancelled: nothing has been erased yet
_BEFORE_EXECUTION = (Phase.RESOLVING, Phase.AWAITING_REVIEW, Phase.PREVIEWING, Phase.AWAITING_APPROVAL)


@workflow.defn(name=REQUEST_WORKFLOW)
class ErasureRequestWorkflow:
    def __init__(self) -> None:
        self._phase = Phase.PLANNING
        self._results: dict[str, str] = {}
        self._outcome: str | None = None
        self._shred_now = False
        self._request_id = ""
        self._review: list[ReviewGroup] = []
        self._decisions: dict[str, ReviewDecision] = {}
        self._recorded: set[str] = set()
        self._deadline: date | None = None  # watched only while executing
        self._extensions = 0
        self._manual: list[Recipient] = []  # recipients told by hand, each acknowledged by an operator
        self._unconfirmed: set[str] = set()  # names of manual recipients whose acknowledgement is still awaited
        self._acknowledging: set[str] = set()  # acknowledgements being recorded: the certificate waits for them
        self._releases = 0  # hold releases signalled and not yet acted on
        self._extendable = True
        self._latest_deadline: date | None = None
        self._first_extension_by: date | None = None
        self._verifying = False  # an operator's verification of the guardian's authority is being recorded
        self._verified = False
        self._authority_limit = datetime.max.replace(tzinfo=UTC)
        self._cancellable = False  # only runs that preview (APPROVAL_PATCH) take a cancellation
        self._submitted_by = ""
        self._decision: tuple[str, OperatorDecision] | None = None  # taken: a second one is refused meanwhile
        self._decided = False  # the decision is recorded

    @workflow.run
    async def run(self, input: RequestInput) -> RequestResult:
        self._request_id = input.request_id
        if workflow.patched(AUTHORITY_PATCH) and not await self._authority(input.request_id):
            self._phase = Phase.REJECTED
            await self._shred_ended(input.request_id, REJECTED)
            return RequestResult(outcome=REJECTED, systems=[])
        self._cancellable = workflow.patched(APPROVAL_PATCH)
        if workflow.patched(RESOLUTION_PATCH):
            await self._resolve(input.request_id)
        if self._cancellable:
            ended = await self._preview_and_approval(input.request_id)
            if ended is not None:
                await self._shred_ended(input.request_id, ended)
                return RequestResult(outcome=ended, systems=[])
        try:
            plan, results, sealed = await self._certify(input)
        except (ActivityError, ChildWorkflowError) as err:
            # no certificate: the ledger says why (retries are bounded), and the workflow fails with the same reason
            cause = err.cause
            while isinstance(cause, ActivityError | ChildWorkflowError):
                cause = cause.cause
            reason = f"cannot certify: {cause.message if isinstance(cause, ApplicationError) else err.message}"
            await workflow.execute_activity(
                FAIL, FailInput(input.request_id, reason, workflow.now().isoformat()), **LEDGER
            )
            raise ApplicationError(reason, non_retryable=True) from None
        self._outcome = sealed.outcome
        self._phase = Phase.GRACE_PERIOD
        await self._shred_after(input.request_id, plan.grace_s)
        self._phase = Phase.CLOSED
        return RequestResult(outcome=sealed.outcome, systems=results)

    async def _certify(self, input: RequestInput) -> tuple[Plan, list[SystemResult], SealResult]:
        plan: Plan = await workflow.execute_activity(PLAN, input, result_type=Plan, **LEDGER)
        self._phase = Phase.EXECUTING
        reminders = None
        if workflow.patched(DEADLINE_REMINDERS) and plan.deadline:
            self._deadline = date.fromisoformat(plan.deadline)
            self._extendable = plan.extendable
            self._latest_deadline = date.fromisoformat(plan.latest_deadline) if plan.latest_deadline else None
            self._first_extension_by = date.fromisoformat(plan.first_extension_by) if plan.first_extension_by else None
            reminders = asyncio.create_task(self._remind(plan.reminder_leads_s))
        try:
            window = asyncio.Semaphore(plan.max_concurrency)
            results = list(await asyncio.gather(*(self._system(input.request_id, p, window) for p in plan.systems)))
            number = 1
            if workflow.patched(HOLDS_PATCH):
                results, number = await self._through_holds(input.request_id, plan, results, window)
        finally:
            if reminders is not None:
                reminders.cancel()
        if workflow.patched(RECIPIENTS_PATCH):
            await self._tell_recipients(input.request_id)
        self._phase = Phase.SEALING
        sealed: SealResult = await workflow.execute_activity(
            SEAL, SealInput(input.request_id, number), result_type=SealResult, **LEDGER
        )
        return plan, results, sealed

    async def _tell_recipients(self, request_id: str) -> None:
        """Tell every recipient of the systems' data; wait for manual acknowledgements up to the limit."""
        told: Recipients = await workflow.execute_activity(
            RECIPIENTS, RequestInput(request_id), result_type=Recipients, **LEDGER
        )
        if not told.recipients:
            return
        self._phase = Phase.NOTIFYING_RECIPIENTS
        self._manual = [r for r in told.recipients if r.notify == MANUAL]
        self._unconfirmed = {r.name for r in self._manual}
        await asyncio.gather(*(self._send(request_id, r) for r in told.recipients if r.notify == WEBHOOK))
        try:
            await workflow.wait_condition(
                lambda: not self._unconfirmed and not self._acknowledging,
                timeout=timedelta(seconds=told.ack_within_s),
            )
        except TimeoutError:
            late, self._unconfirmed = self._unconfirmed, set()  # an acknowledgement from now on is refused
            days = f"{told.ack_within_s / 86400:g}"
            for r in self._manual:
                if r.name in late:
                    detail = {"recipient": r.name, "method": MANUAL, "reason": f"no acknowledgement within {days} days"}
                    await self._notice_event(request_id, r, "recipient_not_confirmed", detail)
            await workflow.wait_condition(lambda: not self._acknowledging)

    async def _send(self, request_id: str, recipient: Recipient) -> None:
        try:
            await workflow.execute_activity(
                SEND_NOTICE,
                NoticeInput(request_id, recipient, workflow.now().isoformat()),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=NOTICE_RETRY,
            )
        except ActivityError as err:
            reason = err.cause.message if isinstance(err.cause, ApplicationError) else str(err.cause or err)
            detail = {"recipient": recipient.name, "method": WEBHOOK, "reason": reason}
            await self._notice_event(request_id, recipient, "recipient_failed", detail)

    async def _notice_event(self, request_id: str, recipient: Recipient, kind: str, detail: dict[str, str]) -> None:
        key = notice_key(recipient.system, recipient.name)
        event = EventInput(request_id, recipient.system, kind, key, workflow.now().isoformat(), detail)
        await workflow.execute_activity(RECORD_EVENT, event, **LEDGER)

    async def _through_holds(
        self, request_id: str, plan: Plan, results: list[SystemResult], window: asyncio.Semaphore
    ) -> tuple[list[SystemResult], int]:
        """While legal holds stop systems: a partial certificate, a durable wait for a release, then the held
        systems are erased by this same workflow. Returns the results and the number of the next certificate."""
        number = 1
        plans = {p.system: p for p in plan.systems}
        while held := [r.system for r in results if r.held]:
            self._phase = Phase.SEALING
            sealed: SealResult = await workflow.execute_activity(
                SEAL, SealInput(request_id, number), result_type=SealResult, **LEDGER
            )
            self._outcome, self._phase = sealed.outcome, Phase.ON_HOLD
            number += 1
            await workflow.wait_condition(lambda: self._releases > 0)
            self._releases, self._phase = 0, Phase.EXECUTING
            resumed = await asyncio.gather(*(self._system(request_id, plans[s], window, number) for s in held))
            by_system = {r.system: r for r in resumed}
            results = [by_system.get(r.system, r) for r in results]
        return results, number

    async def _authority(self, request_id: str) -> bool:
        """Wait durably, up to the configured limit, for an operator to verify a guardian's authority; nothing is
        located or erased meanwhile. False when the time ran out: the request is rejected, with a signed record."""
        wait: AuthorityWait = await workflow.execute_activity(
            AWAIT_AUTHORITY, RequestInput(request_id), result_type=AuthorityWait, **LEDGER
        )
        if not wait.waits:
            return True
        self._phase = Phase.VERIFYING_AUTHORITY
        self._authority_limit = workflow.now() + timedelta(seconds=wait.limit_s)
        while not self._verified:
            left = self._authority_limit - workflow.now()
            if self._verifying:  # a verification that began in time is recorded (or fails) first
                await workflow.wait_condition(lambda: not self._verifying)
            elif left <= timedelta(0):
                reason = f"the guardian's authority was not verified within {wait.limit_s / 86400:g} days"
                await workflow.execute_activity(
                    REJECT, RejectInput(request_id, reason, workflow.now().isoformat()), **LEDGER
                )
                return False
            else:
                with suppress(TimeoutError):
                    await workflow.wait_condition(lambda: self._verified or self._verifying, timeout=left)
        self._phase = Phase.PLANNING
        return True

    async def _resolve(self, request_id: str) -> None:
        """Expand the identifiers through the identity sources; wait durably for a reviewer where one must decide."""
        self._phase = Phase.RESOLVING
        try:
            resolved: ResolveResult = await workflow.execute_activity(
                RESOLVE, RequestInput(request_id), result_type=ResolveResult, **LEDGER
            )
        except ActivityError as err:
            reason = err.cause.message if isinstance(err.cause, ApplicationError) else "identity resolution failed"
            await self._event(request_id, "resolution_failed", "resolution_failed", {"reason": reason})
            raise ApplicationError(f"identity resolution failed: {reason}", non_retryable=True) from None
        if resolved.review:
            self._review = resolved.review
            self._phase = Phase.AWAITING_REVIEW
            await workflow.wait_condition(lambda: len(self._recorded) == len(self._review) or self._cancelling())
            if self._cancelling():
                return
            decisions = [self._decisions[g.group] for g in self._review]
            await workflow.execute_activity(APPLY_REVIEW, ApplyReviewInput(request_id, decisions), **LEDGER)
        self._phase = Phase.PLANNING

    async def _preview_and_approval(self, request_id: str) -> str | None:
        """Locate only, in every system in scope; where the policy asks, wait durably for a second operator's
        decision. Returns how the request ended (rejected, cancelled), or None when it goes on to execution."""
        if not self._cancelling():
            self._phase = Phase.PREVIEWING
            scope: Scope = await workflow.execute_activity(SCOPE, RequestInput(request_id), result_type=Scope, **LEDGER)
            self._submitted_by = scope.submitted_by
            window = asyncio.Semaphore(scope.plan.max_concurrency)
            await asyncio.gather(*(self._preview(request_id, p, window) for p in scope.plan.systems))
        if not self._cancelling():
            awaiting = scope.approval_required
            at = workflow.now().isoformat()
            await workflow.execute_activity(PREVIEWED, PreviewedInput(request_id, awaiting, at), **LEDGER)
            if not awaiting:
                self._phase = Phase.PLANNING
                return None
            self._phase = Phase.AWAITING_APPROVAL
            await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        decision, by = self._decision
        decided = DecideInput(request_id, decision, by.actor, by.reason, workflow.now().isoformat())
        await workflow.execute_activity(DECIDE, decided, result_type=DecideResult, **LEDGER)
        self._decided = True
        if decision == APPROVED:
            self._phase = Phase.PLANNING
            return None
        self._phase = Phase.REJECTED if decision == REJECTED else Phase.CANCELLED
        return decision

    async def _preview(self, request_id: str, plan: SystemPlan, window: asyncio.Semaphore) -> None:
        async with window:
            step = StepInput(request_id, plan.system)
            await workflow.execute_activity(PREVIEW, step, **connector_options(plan.retry, plan.task_queue))

    def _cancelling(self) -> bool:
        return self._decision is not None and self._decision[0] == CANCELLED

    async def _event(self, request_id: str, kind: str, key: str, detail: dict[str, str]) -> None:
        event = EventInput(request_id, None, kind, key, workflow.now().isoformat(), detail)
        await workflow.execute_activity(RECORD_EVENT, event, **LEDGER)

    async def _system(
        self, request_id: str, plan: SystemPlan, window: asyncio.Semaphore, certificate: int = 1
    ) -> SystemResult:
        """One system's child workflow; after a hold's release (`certificate` > 1) a new one resumes the system."""
        resumed = f"/after-hold-{certificate - 1}" if certificate > 1 else ""
        async with window:
            result: SystemResult = await workflow.execute_child_workflow(
                SystemErasureWorkflow.run,
                SystemInput(request_id, plan, resumed=bool(resumed)),
                id=f"{request_id}/{plan.system}{resumed}",
                task_queue=workflow.info().task_queue,
            )
        self._results[plan.system] = result.level
        return result

    async def _remind(self, leads_s: list[float]) -> None:
        """A reminder event at each lead time before the deadline (the start of the day after it, UTC); when an
        extension moves the deadline the reminders are planned again. A lead time already past is not reminded."""
        while True:
            deadline = self._deadline
            assert deadline is not None
            overdue_from = datetime.combine(deadline + timedelta(days=1), time(), UTC)
            ahead = sorted(
                (overdue_from - timedelta(seconds=lead), lead)
                for lead in leads_s
                if overdue_from - timedelta(seconds=lead) > workflow.now()
            )
            moved = self._moved_from(deadline)
            if not ahead:
                await workflow.wait_condition(moved)
                continue
            at, lead = ahead[0]
            try:
                await workflow.wait_condition(moved, timeout=at - workflow.now())
            except TimeoutError:
                detail = {"deadline": deadline.isoformat(), "lead_days": f"{lead / 86400:g}"}
                key = f"deadline_reminder:{deadline.isoformat()}:{lead:g}"
                await self._event(self._request_id, "deadline_reminder", key, detail)
                if workflow.patched(REMINDER_WEBHOOK_PATCH):
                    await self._call_webhook(deadline, detail["lead_days"])

    async def _call_webhook(self, deadline: date, lead_days: str) -> None:
        """The reminder's POST to the configured webhook; its failure, after a few tries, is an event."""
        reminder = ReminderInput(self._request_id, deadline.isoformat(), lead_days, workflow.now().isoformat())
        try:
            await workflow.execute_activity(NOTIFY_REMINDER, reminder, **REMINDER_WEBHOOK)
        except ActivityError as err:
            reason = err.cause.message if isinstance(err.cause, ApplicationError) else "the webhook call failed"
            detail = {"deadline": deadline.isoformat(), "lead_days": lead_days, "reason": reason}
            key = f"reminder_webhook_failed:{deadline.isoformat()}:{lead_days}"
            await self._event(self._request_id, "reminder_webhook_failed", key, detail)

    def _moved_from(self, deadline: date) -> Callable[[], bool]:
        return lambda: self._deadline != deadline

    async def _shred_after(self, request_id: str, grace_s: float) -> None:
        """A durable timer: the request's data key is destroyed when the grace period ends (or on demand)."""
        reason = "grace period ended"
        try:
            await workflow.wait_condition(lambda: self._shred_now, timeout=timedelta(seconds=grace_s))
            reason = "operator asked to shred now"
        except TimeoutError:
            pass
        await workflow.execute_activity(
            SHRED, ShredInput(request_id, reason, workflow.now().isoformat()), result_type=ShredResult, **LEDGER
        )

    async def _shred_ended(self, request_id: str, outcome: str) -> None:
        """A rejected or cancelled request erases nothing, so nothing needs its sealed identifiers any more: its data
        key is destroyed at once, after the signed record of the rejection or cancellation."""
        if workflow.patched(SHRED_ENDED_PATCH):
            await workflow.execute_activity(
                SHRED, ShredInput(request_id, outcome, workflow.now().isoformat()), result_type=ShredResult, **LEDGER
            )

    @workflow.signal(name=HOLD_RELEASED_SIGNAL)
    def hold_released(self) -> None:
        """A hold was released: the held systems are tried again (a hold still in place stops them again)."""
        self._releases += 1

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> dict[str, object]:
        deadline = self._deadline.isoformat() if self._deadline else None
        return {"phase": self._phase, "systems": dict(self._results), "outcome": self._outcome, "deadline": deadline}

    @workflow.update(name=EXTEND_UPDATE)
    async def extend(self, extension: Extension) -> str:
        """Move the deadline by the operator's days, recorded with the reason and the operator; returns the new one."""
        self._extensions += 1
        extended: ExtendResult = await workflow.execute_activity(
            EXTEND,
            ExtendInput(self._request_id, extension, self._extensions, workflow.now().isoformat()),
            result_type=ExtendResult,
            **LEDGER,
        )
        self._deadline = date.fromisoformat(extended.deadline)
        return extended.deadline

    @extend.validator
    def _only_while_executing(self, extension: Extension) -> None:
        if self._deadline is None or self._phase not in (Phase.EXECUTING, Phase.ON_HOLD):
            raise ValueError(f"cannot extend while {self._phase}: only a request being executed has a deadline")
        problem = extension_problem(extension)
        if problem:
            raise ValueError(problem)
        # the deadline rule's limits (stores/deadline_rules.yaml)
        if not self._extendable:
            raise ValueError("the deadline rule of this request allows no extension")
        today = workflow.now().date()
        if self._extensions == 0 and self._first_extension_by is not None and today > self._first_extension_by:
            raise ValueError(
                f"a first extension must be told by {self._first_extension_by.isoformat()}, got {today.isoformat()}"
            )
        moved = self._deadline + timedelta(days=extension.days)
        if self._latest_deadline is not None and moved > self._latest_deadline:
            raise ValueError(
                f"expected a deadline on or before {self._latest_deadline.isoformat()}, got {moved.isoformat()}"
            )

    @workflow.update(name=VERIFY_AUTHORITY_UPDATE)
    async def verify_authority(self, verification: AuthorityVerification) -> str:
        """An operator's verification of the guardian's authority: an event and a signed record, then the request
        proceeds; returns the deadline the rule gives from it (or "" if none)."""
        self._verifying = True  # taken: a second verification is refused meanwhile
        try:
            result: VerifyAuthorityResult = await workflow.execute_activity(
                VERIFY_AUTHORITY,
                VerifyAuthorityInput(self._request_id, verification, workflow.now().isoformat()),
                result_type=VerifyAuthorityResult,
                **LEDGER,
            )
            self._verified = True
        finally:
            self._verifying = False
        return result.deadline

    @verify_authority.validator
    def _valid_verification(self, verification: AuthorityVerification) -> None:
        if self._phase != Phase.VERIFYING_AUTHORITY or self._verified or workflow.now() >= self._authority_limit:
            raise ValueError(f"no authority to verify while {self._phase}")
        if self._verifying:
            raise ValueError("the authority is already being verified")
        problem = verification_problem(verification)
        if problem:
            raise ValueError(problem)

    @workflow.query(name=REVIEW_QUERY)
    def review_groups(self) -> dict[str, object]:
        """What a reviewer must decide: each group described without a value, and what was decided so far."""
        decided = {g: d.decision for g, d in self._decisions.items() if g in self._recorded}
        return {
            "phase": self._phase,
            "groups": [{**g.__dict__, "decision": decided.get(g.group)} for g in self._review],
        }

    @workflow.update(name=REVIEW_UPDATE)
    async def review(self, decision: ReviewDecision) -> str:
        """A reviewer's decision on one group: an event with the reviewer and the time, then it counts."""
        group = next(g for g in self._review if g.group == decision.group)
        self._decisions[decision.group] = decision  # taken: a second decision on the group is refused meanwhile
        detail = {
            "group": group.group,
            "kind": group.kind,
            "source": group.source,
            "rules": ", ".join(f"{kind} {rule}" for kind, rule in group.rules.items()),
            "decision": decision.decision,
            "reason": decision.reason,
            "reviewer": decision.reviewer,
        }
        try:
            await self._event(self._request_id, "review_decision", f"review:{group.group}", detail)
        except ActivityError:
            del self._decisions[decision.group]
            raise
        self._recorded.add(decision.group)
        return f"{group.group}: {decision.decision} recorded"

    @review.validator
    def _valid_review(self, decision: ReviewDecision) -> None:
        if self._phase != Phase.AWAITING_REVIEW:
            raise ValueError(f"nothing to review while {self._phase}")
        group = next((g for g in self._review if g.group == decision.group), None)
        if group is None:
            known = ", ".join(g.group for g in self._review)
            raise ValueError(f"no candidate group {decision.group[:40]!r}: expected one of {known}")
        if decision.group in self._decisions:
            raise ValueError(f"group {group.group} is already decided")
        if decision.decision not in DECISIONS[group.kind]:
            allowed = " or ".join(DECISIONS[group.kind])
            raise ValueError(f"a {group.kind} group takes {allowed}, not {decision.decision[:40]!r}")
        if not decision.reason.strip() or len(decision.reason) > MAX_REASON:
            raise ValueError(f"a reason is required, at most {MAX_REASON} characters")
        if not decision.reviewer.strip():
            raise ValueError("the reviewer must be named")

    @workflow.update(name=ACK_RECIPIENT_UPDATE)
    async def acknowledge_recipient(self, ack: Acknowledgement) -> str:
        """An operator records that a manual recipient acknowledged the erasure: an event with the actor and time."""
        self._unconfirmed.discard(ack.recipient)  # taken: a second acknowledgement is refused meanwhile
        self._acknowledging.add(ack.recipient)
        try:
            for r in self._manual:
                if r.name == ack.recipient:
                    detail = {"recipient": r.name, "method": MANUAL, "actor": ack.actor}
                    await self._notice_event(self._request_id, r, "recipient_acknowledged", detail)
        except ActivityError:
            self._unconfirmed.add(ack.recipient)
            raise
        finally:
            self._acknowledging.discard(ack.recipient)
        return f"{ack.recipient}: acknowledgement recorded"

    @acknowledge_recipient.validator
    def _awaited_recipient(self, ack: Acknowledgement) -> None:
        if self._phase != Phase.NOTIFYING_RECIPIENTS:
            raise ValueError(f"no recipient awaits an acknowledgement while {self._phase}")
        if ack.recipient not in self._unconfirmed:
            awaited = ", ".join(sorted(self._unconfirmed)) or "none"
            raise ValueError(
                f"recipient: expected one awaiting acknowledgement ({awaited}), got {ack.recipient[:40]!r}"
            )
        if not ack.actor.strip():
            raise ValueError("actor: expected the operator's name, got none")

    @workflow.update(name=APPROVE_UPDATE)
    async def approve(self, by: OperatorDecision) -> str:
        """A second operator approves the previewed request: an event, a signed record, then execution."""
        return await self._decide(APPROVED, by)

    @approve.validator
    def _valid_approval(self, by: OperatorDecision) -> None:
        self._check_decision("approve", by, need_reason=False)
        if same_operator(by.actor, self._submitted_by):
            raise ValueError("the approver must not be the operator who submitted the request: four eyes")

    @workflow.update(name=REJECT_UPDATE)
    async def reject(self, by: OperatorDecision) -> str:
        """The request ends `rejected` with the reason: nothing is erased."""
        return await self._decide(REJECTED, by)

    @reject.validator
    def _valid_rejection(self, by: OperatorDecision) -> None:
        self._check_decision("reject", by, need_reason=True)

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self, by: OperatorDecision) -> str:
        """The request ends `cancelled` with the reason, at the next step before anything is erased."""
        return await self._decide(CANCELLED, by)

    @cancel.validator
    def _valid_cancellation(self, by: OperatorDecision) -> None:
        if not self._cancellable or self._phase not in _BEFORE_EXECUTION:
            raise ValueError(f"cannot cancel while {self._phase}: only before anything is erased")
        if self._decision is not None:
            raise ValueError(f"the request is already {self._decision[0]}")
        problem = decision_problem(by, need_reason=True)
        if problem:
            raise ValueError(problem)

    async def _decide(self, decision: str, by: OperatorDecision) -> str:
        self._decision = (decision, by)
        await workflow.wait_condition(lambda: self._decided)
        return f"{decision} by {by.actor}"

    def _check_decision(self, verb: str, by: OperatorDecision, *, need_reason: bool) -> None:
        if self._phase != Phase.AWAITING_APPROVAL:
            raise ValueError(f"cannot {verb} while {self._phase}: nothing awaits approval")
        if self._decision is not None:
            raise ValueError(f"the request is already {self._decision[0]}")
        problem = decision_problem(by, need_reason=need_reason)
        if problem:
            raise ValueError(problem)

    @workflow.update(name=SHRED_NOW_UPDATE)
    async def shred_now(self) -> str:
        self._shred_now = True
        await workflow.wait_condition(lambda: self._phase == Phase.CLOSED)
        return "shredded"

    @shred_now.validator
    def _only_after_certificate(self) -> None:
        if self._phase != Phase.GRACE_PERIOD:
            raise ValueError(f"cannot shred while {self._phase}: the certificate comes first")


def verification_problem(verification: AuthorityVerification) -> str | None:
    """What is wrong with a verification, checked by the CLI before it asks and by the workflow's validator."""
    if verification.method not in AUTHORITY_METHODS:
        return f"method: expected one of {', '.join(AUTHORITY_METHODS)}, got {verification.method[:40]!r}"
    if verification.relationship not in RELATIONSHIPS:
        return f"relationship: expected one of {', '.join(RELATIONSHIPS)}, got {verification.relationship[:40]!r}"
    if not re.fullmatch(r"[A-Za-z0-9_.:+() -]{1,80}", verification.verifier) or "@" in verification.verifier:
        return "verifier: expected the operator's name (letters, digits, spaces, -_.:+()), got something else"
    return None


def extension_problem(extension: Extension) -> str | None:
    """What is wrong with an extension, checked by the CLI before it asks and by the workflow's validator."""
    if extension.days < 1:
        return f"days: expected a whole number of days from 1, got {extension.days}"
    return reason_problem(extension.reason) or actor_problem(extension.actor)


def decision_problem(by: OperatorDecision, *, need_reason: bool) -> str | None:
    """What is wrong with an approval, rejection or cancellation (a reason is optional only to approve)."""
    reason = reason_problem(by.reason) if need_reason or by.reason else None
    return reason or actor_problem(by.actor)


def reason_problem(reason: str) -> str | None:
    if not reason.strip() or "\n" in reason or len(reason) > MAX_REASON:
        return f"reason: expected one line of at most {MAX_REASON} characters saying why, got none or more"
    if "@" in reason or re.search(r"\d{5}", reason):
        return "reason: expected why, not who: no address or long number"
    return None


def actor_problem(actor: str) -> str | None:
    return None if actor.strip() else "actor: expected the operator's name, got none"


def same_operator(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()
