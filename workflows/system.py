"""One system's erasure: locate -> erase -> (poll the vendor's job) -> verify -> signed receipt.

A synchronous store (no vendor job) runs locate, erase and verify in one activity; a vendor's job is polled durably.

The workflow never fails on a system's refusal: every path ends in a receipt that states the evidence level honestly
(a timeout or a refusal is `failed`, a lock is `blocked`, never success).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        ERASE,
        ERASE_UNLESS_HELD,
        ERASE_VERIFIED,
        LIFT,
        LOCATE,
        NON_RETRYABLE,
        POLL,
        RECORD_EVENT,
        RECORD_RECEIPT,
        RESTRICT,
        VERIFY,
        ErasedAndVerified,
        EraseResult,
        EventInput,
        PollInput,
        PollResult,
        ReceiptInput,
        ReceiptResult,
        RestrictResult,
        StepInput,
        SystemInput,
        SystemResult,
        VerifyResult,
    )
    from domain.model import EvidenceLevel
    from workflows.options import LEDGER, connector_options

# Runs started before legal holds existed replay without the hold check (tests/histories).
HOLDS_PATCH = "holds"
# Runs started before it locate, erase (unless held) and verify a synchronous store in three activities.
ONE_ACTIVITY_PATCH = "synchronous-store-in-one-activity"

# Strength of evidence, for attest-only vendors where a later look may strengthen what erase reported.
_RANK = {EvidenceLevel.ACCEPTED: 0, EvidenceLevel.VENDOR_ATTESTED: 1, EvidenceLevel.VERIFIED_ABSENT: 2}


@workflow.defn(name="SystemErasure")
class SystemErasureWorkflow:
    def __init__(self) -> None:
        self._notes: list[str] = []

    @workflow.run
    async def run(self, input: SystemInput) -> SystemResult:
        started = workflow.now()
        level, detail, held = await self._erase(input)
        receipt: ReceiptResult = await workflow.execute_activity(
            RECORD_RECEIPT,
            ReceiptInput(
                request_id=input.request_id,
                system=input.plan.system,
                action="hold" if held else "erase",
                level=level,
                detail=detail,
                notes=self._notes,
                workflow_id=workflow.info().workflow_id,
                run_id=workflow.info().run_id,
                started_at=started.isoformat(),
                finished_at=workflow.now().isoformat(),
            ),
            result_type=ReceiptResult,
            **LEDGER,
        )
        return SystemResult(system=input.plan.system, level=level, receipt_sha256=receipt.sha256, held=held)

    async def _erase(self, input: SystemInput) -> tuple[str, str, bool]:
        """The system's level and detail, and whether a legal hold stopped it (then restricted, nothing erased)."""
        plan = input.plan
        step = StepInput(input.request_id, plan.system)
        options = connector_options(plan.retry, plan.task_queue)
        holds = workflow.patched(HOLDS_PATCH)
        try:
            if input.resumed:
                await workflow.execute_activity(LIFT, step, **options)
            if holds and not plan.asynchronous and workflow.patched(ONE_ACTIVITY_PATCH):
                # nothing waits between the steps of a synchronous store: one activity (fewer server round trips),
                # each step still recorded in the ledger as it finishes
                done: ErasedAndVerified = await workflow.execute_activity(
                    ERASE_VERIFIED, step, result_type=ErasedAndVerified, **options
                )
                if done.verified is None:
                    return await self._restrict(step, options)
                return (*_combine(done.erased.level, done.erased.detail, done.verified, plan.verifiable), False)
            await workflow.execute_activity(LOCATE, step, **options)
            erase = ERASE_UNLESS_HELD if holds else ERASE
            erased: EraseResult = await workflow.execute_activity(erase, step, result_type=EraseResult, **options)
            if erased.held:
                return await self._restrict(step, options)
            level, detail = erased.level, erased.detail
            if erased.job_id is not None:
                level, detail = await self._wait_for_vendor(input, erased.job_id)
                if level == EvidenceLevel.FAILED:
                    return level, detail, False
            verified: VerifyResult = await workflow.execute_activity(VERIFY, step, result_type=VerifyResult, **options)
        except ActivityError as err:
            return EvidenceLevel.FAILED, _describe(err), False
        return (*_combine(level, detail, verified, plan.verifiable), False)

    async def _restrict(self, step: StepInput, options: dict[str, Any]) -> tuple[str, str, bool]:
        restricted: RestrictResult = await workflow.execute_activity(
            RESTRICT, step, result_type=RestrictResult, **options
        )
        return restricted.level, restricted.detail, True

    async def _wait_for_vendor(self, input: SystemInput, job_id: str) -> tuple[str, str]:
        """Poll durably until the vendor's stated service time, escalate, then until the deadline."""
        plan = input.plan
        begun, every = workflow.now(), timedelta(seconds=plan.poll_every_s)
        # Both times count from the first poll, and each window runs one poll interval past its time: the poll that
        # would come after the last one to fit does not, so the last look is at the time, not up to a poll before it
        # (the deadline declared a day early when the second window counted from the escalation).
        service_at = begun + timedelta(seconds=plan.service_time_s)
        deadline_at = begun + timedelta(seconds=plan.deadline_s)
        try:
            result = await self._poll(input, job_id, service_at + every - workflow.now())
        except ActivityError as err:
            if not _timed_out(err):
                return EvidenceLevel.FAILED, _describe(err)
            days = plan.service_time_s / 86400
            self._notes.append(f"escalated: the vendor's job was still running after its service time ({days:g} days)")
            await self._event(input, "escalation", {"after_days": f"{days:g}", "job": job_id})
            try:
                result = await self._poll(input, job_id, deadline_at + every - workflow.now())
            except ActivityError as late:
                if not _timed_out(late):
                    return EvidenceLevel.FAILED, _describe(late)
                deadline_days = plan.deadline_s / 86400
                await self._event(input, "deadline_passed", {"after_days": f"{deadline_days:g}", "job": job_id})
                return (
                    EvidenceLevel.FAILED,
                    f"the vendor's job was still running at the deadline ({deadline_days:g} days): not done",
                )
        if result.succeeded:
            return EvidenceLevel.VENDOR_ATTESTED, result.detail
        return EvidenceLevel.FAILED, result.detail

    async def _poll(self, input: SystemInput, job_id: str, within: timedelta) -> PollResult:
        # Each retry is one poll; retries do not grow the history, so a wait of weeks stays small.
        every = timedelta(seconds=input.plan.poll_every_s)
        result: PollResult = await workflow.execute_activity(
            POLL,
            PollInput(input.request_id, input.plan.system, job_id),
            result_type=PollResult,
            task_queue=input.plan.task_queue,
            schedule_to_close_timeout=within,
            start_to_close_timeout=timedelta(seconds=input.plan.retry.start_to_close_s),
            retry_policy=RetryPolicy(
                initial_interval=every,
                backoff_coefficient=1.0,
                maximum_interval=every,
                non_retryable_error_types=NON_RETRYABLE,
            ),
        )
        return result

    async def _event(self, input: SystemInput, kind: str, detail: dict[str, str]) -> None:
        key = f"{kind}:{input.plan.system}"
        await workflow.execute_activity(
            RECORD_EVENT,
            EventInput(input.request_id, input.plan.system, kind, key, workflow.now().isoformat(), detail),
            **LEDGER,
        )


def _combine(level: str, detail: str, verified: VerifyResult, verifiable: bool) -> tuple[str, str]:
    """A system we can look into is judged by the look; an attest-only vendor by its word, strengthened if it can."""
    if verifiable:
        return verified.level, verified.detail or detail
    if level not in _RANK or verified.level not in _RANK:
        return EvidenceLevel.FAILED if EvidenceLevel.FAILED in (level, verified.level) else level, detail
    best = max(level, verified.level, key=lambda v: _RANK[EvidenceLevel(v)])
    return best, verified.detail if best == verified.level and verified.detail else detail


def _timed_out(err: ActivityError) -> bool:
    """The poll ran out of time: either its schedule-to-close timeout fired, or no retry fitted before it."""
    return isinstance(err.cause, TimeoutError) or err.retry_state == RetryState.TIMEOUT


def _describe(err: ActivityError) -> str:
    """The failure as the activity stated it; activity messages never carry identifiers."""
    cause = err.cause
    if isinstance(cause, TimeoutError):
        return f"timed out ({cause.type.name.lower() if cause.type else 'timeout'}): not done"
    if isinstance(cause, ApplicationError):
        return cause.message
    return str(cause or err)
