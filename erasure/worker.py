"""The worker: workflows and activities on the main task queue, plus one rate-limited queue per vendor."""

from __future__ import annotations

import asyncio
import signal
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.class_order import ClassOrderActivities
from activities.contracts import vendor_task_queue
from connectors.registry import close_connections
from domain.settings import KINDS
from erasure.config import Config, code_version
from erasure.intake import start_orphans
from erasure.logs import get_logger
from erasure.metrics import metrics_runtime, publishing_ledger_gauges
from erasure.services import Services, connect_temporal, migrate_ledger
from evidence import notary
from workflows.class_order import BatchErasureWorkflow, ClassOrderWorkflow
from workflows.request import ErasureRequestWorkflow
from workflows.system import SystemErasureWorkflow

log = get_logger("erasure.worker")


def build_workers(client: Client, services: Services, executor: ThreadPoolExecutor) -> list[Worker]:
    config = services.config
    activities = ClassOrderActivities(
        classes=services.classes,
        ledger=services.ledger,
        vault=services.vault,
        tlog=services.tlog,
        suppression=services.suppression,
        holds=services.holds,
        task_queue=config.task_queue,
        grace_s=config.grace_days * 86400,
        reminder_leads_s=[days * 86400 for days in config.reminder_lead_days],
        backups=notary.Backups(config.backup_retention_days),
        code_version=code_version(),
        executor=executor,
        recipient_ack_s=config.recipient_ack_days * 86400,
        hold_dir=config.hold_dir,
        authority_limit_s=config.authority_limit_days * 86400,
        reminder_webhook=config.reminder_webhook_url,
    ).all()
    workers = [
        Worker(
            client,
            task_queue=config.task_queue,
            workflows=[ErasureRequestWorkflow, SystemErasureWorkflow, ClassOrderWorkflow, BatchErasureWorkflow],
            activities=activities,
            graceful_shutdown_timeout=timedelta(seconds=config.worker_shutdown_s),
        )
    ]
    for kind, spec in KINDS.items():
        rate = spec.capabilities.rate_per_second
        if rate:
            # the server enforces this rate across every worker polling the vendor's queue
            workers.append(
                Worker(
                    client,
                    task_queue=vendor_task_queue(config.task_queue, kind),
                    activities=activities,
                    max_task_queue_activities_per_second=rate,
                    graceful_shutdown_timeout=timedelta(seconds=config.worker_shutdown_s),
                )
            )
    return workers


async def run_worker(config: Config) -> None:
    applied = migrate_ledger(config)
    if applied:
        log.info("ledger migrated", migrations=applied)
    services = Services.open(config)
    runtime = metrics_runtime(config.metrics_address) if config.metrics_address else None
    client = await connect_temporal(config, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="activity") as executor:
        try:
            async with AsyncExitStack() as running:
                for worker in build_workers(client, services, executor):
                    await running.enter_async_context(worker)
                if runtime is not None:
                    running.enter_context(publishing_ledger_gauges(runtime.metric_meter, services.ledger))
                log.info("worker started", task_queue=config.task_queue)
                orphans = await start_orphans(services, client)
                if orphans:
                    log.warning("started the workflows of stored requests that had none", count=len(orphans))
                await stop.wait()
        finally:
            close_connections()
            services.close()
            log.info("worker stopped")
