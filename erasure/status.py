"""A request's status as the ledger records it: what `erasure status` prints and `--json` returns."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from domain.errors import ErasureError
from stores.ledger import Ledger, to_json

_TASK_FIELDS = (
    "system",
    "category",
    "connector",
    "state",
    "evidence_level",
    "records_before",
    "records_after",
    "deleted",
    "blocked",
    "vendor_job_id",
    "vendor_status",
    "detail",
    "started_at",
    "finished_at",
)


def request_status(ledger: Ledger, request_id: str) -> dict[str, Any]:
    record = ledger.request(request_id)
    if record is None:
        raise ErasureError(f"no request {request_id} in the ledger")
    data = to_json(record)
    return {
        "request_id": data["request_id"],
        "kind": data["kind"],
        "legal_basis": data["legal_basis"],
        "reference": data["reference"],
        "received_on": data["received_on"],
        "deadline": data["deadline"],
        "state": data["state"],
        "outcome": data["outcome"],
        "systems": [{k: v for k, v in to_json(t).items() if k in _TASK_FIELDS} for t in ledger.tasks(request_id)],
        "events": [to_json(e) for e in ledger.events(request_id)],
    }


def print_status(out: Console, report: dict[str, Any]) -> None:
    """The report as a table, for a person at a terminal."""
    out.print(
        f"[bold]request[/bold] {report['request_id']}  {report['kind']}  state [bold]{report['state']}[/bold]"
        f"  outcome [bold]{report['outcome'] or '-'}[/bold]  deadline {report['deadline']}"
    )
    table = Table(show_lines=False)
    for column in ("system", "category", "state", "evidence level", "before", "after", "detail"):
        table.add_column(column, overflow="fold")
    for t in report["systems"]:
        level = t["evidence_level"] or "-"
        colour = {
            "verified_absent": "green",
            "vendor_attested": "green",
            "accepted": "cyan",
            "blocked": "yellow",
            "failed": "red",
        }.get(level, "white")
        table.add_row(
            t["system"],
            t["category"],
            t["state"],
            f"[{colour}]{level}[/{colour}]",
            _count(t["records_before"]),
            _count(t["records_after"]),
            t["detail"],
        )
    out.print(table)
    for event in report["events"]:
        out.print(f"  event: {event['kind']} {event['system'] or ''} {event['at']}")


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)
