"""The second operator of the tests: a court order waits for approval after its preview, and someone other than the
submitter (the harness submits as `submitter-one`) approves it through the workflow's update."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import OperatorDecision
from domain.states import Phase
from workflows.class_order import PROGRESS_QUERY
from workflows.request import APPROVE_UPDATE, STATUS_QUERY

SUBMITTER = "submitter-one"  # the harness's operator: Config.operator of its intake


async def awaiting_approval(client: Client, request_id: str, timeout_s: float = 120) -> None:
    """Wait until the request's workflow (a single request's or a class order's) has previewed and awaits a decision."""
    handle = client.get_workflow_handle(request_id)
    for _ in range(int(timeout_s * 10)):
        try:
            query = PROGRESS_QUERY if (await handle.describe()).workflow_type == "ClassOrder" else STATUS_QUERY
            if (await handle.query(query))["phase"] == Phase.AWAITING_APPROVAL:
                return
        except RPCError as exc:  # a worker that starts a stored request's workflow may not have started it yet
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        await asyncio.sleep(0.1)
    raise AssertionError(f"request {request_id} never awaited approval within {timeout_s} s")


async def approve(client: Client, request_id: str, approver: str = "approver-two") -> None:
    """Wait until the request awaits approval, then approve it as a second operator."""
    await awaiting_approval(client, request_id)
    await client.get_workflow_handle(request_id).execute_update(
        APPROVE_UPDATE, OperatorDecision(actor=approver), result_type=str
    )
