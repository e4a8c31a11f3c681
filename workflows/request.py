"""One erasure request: plan, fan out one child workflow per system, certify, and shred after the grace period."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        PLAN,
        SEAL,
        SHRED,
        Plan,
        RequestInput,
        RequestResult,
        SealInput,
        SealResult,
        ShredInput,
        ShredResult,
        SystemInput,
        SystemPlan,
        SystemResult,
    )
    from domain.states import Phase
    from workflows.options import LEDGER
    from workflows.system import SystemErasureWorkflow

STATUS_QUERY = "status"
SHRED_NOW_UPDATE = "shred_now"


@workflow.defn(name="ErasureRequest")
class ErasureRequestWorkflow:
    def __init__(self) -> None:
        self._phase = Phase.PLANNING
        self._results: dict[str, str] = {}
        self._outcome: str | None = None
        self._shred_now = False

    @workflow.run
    async def run(self, input: RequestInput) -> RequestResult:
        plan: Plan = await workflow.execute_activity(PLAN, input, result_type=Plan, **LEDGER)
        self._phase = Phase.EXECUTING
        window = asyncio.Semaphore(plan.max_concurrency)
        results = list(await asyncio.gather(*(self._system(input.request_id, p, window) for p in plan.systems)))
        self._phase = Phase.SEALING
        sealed: SealResult = await workflow.execute_activity(
            SEAL, SealInput(input.request_id), result_type=SealResult, **LEDGER
        )
        self._outcome = sealed.outcome
        self._phase = Phase.GRACE_PERIOD
        await self._shred_after(input.request_id, plan.grace_s)
        self._phase = Phase.CLOSED
        return RequestResult(outcome=sealed.outcome, systems=results)

    async def _system(self, request_id: str, plan: SystemPlan, window: asyncio.Semaphore) -> SystemResult:
        async with window:
            result: SystemResult = await workflow.execute_child_workflow(
                SystemErasureWorkflow.run,
                SystemInput(request_id, plan),
                id=f"{request_id}/{plan.system}",
                task_queue=workflow.info().task_queue,
            )
        self._results[plan.system] = result.level
        return result

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

    @workflow.query(name=STATUS_QUERY)
    def status(self) -> dict[str, object]:
        return {"phase": self._phase, "systems": dict(self._results), "outcome": self._outcome}

    @workflow.update(name=SHRED_NOW_UPDATE)
    async def shred_now(self) -> str:
        self._shred_now = True
        await workflow.wait_condition(lambda: self._phase == Phase.CLOSED)
        return "shredded"

    @shred_now.validator
    def _only_after_certificate(self) -> None:
        if self._phase != Phase.GRACE_PERIOD:
            raise ValueError(f"cannot shred while {self._phase}: the certificate comes first")
