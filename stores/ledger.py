"""The ledger: requests, their per-system tasks and events, in Postgres. No identifier is ever written here.

It owns the tables `requests`, `request_states`, `subject_pseudonyms`, `system_tasks`, `deletion_journal` and `events`.
Requests and tasks change state only through the named transitions below (domain/states.py draws the machine); each
change of a request's state joins its timeline (`request_states`) with the actor, the time and the reason. Every write is idempotent (an update
to a known row, or an insert keyed by a natural key), because activities that write it may run more than once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from domain.states import RequestState, TaskState


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    kind: str
    legal_basis: str
    reference: str
    requester: dict[str, Any]
    received_on: date
    deadline: date | None  # None while the rule's clock waits for a guardian's authority (UK GDPR Art. 12A)
    scope: Any
    catalogue_sha256: str
    state: str
    outcome: str | None
    created_at: datetime
    updated_at: datetime
    regime: str | None = None  # whose deadline rule applies (stores/deadline_rules.yaml); None for a court order
    clock_started_on: date | None = None
    submitted_by: str = ""  # the operator who submitted it: its approver must be another


@dataclass(frozen=True)
class TaskRecord:
    request_id: str
    system: str
    category: str
    connector: str
    state: str
    evidence_level: str | None
    records_before: int | None
    records_after: int | None
    counts_before: dict[str, int] | None
    counts_after: dict[str, int] | None
    deleted: int | None
    blocked: int
    key_commitment: str | None
    key_count: int
    vendor_job_id: str | None
    vendor_status: str | None
    vendor_facts: dict[str, str | int]
    detail: str
    residual: list[str] | None
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class RequestCounts:
    by_state: dict[str, int]
    overdue: int


@dataclass(frozen=True)
class StateChange:
    """One step of a request's timeline: the state it entered, who moved it there, when and why."""

    state: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class EventRecord:
    system: str | None
    kind: str
    detail: dict[str, Any]
    at: datetime


_REQUEST_COLUMNS = ", ".join(f.name for f in fields(RequestRecord)).replace("request_id", "request_id::text")
_TASK_COLUMNS = ", ".join(f.name for f in fields(TaskRecord)).replace("request_id", "request_id::text")


ORCHESTRATOR = "orchestrator"  # the actor of the state changes the workflow makes on its own

# a request the workflow still works on: not certified, closed, rejected, cancelled or failed
_OPEN = frozenset(state for state in RequestState if not state.ended and not state.stopped)


class Ledger:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    # -- requests ---------------------------------------------------------------------------------------------

    def create_request(
        self, conn: Connection[Any], record: dict[str, Any], catalogue: dict[str, Any], *, actor: str = "intake"
    ) -> None:
        conn.execute(
            "INSERT INTO requests (request_id, kind, legal_basis, reference, requester, received_on, deadline, "
            "scope, catalogue, catalogue_sha256, order_digest, state, regime, clock_started_on, submitted_by) VALUES "
            "(%(request_id)s, %(kind)s, %(legal_basis)s, %(reference)s, %(requester)s, %(received_on)s, %(deadline)s, "
            "%(scope)s, %(catalogue)s, %(catalogue_sha256)s, %(order_digest)s, %(state)s, %(regime)s, "
            "%(clock_started_on)s, %(submitted_by)s)",
            {
                "regime": None,
                "clock_started_on": None,
                "submitted_by": "",
                **record,
                "requester": Jsonb(record["requester"]),
                "scope": Jsonb(record["scope"]),
                "catalogue": Jsonb(catalogue),
                "state": RequestState.RECEIVED,
            },
        )
        conn.execute(
            "INSERT INTO request_states (request_id, state, actor, reason) VALUES (%s, %s, %s, 'submitted')",
            [record["request_id"], RequestState.RECEIVED, actor],
        )

    def open_request_for(self, conn: Connection[Any], order_digest: str) -> str | None:
        """The open request (not yet certified, nor failed) of an order, if any. Holds a lock on the digest until the
        caller's transaction ends, so that two submissions of one order cannot both find none."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [order_digest])
        row = conn.execute(
            "SELECT request_id::text FROM requests WHERE order_digest = %s AND state = ANY(%s) "
            "ORDER BY created_at LIMIT 1",
            [order_digest, [state.value for state in _OPEN]],
        ).fetchone()
        return str(row[0]) if row else None

    def received(self) -> list[str]:
        """Requests stored and not yet planned: their workflow has not run its first step (or was never started)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT request_id::text FROM requests WHERE state = %s ORDER BY created_at", [RequestState.RECEIVED]
            ).fetchall()
        return [str(row[0]) for row in rows]

    def add_pseudonyms(self, conn: Connection[Any], request_id: str, pseudonyms: list[tuple[str, str]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO subject_pseudonyms (request_id, identifier_type, pseudonym) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                [(request_id, kind, value) for kind, value in pseudonyms],
            )

    def add_task(
        self,
        conn: Connection[Any],
        request_id: str,
        system: str,
        category: str,
        connector: str,
        state: TaskState = TaskState.PLANNED,
        detail: str = "",
    ) -> None:
        conn.execute(
            "INSERT INTO system_tasks (request_id, system, category, connector, state, detail) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [request_id, system, category, connector, state, detail],
        )

    def delete_request(self, conn: Connection[Any], request_id: str) -> None:
        """Undo an intake whose workflow could not be started, inside the caller's transaction."""
        for table in ("request_states", "events", "deletion_journal", "system_tasks", "subject_pseudonyms"):
            conn.execute(f"DELETE FROM {table} WHERE request_id = %s", [request_id])
        conn.execute("DELETE FROM requests WHERE request_id = %s", [request_id])

    def request(self, request_id: str) -> RequestRecord | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(RequestRecord)) as cur:
            cur.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE request_id = %s", [request_id])
            return cur.fetchone()

    def requests(
        self,
        limit: int = 50,
        *,
        state: RequestState | None = None,
        kind: str | None = None,
        due_before: date | None = None,
    ) -> list[RequestRecord]:
        """The most recent requests, optionally only those in a state, of a kind, or not ended by a deadline."""
        ended = [s.value for s in RequestState if s.ended]
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(RequestRecord)) as cur:
            cur.execute(
                f"SELECT {_REQUEST_COLUMNS} FROM requests "
                "WHERE (%(state)s::text IS NULL OR state = %(state)s) AND (%(kind)s::text IS NULL OR kind = %(kind)s) "
                "AND (%(due)s::date IS NULL OR (deadline < %(due)s AND NOT state = ANY(%(ended)s))) "
                "ORDER BY created_at DESC LIMIT %(limit)s",
                {"state": state, "kind": kind, "due": due_before, "ended": ended, "limit": limit},
            )
            return cur.fetchall()

    def catalogue_snapshot(self, request_id: str) -> dict[str, Any]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT catalogue FROM requests WHERE request_id = %s", [request_id]).fetchone()
        if row is None:
            raise KeyError(request_id)
        snapshot: dict[str, Any] = row[0]
        return snapshot

    def awaiting_review(self, request_id: str) -> None:
        """Near-matches, or a subject no identity source knows: nothing runs until a reviewer decides."""
        self._set_request_state(
            request_id, RequestState.AWAITING_REVIEW, reason="near-matches, or a subject no identity source knows"
        )

    def verifying_authority(self, request_id: str) -> None:
        """A guardian's authority is not verified yet: nothing is located or erased until it is."""
        reason = "the guardian's authority is not verified yet"
        self._set_request_state(request_id, RequestState.VERIFYING_AUTHORITY, reason=reason)

    def authority_verified(
        self, request_id: str, at: datetime, clock_started_on: date, deadline: date | None, detail: dict[str, Any]
    ) -> None:
        """The guardian's authority is verified: its event, the day the rule's clock started and the deadline it
        gives; the request is received again, ready to be worked on. Once: a retried activity changes nothing."""
        with self.pool.connection() as conn, conn.transaction():
            inserted = conn.execute(
                "INSERT INTO events (request_id, system, kind, event_key, detail, at) "
                "VALUES (%s, NULL, 'authority_verified', 'authority_verified', %s, %s) "
                "ON CONFLICT (request_id, event_key) DO NOTHING",
                [request_id, Jsonb(detail), at],
            ).rowcount
            if inserted:
                conn.execute(
                    "UPDATE requests SET clock_started_on = %s, deadline = %s, updated_at = now() "
                    "WHERE request_id = %s",
                    [clock_started_on, deadline, request_id],
                )
        reason = f"the guardian's authority verified ({detail['method']})"
        self._set_request_state(request_id, RequestState.RECEIVED, actor=str(detail["verifier"]), reason=reason)

    def rejected(self, request_id: str, reason: str, at: datetime) -> None:
        """The request is refused (e.g. a guardian's authority never verified); the reason is its `rejected` event."""
        self.record_event(request_id, None, "rejected", "rejected", at, {"reason": reason})  # the reason comes first
        self._set_request_state(request_id, RequestState.REJECTED, reason=reason)

    def awaiting_approval(self, request_id: str) -> None:
        """Located only: nothing is erased until a second operator approves."""
        reason = "located only: a second operator approves before anything is erased"
        self._set_request_state(request_id, RequestState.AWAITING_APPROVAL, reason=reason)

    def scoped(self, request_id: str, actor: str) -> None:
        """Approved by `actor`: what will be erased is settled."""
        self._set_request_state(request_id, RequestState.SCOPED, actor=actor, reason="approved after the preview")

    def rejected_at_approval(self, request_id: str, actor: str, reason: str) -> None:
        """An operator refused the previewed request: nothing was erased."""
        self._set_request_state(request_id, RequestState.REJECTED, actor=actor, reason=reason)

    def cancelled(self, request_id: str, actor: str, reason: str) -> None:
        """Cancelled before anything was erased."""
        self._set_request_state(request_id, RequestState.CANCELLED, actor=actor, reason=reason)

    def extend(self, request_id: str, days: int, event_key: str, at: datetime, detail: dict[str, Any]) -> date:
        """Move the deadline by `days` once per event_key (a retried activity extends nothing twice), with the
        extension's event; returns the deadline after it."""
        with self.pool.connection() as conn, conn.transaction():
            inserted = conn.execute(
                "INSERT INTO events (request_id, system, kind, event_key, detail, at) "
                "VALUES (%s, NULL, 'extended', %s, %s, %s) ON CONFLICT (request_id, event_key) DO NOTHING",
                [request_id, event_key, Jsonb(detail), at],
            ).rowcount
            row = conn.execute(
                "UPDATE requests SET deadline = deadline + %s, updated_at = now() WHERE request_id = %s "
                "RETURNING deadline",
                [days if inserted else 0, request_id],
            ).fetchone()
            if inserted and row is not None:
                reason = f"deadline moved by {days} days to {row[0].isoformat()}: {detail.get('reason', '')}"
                _add_side_state(conn, request_id, RequestState.EXTENDED, str(detail.get("actor", "")), reason)
        if row is None:
            raise KeyError(request_id)
        deadline: date = row[0]
        return deadline

    def request_counts(self, today: date) -> RequestCounts:
        """Requests by state, and how many are unsettled past their deadline (for the metrics endpoint)."""
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall()
            overdue = conn.execute(
                "SELECT count(*) FROM requests WHERE state <> ALL(%s) AND deadline < %s",
                [[state.value for state in RequestState if state.settled], today],
            ).fetchone()
        return RequestCounts(by_state={state: int(n) for state, n in rows}, overdue=int(overdue[0]) if overdue else 0)

    def executing(self, request_id: str) -> None:
        self._set_request_state(request_id, RequestState.EXECUTING, reason="planned: the systems in scope run")

    def notifying_recipients(self, request_id: str, recipients: int) -> None:
        """The systems are done; the recipients of their data are being told (GDPR Art. 19)."""
        self._set_request_state(request_id, RequestState.NOTIFYING_RECIPIENTS, reason=f"{recipients} to tell")

    def certified(self, request_id: str, outcome: str) -> None:
        self._set_request_state(request_id, RequestState.CERTIFIED, outcome, reason=f"certificate issued: {outcome}")

    def on_hold(self, request_id: str, outcome: str, cases: Iterable[str] = ()) -> None:
        """A legal hold stopped systems not yet erased: a partial certificate is issued, the rest waits. The timeline
        also records the side state `partially_refused` with the exception that applies (Art. 17(3)(e))."""
        self._set_request_state(
            request_id, RequestState.ON_HOLD, outcome, reason="a legal hold stopped systems not yet erased"
        )
        refs = ", ".join(sorted(set(cases))) or "unnamed"
        reason = f"GDPR Art. 17(3)(e): held for the establishment, exercise or defence of legal claims (case {refs})"
        with self.pool.connection() as conn, conn.transaction():
            _add_side_state(conn, request_id, RequestState.PARTIALLY_REFUSED, ORCHESTRATOR, reason)

    def verifying(self, request_id: str) -> None:
        """Every system in scope has finished: the certificate is checked against each system's receipt."""
        self._set_request_state(
            request_id, RequestState.VERIFYING, reason="each system's receipt checked before the certificate"
        )

    def hold_released(self, request_id: str) -> None:
        """A legal hold that stopped systems was released: the same workflow erases them now."""
        self._set_request_state(
            request_id, RequestState.EXECUTING, reason="a legal hold was released: held systems resume"
        )

    def closed(self, request_id: str, reason: str = "") -> None:
        """The request's data key is destroyed."""
        self._set_request_state(request_id, RequestState.CLOSED, reason=reason)

    def failed(self, request_id: str, reason: str, at: datetime) -> None:
        """The request ended without a certificate; the reason (never an identifier) is its `failed` event."""
        self.record_event(request_id, None, "failed", "failed", at, {"reason": reason})  # the reason comes first
        self._set_request_state(request_id, RequestState.FAILED, reason=reason)

    def class_cancelled(self, request_id: str, reason: str, at: datetime, *, batches_done: int, batches: int) -> None:
        """A class order the operator stopped: its `cancelled` event holds the reason and how many batches were done
        (each with its receipt in the log)."""
        detail = {"reason": reason, "batches_done": batches_done, "batches": batches}
        self.record_event(request_id, None, "cancelled", "cancelled", at, detail)
        self._set_request_state(request_id, RequestState.CANCELLED, reason=reason)

    def _set_request_state(
        self,
        request_id: str,
        state: RequestState,
        outcome: str | None = None,
        *,
        actor: str = ORCHESTRATOR,
        reason: str = "",
    ) -> None:
        """Move the request to `state` and add the step to its timeline; a retried activity that finds the request
        already there adds nothing."""
        # the order's digest is kept only while the request is open: it serves to find the open request, nothing else
        still_open = state in _OPEN
        with self.pool.connection() as conn, conn.transaction():
            previous = conn.execute(
                "SELECT state FROM requests WHERE request_id = %s FOR UPDATE", [request_id]
            ).fetchone()
            conn.execute(
                "UPDATE requests SET state = %s, outcome = COALESCE(%s, outcome), "
                "order_digest = CASE WHEN %s THEN order_digest END, updated_at = now() WHERE request_id = %s",
                [state, outcome, still_open, request_id],
            )
            if previous is not None and previous[0] != state:
                conn.execute(
                    "INSERT INTO request_states (request_id, state, actor, reason) VALUES (%s, %s, %s, %s)",
                    [request_id, state, actor, reason],
                )

    def timeline(self, request_id: str) -> list[StateChange]:
        """Every state the request entered, in order, with the actor, the time and the reason."""
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(StateChange)) as cur:
            cur.execute(
                "SELECT state, actor, reason, at FROM request_states WHERE request_id = %s ORDER BY id", [request_id]
            )
            return cur.fetchall()

    # -- tasks ------------------------------------------------------------------------------------------------

    def tasks(self, request_id: str) -> list[TaskRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(TaskRecord)) as cur:
            cur.execute(f"SELECT {_TASK_COLUMNS} FROM system_tasks WHERE request_id = %s ORDER BY system", [request_id])
            return cur.fetchall()

    def task(self, request_id: str, system: str) -> TaskRecord:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(TaskRecord)) as cur:
            cur.execute(
                f"SELECT {_TASK_COLUMNS} FROM system_tasks WHERE request_id = %s AND system = %s", [request_id, system]
            )
            record = cur.fetchone()
        if record is None:
            raise KeyError(system)
        return record

    def applicable(self, request_id: str, system: str, *, applies: bool, detail: str = "") -> None:
        """Whether a system runs, decided again once identity resolution knows every identifier type of the subject."""
        state = TaskState.PLANNED if applies else TaskState.NOT_APPLICABLE
        self._change_task(request_id, system, {"state": state, "detail": detail})

    def previewed(self, request_id: str, system: str, *, total: int, counts: Mapping[str, int], note: str) -> None:
        """What the system holds of the subject, located before anyone approves; the task stays planned (the
        erasure locates again, right before it deletes)."""
        changes = {"records_before": total, "counts_before": Jsonb(dict(counts)), "detail": note}
        self._change_task(request_id, system, changes)

    def locating(self, request_id: str, system: str, at: datetime) -> None:
        self._change_task(request_id, system, {"state": TaskState.LOCATING, "started_at": at})

    def located(self, request_id: str, system: str, *, total: int, counts: Mapping[str, int], note: str) -> None:
        """What the system held of the subject before erasure: the baseline the receipt states."""
        changes = {"state": TaskState.ERASING, "records_before": total, "counts_before": Jsonb(dict(counts))}
        self._change_task(request_id, system, {**changes, "detail": note})

    def erased(
        self,
        request_id: str,
        system: str,
        *,
        deleted: int,
        blocked: int,
        key_commitment: str | None,
        key_count: int,
        vendor_job_id: str | None,
        vendor_status: str | None,
        vendor_facts: Mapping[str, str | int],
        detail: str,
    ) -> None:
        """The erasure ran; with a vendor job it waits for the vendor, else it goes on to verification."""
        changes = {
            "state": TaskState.WAITING_VENDOR if vendor_job_id else TaskState.VERIFYING,
            "deleted": deleted,
            "blocked": blocked,
            "key_commitment": key_commitment,
            "key_count": key_count,
            "vendor_job_id": vendor_job_id,
            "vendor_status": vendor_status,
            "vendor_facts": Jsonb(dict(vendor_facts)),
        }
        self._change_task(request_id, system, {**changes, "detail": detail})

    def journal(self, request_id: str, system: str, leaves: Iterable[bytes]) -> None:
        """Keyed HMACs of keys an erasure is about to delete, written before it deletes them."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO deletion_journal (request_id, system, leaf) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(request_id, system, leaf) for leaf in leaves],
            )

    def unjournal(self, request_id: str, system: str, leaves: Iterable[bytes]) -> None:
        """Keys the system refused to delete after all: they are not among the deleted."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "DELETE FROM deletion_journal WHERE request_id = %s AND system = %s AND leaf = %s",
                [(request_id, system, leaf) for leaf in leaves],
            )

    def journaled(self, request_id: str, system: str) -> list[bytes]:
        """Every key deleted for the system by any attempt, in leaf order."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT leaf FROM deletion_journal WHERE request_id = %s AND system = %s ORDER BY leaf",
                [request_id, system],
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def polled(
        self,
        request_id: str,
        system: str,
        *,
        vendor_status: str,
        vendor_facts: Mapping[str, str | int],
        finished: bool,
        residual: Sequence[str] = (),
    ) -> None:
        """The vendor's job status as last seen; a finished job goes on to verification, the facts of its final
        answer joining (and updating) those of the erasure, with the copies its job could not reach."""
        if not finished:
            self._change_task(request_id, system, {"vendor_status": vendor_status})
            return
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE system_tasks SET state = %s, vendor_status = %s, vendor_facts = vendor_facts || %s, "
                "residual = %s, updated_at = now() WHERE request_id = %s AND system = %s",
                [
                    TaskState.VERIFYING,
                    vendor_status,
                    Jsonb(dict(vendor_facts)),
                    Jsonb(list(residual)),
                    request_id,
                    system,
                ],
            )

    def verified(
        self,
        request_id: str,
        system: str,
        *,
        records_after: int | None,
        counts_after: Mapping[str, int] | None,
        vendor_facts: Mapping[str, str | int],
    ) -> None:
        """What the look after erasure found (None where the system cannot be looked into), its facts joining those
        of the erasure and the vendor's job."""
        counts = Jsonb(dict(counts_after)) if counts_after is not None else None
        with self.pool.connection() as conn:
            conn.execute(
                "UPDATE system_tasks SET records_after = %s, counts_after = %s, vendor_facts = vendor_facts || %s, "
                "updated_at = now() WHERE request_id = %s AND system = %s",
                [records_after, counts, Jsonb(dict(vendor_facts)), request_id, system],
            )

    def done(
        self,
        request_id: str,
        system: str,
        *,
        evidence_level: str,
        detail: str,
        started_at: datetime,
        finished_at: datetime,
    ) -> None:
        """The system's receipt is logged: its evidence level is final."""
        changes = {"state": TaskState.DONE, "evidence_level": evidence_level, "detail": detail}
        self._change_task(request_id, system, {**changes, "started_at": started_at, "finished_at": finished_at})

    def held(self, request_id: str, system: str, *, detail: str) -> None:
        """A legal hold stopped the system before erasure; `detail` says how its data was restricted, if at all."""
        self._change_task(request_id, system, {"state": TaskState.ON_HOLD, "detail": detail})

    def hold_receipted(
        self, request_id: str, system: str, *, evidence_level: str, started_at: datetime, finished_at: datetime
    ) -> None:
        """The system's hold receipt is logged: it stays on hold until the hold is released."""
        changes = {"evidence_level": evidence_level, "started_at": started_at, "finished_at": finished_at}
        self._change_task(request_id, system, {**changes, "state": TaskState.ON_HOLD})

    def released(self, request_id: str, system: str) -> None:
        """The hold on the system was released: it is erased afresh, its earlier level no longer stands."""
        self._change_task(request_id, system, {"state": TaskState.PLANNED, "evidence_level": None})

    def _change_task(self, request_id: str, system: str, changes: Mapping[str, object]) -> None:
        # column names come only from the transitions above, never from input
        assignments = ", ".join(f"{name} = %({name})s" for name in changes)
        with self.pool.connection() as conn:
            conn.execute(
                f"UPDATE system_tasks SET {assignments}, updated_at = now() "
                "WHERE request_id = %(request_id)s AND system = %(system)s",
                {**changes, "request_id": request_id, "system": system},
            )

    # -- events -----------------------------------------------------------------------------------------------

    def record_event(
        self,
        request_id: str,
        system: str | None,
        kind: str,
        event_key: str,
        at: datetime,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Once per (request, event_key): a retried activity records nothing twice."""
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO events (request_id, system, kind, event_key, detail, at) VALUES (%s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (request_id, event_key) DO NOTHING",
                [request_id, system, kind, event_key, Jsonb(detail or {}), at],
            )

    def requests_held_by(self, hold_id: str) -> list[str]:
        """The requests a legal hold stopped a system of (its `hold_applied` events)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT request_id::text FROM events WHERE kind = 'hold_applied' AND detail->>'hold' = %s",
                [hold_id],
            ).fetchall()
        return sorted(str(row[0]) for row in rows)

    def events(self, request_id: str) -> list[EventRecord]:
        with self.pool.connection() as conn, conn.cursor(row_factory=class_row(EventRecord)) as cur:
            cur.execute(
                "SELECT system, kind, detail, at FROM events WHERE request_id = %s ORDER BY at, id", [request_id]
            )
            return cur.fetchall()


def to_json(record: object) -> dict[str, Any]:
    """A record as JSON-ready data (dates as ISO strings)."""
    out: dict[str, Any] = json.loads(json.dumps(record.__dict__, default=lambda v: v.isoformat()))
    return out


def _add_side_state(conn: Connection[Any], request_id: str, state: RequestState, actor: str, reason: str) -> None:
    """A side state (extended, partially refused) joins the timeline without changing the request's state; once per
    (state, reason), so a retried activity adds nothing."""
    conn.execute(
        "INSERT INTO request_states (request_id, state, actor, reason) SELECT %s, %s, %s, %s WHERE NOT EXISTS "
        "(SELECT 1 FROM request_states WHERE request_id = %s AND state = %s AND reason = %s)",
        [request_id, state, actor or ORCHESTRATOR, reason, request_id, state, reason],
    )
