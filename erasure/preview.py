"""A request's preview as the ledger records it: what `erasure preview` prints and `--json` returns.

Before anything is erased every system in scope is located only: the records found per system and location, and
what identity resolution found (identifiers per type, near-matches). Counts only, never a value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from activities.resolution import RESOLVED
from domain.errors import ErasureError
from domain.states import RequestState, TaskState
from stores.ledger import Ledger


@dataclass(frozen=True)
class SystemPreview:
    system: str
    category: str
    located: int | None  # None: not located (yet), or the system cannot be looked into
    locations: dict[str, int]
    note: str


@dataclass(frozen=True)
class Preview:
    request_id: str
    kind: str
    state: RequestState
    submitted_by: str
    systems: list[SystemPreview]
    not_searched: list[str]  # no identifier of a type these systems are keyed by
    identifiers: dict[str, int]  # per type, after identity resolution
    near_matches: int  # candidates equal to the subject's identifiers only after normalisation
    decisions: list[dict[str, Any]]  # approved, rejected, cancelled: actor, time, reason

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def request_preview(ledger: Ledger, request_id: str) -> Preview:
    record = ledger.request(request_id)
    if record is None:
        raise ErasureError(f"no request {request_id} in the ledger")
    tasks = ledger.tasks(request_id)
    events = ledger.events(request_id)
    resolved = next((e.detail for e in events if e.kind == RESOLVED), {})
    return Preview(
        request_id=request_id,
        kind=record.kind,
        state=RequestState(record.state),
        submitted_by=record.submitted_by,
        systems=[
            SystemPreview(t.system, t.category, t.records_before, dict(t.counts_before or {}), t.detail)
            for t in tasks
            if t.state != TaskState.NOT_APPLICABLE
        ],
        not_searched=[t.system for t in tasks if t.state == TaskState.NOT_APPLICABLE],
        identifiers=dict(resolved.get("identifiers", {})),
        near_matches=int(resolved.get("near_matches", 0)),
        decisions=[
            {"decision": e.kind, "by": e.detail.get("actor"), "at": e.at.isoformat(), "reason": e.detail.get("reason")}
            for e in events
            if e.kind in ("approved", "rejected", "cancelled")
        ],
    )


def print_preview(out: Console, preview: Preview) -> None:
    out.print(
        f"[bold]preview[/bold] {preview.request_id}  {preview.kind}  state [bold]{preview.state}[/bold]"
        f"  submitted by {preview.submitted_by or '-'}",
        highlight=False,
    )
    resolved = ", ".join(f"{n} {kind}" for kind, n in preview.identifiers.items()) or "not resolved"
    out.print(f"identifiers after resolution: {resolved}; near-matches: {preview.near_matches}", highlight=False)
    table = Table()
    for column in ("system", "category", "located", "per location", "note"):
        table.add_column(column, overflow="fold")
    for s in preview.systems:
        locations = ", ".join(f"{name} {n}" for name, n in sorted(s.locations.items())) or "-"
        table.add_row(s.system, s.category, "-" if s.located is None else str(s.located), locations, s.note)
    out.print(table)
    if preview.not_searched:
        out.print(f"not searched (no identifier of their types): {', '.join(preview.not_searched)}", highlight=False)
    for d in preview.decisions:
        why = f": {d['reason']}" if d["reason"] else ""
        out.print(f"  {d['decision']} by {d['by']} at {d['at']}{why}", highlight=False)
