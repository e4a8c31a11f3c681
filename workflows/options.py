"""Activity options shared by the workflows: per-connector retries and the ledger's patient defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.contracts import NON_RETRYABLE, RetrySpec

# Ledger and evidence activities only wait for Postgres: retry them while it may come back (about half an hour),
# never without end, and never for invalid data.
LEDGER: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(seconds=30), maximum_attempts=60, non_retryable_error_types=NON_RETRYABLE
    ),
}


def connector_options(retry: RetrySpec, task_queue: str) -> dict[str, Any]:
    """A connector step's options: a time budget for all its attempts, and no limit on their number, because an
    attempt lost with its worker is not the system's error; the activity counts the system's own errors and stops
    retrying at `maximum_attempts` of them (activities/erasure.py)."""
    # a plan made before the budget (a run in flight across the upgrade) keeps Temporal's count of every attempt
    budget = retry.schedule_to_close_s
    return {
        "task_queue": task_queue,
        "start_to_close_timeout": timedelta(seconds=retry.start_to_close_s),
        "heartbeat_timeout": timedelta(seconds=retry.heartbeat_s),
        "schedule_to_close_timeout": None if budget is None else timedelta(seconds=budget),
        "retry_policy": RetryPolicy(
            initial_interval=timedelta(seconds=retry.initial_interval_s),
            backoff_coefficient=retry.backoff,
            maximum_interval=timedelta(seconds=retry.maximum_interval_s),
            maximum_attempts=retry.maximum_attempts if budget is None else 0,  # 0: no limit but the budget
            non_retryable_error_types=NON_RETRYABLE,
        ),
    }
