"""Intake: a validated order becomes a stored request and a started workflow, or nothing at all.

A submission killed between its commit and the workflow start leaves a stored request without a workflow: every
worker starts those when it starts (`start_orphans`), so none waits for ever with its identifiers in the vault.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.contracts import REQUEST_WORKFLOW, RequestInput
from activities.hold import hold
from domain import deadlines
from domain.errors import ErasureError, InvalidInput
from domain.states import TaskState
from erasure.services import Services
from stores.catalogue import Catalogue, load_catalogue
from stores.deadline_rules import deadline_rules
from stores.keys import local_secret
from stores.orders import Order, load_order
from stores.pseudonyms import Pseudonymizer


@dataclass(frozen=True)
class Deadline:
    """The deadline the ledger keeps: the rule's (or the order's, if earlier); None until the rule's clock starts."""

    due: date | None
    clock_started_on: date | None


@dataclass(frozen=True)
class Submission:
    request_id: str
    systems: list[str]
    not_applicable: list[str]
    existing: bool = False  # the order was already submitted and its request is still open: that is this one


def validate(order_path: Path, catalogue_path: Path, *, allow_past_deadline: bool = False) -> tuple[Order, Catalogue]:
    """Everything that can be wrong with the input is found here, before anything is stored or started."""
    order = load_order(order_path)
    catalogue = load_catalogue(catalogue_path)
    check_order(order, catalogue, str(order_path), allow_past_deadline=allow_past_deadline)
    return order, catalogue


def check_order(order: Order, catalogue: Catalogue, source: str, *, allow_past_deadline: bool = False) -> None:
    """What a valid order may still get wrong against today and the catalogue; `source` names where it came from."""
    due = deadline_of(order, source).due
    if due is not None and due < _today() and not allow_past_deadline:
        raise InvalidInput(
            source,
            "deadline",
            f"{due.isoformat()} has already passed: submit with --allow-past-deadline to accept it anyway",
        )
    if isinstance(order.scope, list):
        known = {s.name for s in catalogue.systems}
        for name in order.scope:
            if name not in known:
                raise InvalidInput(source, "scope", f"no system named {name!r} in the catalogue")


def deadline_of(order: Order, order_path: Path | str = "order") -> Deadline:
    """The order's deadline under its rule (stores/deadline_rules.yaml); an order may state an earlier one only."""
    rule = deadline_rules().find(order.regime, order.kind.value)
    if rule is None:
        raise InvalidInput(str(order_path), "regime", f"no deadline rule of {order.regime} covers a {order.kind.value}")
    verified_on = order.guardian.verified_on if order.guardian is not None else None
    started = deadlines.clock_start(rule, received=order.received, authority_verified_on=verified_on)
    try:
        return Deadline(deadlines.deadline(rule, started=started, stated=order.deadline), started)
    except ValueError as exc:
        raise InvalidInput(str(order_path), "deadline", str(exc)) from None


async def submit(
    services: Services,
    client: Client,
    order: Order,
    catalogue: Catalogue,
    *,
    force_new: bool = False,
    actor: str | None = None,
) -> Submission:
    """Store the request and start its workflow. The same order again, while its request is open, gives that
    request (a retried `erasure submit` must not erase twice) unless `force_new`. `actor` is who submits (an API
    operator); the CLI's is the configured operator."""
    request_id = str(uuid.uuid4())
    subject = order.subject.to_subject()
    in_scope = [s for s in catalogue.systems if order.scope == "all" or s.name in order.scope]
    digest = _order_digest(services, order)
    due = deadline_of(order)
    planned, skipped = [], []
    with services.pool.connection() as conn, conn.transaction():
        existing = services.ledger.open_request_for(conn, digest)
        if existing is not None and not force_new:
            return _submitted(services, existing)
        services.ledger.create_request(
            conn,
            {
                "request_id": request_id,
                "kind": order.kind.value,
                "legal_basis": order.legal_basis,
                "reference": order.reference(),
                "requester": order.requester_record(),
                "received_on": order.received,
                "deadline": due.due,
                "regime": order.regime,
                "clock_started_on": due.clock_started_on,
                "scope": order.scope,
                "catalogue_sha256": catalogue.digest(),
                "order_digest": digest,
                "submitted_by": actor or services.config.operator,  # the API's operator, else the CLI's
            },
            catalogue.snapshot(),
            actor=actor or services.config.operator or "intake",
        )
        services.vault.create(
            conn,
            request_id,
            {
                services.vault.SUBJECT: {k.value: list(v) for k, v in subject.identifiers.items()},
                services.vault.REQUESTER: order.sealed_requester(),
            },
        )
        pseudonyms = services.vault.pseudonyms(conn, request_id)
        services.ledger.add_pseudonyms(conn, request_id, [(k.value, p) for k, p in pseudonyms.of_subject(subject)])
        for spec in in_scope:
            usable = subject.kinds() & set(spec.identifiers)
            if usable:
                services.ledger.add_task(conn, request_id, spec.name, spec.category.value, spec.connector)
                planned.append(spec.name)
            else:
                kinds = ", ".join(sorted(k.value for k in spec.identifiers))
                services.ledger.add_task(
                    conn,
                    request_id,
                    spec.name,
                    spec.category.value,
                    spec.connector,
                    TaskState.NOT_APPLICABLE,
                    f"the request has no identifier of a type it is keyed by ({kinds})",
                )
                skipped.append(spec.name)
    if due.due is not None and due.due < _today():  # validate let it through only on the operator's explicit flag
        services.ledger.record_event(
            request_id,
            None,
            "past_deadline_accepted",
            "past_deadline_accepted",
            datetime.now(UTC),
            {"deadline": due.due.isoformat(), "accepted_with": "--allow-past-deadline"},
        )
    hold(services.config.hold_dir, "intake.stored")  # a test may kill the submission here
    try:
        await _start(client, services.config.task_queue, request_id)
    except BaseException as exc:
        with services.pool.connection() as conn, conn.transaction():  # nothing stays of a request never started
            services.vault.delete(conn, request_id)
            services.ledger.delete_request(conn, request_id)
        if isinstance(exc, RPCError):  # e.g. a namespace that does not exist: one line, not a traceback
            raise ErasureError(
                f"cannot start the request's workflow in namespace {client.namespace} "
                f"({exc.status.name.lower()}): nothing was stored"
            ) from None
        raise
    return Submission(request_id, planned, skipped)


async def start_orphans(services: Services, client: Client) -> list[str]:
    """Start the workflow of every stored request that has none: an intake killed between its commit and the
    workflow start leaves one. Run when a worker starts; returns the request ids started."""
    started = []
    for request_id in services.ledger.received():
        try:
            await client.get_workflow_handle(request_id).describe()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            await _start(client, services.config.task_queue, request_id)
            started.append(request_id)
    return started


async def _start(client: Client, task_queue: str, request_id: str) -> None:
    """Start the request's workflow, once: whoever starts it first (the intake or a worker's reconciliation) wins."""
    try:
        await client.start_workflow(
            REQUEST_WORKFLOW,
            RequestInput(request_id),
            id=request_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        pass


def _order_digest(services: Services, order: Order) -> str:
    """A keyed digest of the order, under a key of its own; the ledger keeps it only while the request is open."""
    key = local_secret(services.config.keys_dir, "order-digest.key")
    return Pseudonymizer(key, purpose="order digest").digest(order.model_dump_json().encode())


def _submitted(services: Services, request_id: str) -> Submission:
    tasks = services.ledger.tasks(request_id)
    return Submission(
        request_id,
        [t.system for t in tasks if t.state != TaskState.NOT_APPLICABLE],
        [t.system for t in tasks if t.state == TaskState.NOT_APPLICABLE],
        existing=True,
    )


def _today() -> date:
    return datetime.now(UTC).date()
