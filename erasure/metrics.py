"""The worker's metrics endpoint: Temporal's SDK metrics (Prometheus), plus the ledger's view of the requests.

The SDK serves its own metrics (workflow and activity task latencies, failures, poller counts, schedule-to-start) on
the Runtime's Prometheus endpoint; the activities add `erasure_system_errors` (errors returned by the systems being
erased, by system and kind). This module adds gauges read from the ledger: requests by state and the overdue count.
Every worker publishes the same gauges; aggregate them with max(), not sum().
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from domain.states import RequestState
from erasure.logs import get_logger
from stores.ledger import Ledger

log = get_logger("erasure.metrics")

LEDGER_EVERY_S = 15.0


def metrics_runtime(address: str) -> Runtime:
    """A Temporal runtime whose metrics are served at http://<address>/metrics."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))


@contextmanager
def publishing_ledger_gauges(meter: MetricMeter, ledger: Ledger, every_s: float = LEDGER_EVERY_S) -> Iterator[None]:
    """Refresh the ledger's gauges every `every_s` seconds in a thread (the ledger's calls block) until exit."""
    stop = threading.Event()
    thread = threading.Thread(target=_publish, args=(meter, ledger, every_s, stop), name="ledger-gauges", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)


def _publish(meter: MetricMeter, ledger: Ledger, every_s: float, stop: threading.Event) -> None:
    requests = meter.create_gauge("erasure_requests", "requests in the ledger, by state")
    overdue = meter.create_gauge("erasure_requests_overdue", "requests not yet certified whose deadline has passed")
    while True:
        try:
            counts = ledger.request_counts(date.today())
        except Exception as exc:  # the ledger may be restarting: keep the last values and try again
            log.warning("ledger gauges not refreshed", error_type=type(exc).__name__)
        else:
            for state in RequestState:
                requests.set(counts.by_state.get(state.value, 0), {"state": state.value})
            overdue.set(counts.overdue)
        if stop.wait(every_s):
            return
