"""A request's status as the ledger records it: what `erasure status` prints and `--json` returns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from domain.deadlines import days_overdue
from domain.errors import ErasureError
from domain.states import RequestState, TaskState
from stores.class_ledger import ClassLedger, SystemProgress
from stores.ledger import EventRecord, Ledger, StateChange, TaskRecord


@dataclass(frozen=True)
class SystemStatus:
    system: str
    category: str
    connector: str
    state: TaskState
    evidence_level: str | None
    records_before: int | None
    records_after: int | None
    deleted: int | None
    blocked: int
    vendor_job_id: str | None
    vendor_status: str | None
    detail: str
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, task: TaskRecord) -> SystemStatus:
        shown = {f.name: getattr(task, f.name) for f in dataclasses.fields(cls)}
        return cls(**{**shown, "state": TaskState(task.state)})


@dataclass(frozen=True)
class EventStatus:
    system: str | None
    kind: str
    detail: dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, event: EventRecord) -> EventStatus:
        return cls(event.system, event.kind, event.detail, event.at)


@dataclass(frozen=True)
class ClassProgress:
    """A class order's progress on one system: subjects done, the rate so far and the time it gives for the rest."""

    system: str
    batches: int
    batches_done: int
    subjects: int
    subjects_done: int
    subjects_per_s: float | None
    seconds_left: float | None

    @classmethod
    def of(cls, progress: SystemProgress) -> ClassProgress:
        rate = progress.rate
        return cls(
            progress.system,
            progress.batches,
            progress.batches_done,
            progress.subjects,
            progress.subjects_done,
            None if rate is None else round(rate, 1),
            None if rate is None else round(progress.seconds_left() or 0.0, 1),
        )


@dataclass(frozen=True)
class StatusReport:
    request_id: str
    kind: str
    legal_basis: str
    reference: str
    received_on: date
    deadline: date | None  # None until the deadline rule's clock starts (a guardian's authority verified)
    state: RequestState
    days_overdue: int  # past the deadline and not ended; 0 when on time
    outcome: str | None
    systems: list[SystemStatus]
    events: list[EventStatus]
    timeline: list[StateChange]  # every state the request entered, with the actor, the time and the reason
    progress: list[ClassProgress]  # a class order's, per system; empty for a single request

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data: enums as their values, dates and times as ISO strings."""
        data: dict[str, Any] = dataclasses.asdict(self, dict_factory=_json_ready)
        return data


def _json_ready(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date | datetime) else v for k, v in items}


def request_status(ledger: Ledger, request_id: str) -> StatusReport:
    record = ledger.request(request_id)
    if record is None:
        raise ErasureError(f"no request {request_id} in the ledger")
    state = RequestState(record.state)
    return StatusReport(
        request_id=record.request_id,
        kind=record.kind,
        legal_basis=record.legal_basis,
        reference=record.reference,
        received_on=record.received_on,
        deadline=record.deadline,
        state=state,
        days_overdue=days_overdue(record.deadline, state, today()),
        outcome=record.outcome,
        systems=[SystemStatus.of(t) for t in ledger.tasks(request_id)],
        events=[EventStatus.of(e) for e in ledger.events(request_id)],
        timeline=ledger.timeline(request_id),
        progress=[ClassProgress.of(p) for p in ClassLedger(ledger.pool).progress(request_id)],
    )


_LEVEL_COLOURS = {
    "verified_absent": "green",
    "vendor_attested": "green",
    "accepted": "cyan",
    "blocked": "yellow",
    "failed": "red",
}


def print_status(out: Console, report: StatusReport) -> None:
    """The report as a table, for a person at a terminal."""
    out.print(
        f"[bold]request[/bold] {report.request_id}  {report.kind}  state [bold]{report.state}[/bold]"
        f"  outcome [bold]{report.outcome or '-'}[/bold]  deadline {report.deadline or '-'}"
        + (f"  [red]overdue by {report.days_overdue} days[/red]" if report.days_overdue else "")
    )
    table = Table(show_lines=False)
    for column in ("system", "category", "state", "evidence level", "before", "after", "detail"):
        table.add_column(column, overflow="fold")
    for t in report.systems:
        level = t.evidence_level or "-"
        colour = _LEVEL_COLOURS.get(level, "white")
        table.add_row(
            t.system,
            t.category,
            t.state,
            f"[{colour}]{level}[/{colour}]",
            _count(t.records_before),
            _count(t.records_after),
            t.detail,
        )
    out.print(table)
    out.print("[bold]timeline[/bold]")
    for step in report.timeline:
        why = f": {step.reason}" if step.reason else ""
        out.print(f"  {step.at.isoformat()}  {step.state} by {step.actor}{why}", highlight=False, markup=False)
    if report.progress:
        out.print(_progress_table(report.progress))
    for event in report.events:
        reason = f": {event.detail['reason']}" if "reason" in event.detail else ""
        out.print(f"  event: {event.kind} {event.system or ''} {event.at.isoformat()}{reason}", highlight=False)


def _progress_table(progress: list[ClassProgress]) -> Table:
    table = Table(title="class order progress")
    for column in ("system", "batches done", "subjects done", "subjects/s", "time left"):
        table.add_column(column)
    for p in progress:
        table.add_row(
            p.system,
            f"{p.batches_done} of {p.batches}",
            f"{p.subjects_done} of {p.subjects}",
            "-" if p.subjects_per_s is None else f"{p.subjects_per_s:g}",
            "-" if p.seconds_left is None else f"{p.seconds_left:.0f} s",
        )
    return table


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def today() -> date:
    """Deadlines are dates in UTC, as intake checks them."""
    return datetime.now(UTC).date()
