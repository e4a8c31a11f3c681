"""Intake: a validated order becomes a stored request and a started workflow, or nothing at all."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError

from activities.contracts import RequestInput
from domain.errors import ErasureError, InvalidInput
from domain.states import TaskState
from erasure.services import Services
from stores.catalogue import Catalogue, load_catalogue
from stores.orders import Order, load_order
from workflows.request import ErasureRequestWorkflow


@dataclass(frozen=True)
class Submission:
    request_id: str
    systems: list[str]
    not_applicable: list[str]


def validate(order_path: Path, catalogue_path: Path, *, allow_past_deadline: bool = False) -> tuple[Order, Catalogue]:
    """Everything that can be wrong with the input is found here, before anything is stored or started."""
    order = load_order(order_path)
    catalogue = load_catalogue(catalogue_path)
    if order.deadline < _today() and not allow_past_deadline:
        raise InvalidInput(
            str(order_path),
            "deadline",
            f"{order.deadline.isoformat()} has already passed: submit with --allow-past-deadline to accept it anyway",
        )
    if isinstance(order.scope, list):
        known = {s.name for s in catalogue.systems}
        for name in order.scope:
            if name not in known:
                raise InvalidInput(str(order_path), "scope", f"no system named {name!r} in {catalogue_path}")
    return order, catalogue


async def submit(services: Services, client: Client, order: Order, catalogue: Catalogue) -> Submission:
    request_id = str(uuid.uuid4())
    subject = order.subject.to_subject()
    in_scope = [s for s in catalogue.systems if order.scope == "all" or s.name in order.scope]
    planned, skipped = [], []
    with services.pool.connection() as conn, conn.transaction():
        services.ledger.create_request(
            conn,
            {
                "request_id": request_id,
                "kind": order.kind.value,
                "legal_basis": order.legal_basis,
                "reference": order.reference(),
                "requester": order.requester_record(),
                "received_on": order.received,
                "deadline": order.deadline,
                "scope": order.scope,
                "catalogue_sha256": catalogue.digest(),
            },
            catalogue.snapshot(),
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
    if order.deadline < _today():  # validate let it through only on the operator's explicit flag
        services.ledger.record_event(
            request_id,
            None,
            "past_deadline_accepted",
            "past_deadline_accepted",
            datetime.now(UTC),
            {"deadline": order.deadline.isoformat(), "accepted_with": "--allow-past-deadline"},
        )
    try:
        await client.start_workflow(
            ErasureRequestWorkflow.run,
            RequestInput(request_id),
            id=request_id,
            task_queue=services.config.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
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


def _today() -> date:
    return datetime.now(UTC).date()
