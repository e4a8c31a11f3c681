"""A class order: every (system, batch) erased by a workflow of its own, in a bounded window, then one certificate.

The order's run starts the batches' workflows in plan order, at most `max_concurrency` at once. After
`BATCHES_PER_RUN` batches (or when the server suggests it) it lets the running ones finish and continues as new with
where it stopped, so no history grows past a few thousand events. A system whose kind cleans up once after its batches
(Delta: checkpoint, old files and log history) gets that clean-up and its own receipt after the last batch, also when
the order is cancelled. `pause` stops starting batches (running ones finish), `resume` starts them again, `cancel`
starts no more: once the running ones finish, the request is cancelled with the operator's reason and the count of
batches done, in a signed statement over their receipts (no certificate: the class is not erased). A batch's workflow id is "<request>/<system>/<batch>": started twice, it runs once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.class_contracts import (
        CANCEL_CLASS,
        CLASS_PLAN,
        CLASS_PREVIEW,
        CLEAN_UP_SYSTEM,
        ERASE_BATCH,
        RECORD_BATCH_RECEIPT,
        RECORD_CLEAN_UP_RECEIPT,
        SEAL_CLASS,
        SET_PAUSED,
        BatchInput,
        BatchReceiptInput,
        BatchResult,
        BatchStep,
        CancelInput,
        ClassOrderInput,
        ClassPlan,
        ClassResult,
        ClassScope,
        CleanUpReceiptInput,
        CleanUpResult,
        CleanUpStep,
        PausedInput,
    )
    from activities.contracts import (
        APPROVED,
        CANCELLED,
        DECIDE,
        RECORD_EVENT,
        REJECTED,
        SHRED,
        DecideInput,
        DecideResult,
        EventInput,
        OperatorDecision,
        ReceiptResult,
        RequestInput,
        SealInput,
        SealResult,
        ShredInput,
        ShredResult,
        SystemPlan,
    )
    from domain.model import EvidenceLevel
    from domain.states import Phase
    from workflows.options import LEDGER, connector_options
    from workflows.request import APPROVE_UPDATE, REJECT_UPDATE, decision_problem, reason_problem, same_operator
    from workflows.system import _describe

BATCHES_PER_RUN = 100  # about 5 events each in this history: a run stays near 500 events
PAUSE_UPDATE = "pause"
RESUME_UPDATE = "resume"
CANCEL_UPDATE = "cancel"
# workflow.patched: runs started before it keep a cancelled order's data key
SHRED_CANCELLED_PATCH = "shred-when-cancelled"
# workflow.patched: runs started before it erase without waiting for a second operator's approval
CLASS_APPROVAL_PATCH = "class-approval"
_BEFORE_APPROVAL = (Phase.PREVIEWING, Phase.AWAITING_APPROVAL)
PROGRESS_QUERY = "progress"


@workflow.defn(name="BatchErasure")
class BatchErasureWorkflow:
    """One batch of one system: erase (locate, erase, verify in one activity), then its signed receipt."""

    @workflow.run
    async def run(self, input: BatchInput) -> str:
        started = workflow.now()
        step = BatchStep(input.request_id, input.plan.system, input.batch)
        try:
            result: BatchResult = await workflow.execute_activity(
                ERASE_BATCH, step, result_type=BatchResult, **connector_options(input.plan.retry, input.plan.task_queue)
            )
            level, detail = result.level, result.detail
        except ActivityError as err:
            level, detail = EvidenceLevel.FAILED, _describe(err)
        await workflow.execute_activity(
            RECORD_BATCH_RECEIPT,
            BatchReceiptInput(
                request_id=input.request_id,
                system=input.plan.system,
                batch=input.batch,
                level=level,
                detail=detail,
                workflow_id=workflow.info().workflow_id,
                run_id=workflow.info().run_id,
                started_at=started.isoformat(),
                finished_at=workflow.now().isoformat(),
            ),
            result_type=ReceiptResult,
            **LEDGER,
        )
        return str(level)


@workflow.defn(name="ClassOrder")
class ClassOrderWorkflow:
    def __init__(self) -> None:
        self._phase = Phase.PLANNING
        self._paused = False
        self._cancel_reason: str | None = None
        self._next = 0
        self._total = 0
        self._running = 0
        self._submitted_by = ""
        self._decision: tuple[str, OperatorDecision] | None = None  # taken: a second one is refused meanwhile
        self._decided = False  # the decision is recorded

    @workflow.run
    async def run(self, input: ClassOrderInput) -> ClassResult | None:
        # an update may arrive with the first task, before this runs: keep what it set
        self._paused, self._cancel_reason = self._paused or input.paused, self._cancel_reason or input.cancel_reason
        self._next = input.next_item
        plan = input.plan
        if plan is None and self._cancel_reason is None and workflow.patched(CLASS_APPROVAL_PATCH):
            ended = await self._approval(input.request_id)
            if ended is not None:  # nothing was erased: nothing needs the class's subjects any more
                shred = ShredInput(input.request_id, ended, workflow.now().isoformat())
                await workflow.execute_activity(SHRED, shred, result_type=ShredResult, **LEDGER)
                self._phase = Phase.CLOSED
                return None
        if plan is None:
            plan = await workflow.execute_activity(
                CLASS_PLAN, RequestInput(input.request_id), result_type=ClassPlan, **LEDGER
            )
        items = [(s.plan, n) for s in plan.systems for n in range(s.batches)]
        self._total = len(items)
        self._phase = Phase.EXECUTING
        window = asyncio.Semaphore(plan.max_concurrency)
        running: list[asyncio.Task[None]] = []
        started = 0
        while self._next < len(items) and self._cancel_reason is None:
            if started >= BATCHES_PER_RUN or workflow.info().is_continue_as_new_suggested():
                await asyncio.gather(*running)
                workflow.continue_as_new(
                    ClassOrderInput(input.request_id, plan, self._next, self._paused, self._cancel_reason)
                )
            await window.acquire()
            await workflow.wait_condition(lambda: not self._paused or self._cancel_reason is not None)
            if self._cancel_reason is not None:
                window.release()
                break
            system_plan, batch = items[self._next]
            self._next += 1
            started += 1
            running.append(asyncio.create_task(self._batch(input.request_id, system_plan, batch, window)))
        await asyncio.gather(*running)
        first = 0  # each system's first item: a system any batch of which started is cleaned up
        for system in plan.systems:
            if system.clean_up and self._next > first:
                await self._clean_up(input.request_id, system.plan)
            first += system.batches
        if self._cancel_reason is not None:
            cancel = CancelInput(input.request_id, self._cancel_reason, workflow.now().isoformat())
            await workflow.execute_activity(CANCEL_CLASS, cancel, **LEDGER)
            if workflow.patched(SHRED_CANCELLED_PATCH):  # the class is not erased: nothing needs its subjects any more
                shred = ShredInput(input.request_id, "cancelled", workflow.now().isoformat())
                await workflow.execute_activity(SHRED, shred, result_type=ShredResult, **LEDGER)
            self._phase = Phase.CLOSED
            return None
        self._phase = Phase.SEALING
        sealed: SealResult = await workflow.execute_activity(
            SEAL_CLASS, SealInput(input.request_id), result_type=SealResult, **LEDGER
        )
        self._phase = Phase.GRACE_PERIOD
        await workflow.sleep(timedelta(seconds=plan.grace_s))
        await workflow.execute_activity(
            SHRED,
            ShredInput(input.request_id, "grace period ended", workflow.now().isoformat()),
            result_type=ShredResult,
            **LEDGER,
        )
        self._phase = Phase.CLOSED
        return ClassResult(outcome=sealed.outcome, batches=self._total)

    async def _approval(self, request_id: str) -> str | None:
        """Count the class per system, then wait durably for the decision of an operator other than the submitter
        (no approval policy turns this off). Returns how the order ended (rejected, cancelled), or None to erase."""
        self._phase = Phase.PREVIEWING
        scope: ClassScope = await workflow.execute_activity(
            CLASS_PREVIEW, RequestInput(request_id), result_type=ClassScope, **LEDGER
        )
        self._submitted_by = scope.submitted_by
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

    async def _batch(self, request_id: str, plan: SystemPlan, batch: int, window: asyncio.Semaphore) -> None:
        try:
            await workflow.execute_child_workflow(
                BatchErasureWorkflow.run,
                BatchInput(request_id, plan, batch),
                id=f"{request_id}/{plan.system}/{batch}",
                task_queue=workflow.info().task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,  # a batch runs once, whatever replays
            )
        except WorkflowAlreadyStartedError:
            pass  # a run before continue-as-new started it; its receipt is logged once whatever happens
        finally:
            window.release()

    async def _clean_up(self, request_id: str, plan: SystemPlan) -> None:
        """The system's one clean-up after all its batches, then its own signed receipt: the batch receipts claim
        only what their deletions showed, what the clean-up removes and checks is claimed here."""
        started = workflow.now()
        try:
            result: CleanUpResult = await workflow.execute_activity(
                CLEAN_UP_SYSTEM,
                CleanUpStep(request_id, plan.system),
                result_type=CleanUpResult,
                **connector_options(plan.retry, plan.task_queue),
            )
        except ActivityError as err:
            result = CleanUpResult(EvidenceLevel.FAILED, _describe(err))
        receipt = CleanUpReceiptInput(
            request_id=request_id,
            system=plan.system,
            result=result,
            workflow_id=workflow.info().workflow_id,
            run_id=workflow.info().run_id,
            started_at=started.isoformat(),
            finished_at=workflow.now().isoformat(),
        )
        await workflow.execute_activity(RECORD_CLEAN_UP_RECEIPT, receipt, result_type=ReceiptResult, **LEDGER)

    @workflow.query(name=PROGRESS_QUERY)
    def progress(self) -> dict[str, object]:
        return {"phase": self._phase, "started": self._next, "batches": self._total, "paused": self._paused}

    @workflow.update(name=PAUSE_UPDATE)
    async def pause(self) -> str:
        self._paused = True
        await self._record_paused(True)
        return "paused: running batches finish, no new one starts"

    @workflow.update(name=RESUME_UPDATE)
    async def resume(self) -> str:
        self._paused = False
        await self._record_paused(False)
        return "resumed"

    @workflow.update(name=APPROVE_UPDATE)
    async def approve(self, by: OperatorDecision) -> str:
        """A second operator approves the counted order: an event, a signed record, then its batches."""
        return await self._decide(APPROVED, by)

    @approve.validator
    def _valid_approval(self, by: OperatorDecision) -> None:
        self._check_decision("approve", by, need_reason=False)
        if same_operator(by.actor, self._submitted_by):
            raise ValueError("the approver must not be the operator who submitted the request: four eyes")

    @workflow.update(name=REJECT_UPDATE)
    async def reject(self, by: OperatorDecision) -> str:
        """The order ends `rejected` with the reason: nothing is erased."""
        return await self._decide(REJECTED, by)

    @reject.validator
    def _valid_rejection(self, by: OperatorDecision) -> None:
        self._check_decision("reject", by, need_reason=True)

    @workflow.update(name=CANCEL_UPDATE)
    async def cancel(self, by: OperatorDecision | str) -> str:
        """Before approval the order ends `cancelled` as a decision; once erasing, no new batch starts. A bare
        reason is what the update took before `erasure cancel` sent the operator's decision."""
        if self._phase in _BEFORE_APPROVAL:
            assert isinstance(by, OperatorDecision)  # the validator refuses a bare reason here
            return await self._decide(CANCELLED, by)
        reason = by if isinstance(by, str) else by.reason
        self._cancel_reason = reason.strip()
        at = workflow.now().isoformat()
        detail = {"reason": reason} if isinstance(by, str) else {"reason": reason, "actor": by.actor}
        event = EventInput(workflow.info().workflow_id, None, "cancel_requested", "cancel_requested", at, detail)
        await workflow.execute_activity(RECORD_EVENT, event, **LEDGER)
        return "cancelled: running batches finish, no new one starts"

    @pause.validator
    def _can_pause(self) -> None:
        self._only_while_executing()

    @resume.validator
    def _can_resume(self) -> None:
        self._only_while_executing()

    @cancel.validator
    def _can_cancel(self, by: OperatorDecision | str) -> None:
        if self._phase in _BEFORE_APPROVAL:
            if not isinstance(by, OperatorDecision):
                raise ValueError(f"cannot cancel while {self._phase} without the operator's name: use erasure cancel")
            self._check_decision("cancel", by, need_reason=True)
            return
        self._only_while_executing()
        problem = reason_problem(by) if isinstance(by, str) else decision_problem(by, need_reason=True)
        if problem:
            raise ValueError(problem)

    async def _decide(self, decision: str, by: OperatorDecision) -> str:
        self._decision = (decision, by)
        await workflow.wait_condition(lambda: self._decided)
        return f"{decision} by {by.actor}"

    def _check_decision(self, verb: str, by: OperatorDecision, *, need_reason: bool) -> None:
        if self._phase not in _BEFORE_APPROVAL or (verb != "cancel" and self._phase != Phase.AWAITING_APPROVAL):
            raise ValueError(f"cannot {verb} while {self._phase}: nothing awaits approval")
        if self._decision is not None:
            raise ValueError(f"the request is already {self._decision[0]}")
        problem = decision_problem(by, need_reason=need_reason)
        if problem:
            raise ValueError(problem)

    def _only_while_executing(self) -> None:
        if self._phase not in (Phase.PLANNING, *_BEFORE_APPROVAL, Phase.EXECUTING) or self._cancel_reason is not None:
            raise ValueError(f"cannot change a class order while {self._phase}")

    async def _record_paused(self, paused: bool) -> None:
        await workflow.execute_activity(SET_PAUSED, PausedInput(workflow.info().workflow_id, paused), **LEDGER)
