"""Intake of a class order: its subjects resolved once (from a file, or a declared class at a snapshot), sealed in
the vault in pseudonym order, the ledger given only their count and Merkle root, then its workflow started.

Everything that can be wrong with the input is found before anything is stored; a workflow that cannot be started
leaves nothing stored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from activities.class_contracts import ClassOrderInput
from activities.class_order import SEALED_CLASS
from connectors.postgres_class import class_members
from domain.classes import canonical_subject, sort_by_pseudonym
from domain.errors import ErasureError, InvalidInput
from domain.model import Subject
from domain.states import TaskState
from erasure.services import Services
from evidence.merkle import MemoryTree
from stores.catalogue import Catalogue, load_catalogue
from stores.class_orders import ClassOrder, SubjectClass, load_class_order, read_subjects, subject_file
from stores.pseudonyms import subject_pseudonym
from workflows.class_order import ClassOrderWorkflow


@dataclass(frozen=True)
class ClassSubjects:
    subjects: list[Subject]
    source: str  # "file" or "class:<name>"
    cutoff: date | None
    snapshot_at: datetime


@dataclass(frozen=True)
class ClassSubmission:
    request_id: str
    subjects: int
    systems: list[str]
    not_applicable: list[str]


def validate_class(order_path: Path, catalogue_path: Path) -> tuple[ClassOrder, Catalogue]:
    order = load_class_order(order_path)
    catalogue = load_catalogue(catalogue_path)
    known = {s.name: s for s in catalogue.systems}
    scope = list(known) if order.scope == "all" else order.scope
    for name in scope:
        if name not in known:
            raise InvalidInput(str(order_path), "scope", f"no system named {name!r} in {catalogue_path}")
        if known[name].kind.capabilities.asynchronous:
            raise InvalidInput(
                str(order_path),
                "scope",
                f"system {name} is an asynchronous vendor, which class orders do not reach yet: list the scope "
                "without it",
            )
    if isinstance(order.subjects, SubjectClass):
        try:
            catalogue.class_spec(order.subjects.class_name)
        except KeyError:
            raise InvalidInput(
                str(order_path), "subjects.class", f"no class named {order.subjects.class_name!r} in {catalogue_path}"
            ) from None
    else:
        read_subjects(subject_file(order_path, order))  # a bad file stops here, before anything is stored
    return order, catalogue


def resolve_class(order_path: Path, order: ClassOrder, catalogue: Catalogue) -> ClassSubjects:
    """The order's subjects, resolved once: the file's rows, or the class's members at one snapshot."""
    if not isinstance(order.subjects, SubjectClass):
        return ClassSubjects(read_subjects(subject_file(order_path, order)), "file", None, datetime.now(UTC))
    declared = catalogue.class_spec(order.subjects.class_name)
    source = catalogue.identity_source(declared.source)
    settings = catalogue.system(source.system).connector_settings()
    from domain.settings.postgres import PostgresSettings

    assert isinstance(settings, PostgresSettings)
    members = class_members(
        settings,
        source.table,
        source.columns,
        birth_date_column=declared.birth_date_column,
        under_years=declared.under_years,
        where=declared.where,
        cutoff=order.subjects.cutoff,
    )
    if not members.subjects:
        raise InvalidInput(str(order_path), "subjects.class", "the class has no member at the snapshot: nothing to do")
    return ClassSubjects(members.subjects, f"class:{declared.name}", order.subjects.cutoff, members.snapshot_at)


async def submit_class(
    services: Services, client: Client, order: ClassOrder, catalogue: Catalogue, resolved: ClassSubjects
) -> ClassSubmission:
    request_id = str(uuid.uuid4())
    in_scope = [s for s in catalogue.systems if order.scope == "all" or s.name in order.scope]
    kinds = set().union(*(s.kinds() for s in resolved.subjects))
    planned, skipped = [], []
    with services.pool.connection() as conn, conn.transaction():
        services.ledger.create_request(
            conn,
            {
                "request_id": request_id,
                "kind": order.kind,
                "legal_basis": order.legal_basis,
                "reference": order.reference(),
                "requester": order.requester_record(),
                "received_on": order.received,
                "deadline": order.deadline,
                "scope": order.scope,
                "catalogue_sha256": catalogue.digest(),
                "order_digest": None,
                "submitted_by": services.config.operator,  # its approver must be another operator
            },
            catalogue.snapshot(),
            actor=services.config.operator or "intake",
        )
        services.vault.create(conn, request_id, {})
        pseudonyms = services.vault.pseudonyms(conn, request_id)
        ordered = sort_by_pseudonym([(subject_pseudonym(pseudonyms, s), s) for s in resolved.subjects])
        services.vault.seal(
            conn, request_id, SEALED_CLASS, {"subjects": [canonical_subject(s).decode("utf-8") for _, s in ordered]}
        )
        tree = MemoryTree()
        for pseudonym, _ in ordered:
            tree.append(pseudonym)
        services.classes.create(
            conn,
            request_id,
            subject_count=len(ordered),
            merkle_root=tree.root(),
            source=resolved.source,
            cutoff=resolved.cutoff,
            snapshot_at=resolved.snapshot_at,
        )
        for spec in in_scope:
            if kinds & set(spec.identifiers):
                services.ledger.add_task(conn, request_id, spec.name, spec.category.value, spec.connector)
                planned.append(spec.name)
            else:
                detail = "no subject of the class has an identifier of a type it is keyed by"
                services.ledger.add_task(
                    conn, request_id, spec.name, spec.category.value, spec.connector, TaskState.NOT_APPLICABLE, detail
                )
                skipped.append(spec.name)
    try:
        await client.start_workflow(
            ClassOrderWorkflow.run,
            ClassOrderInput(request_id),
            id=request_id,
            task_queue=services.config.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
    except BaseException:
        with services.pool.connection() as conn, conn.transaction():  # nothing stays of a request never started
            services.classes.delete(conn, request_id)
            services.vault.delete(conn, request_id)
            services.ledger.delete_request(conn, request_id)
        raise ErasureError("cannot start the class order's workflow: nothing was stored") from None
    return ClassSubmission(request_id, len(ordered), planned, skipped)
