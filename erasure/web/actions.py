"""What the API and the dashboard do, once: each action on the same stores and Temporal client as the CLI.

Every action names its operator: a submission is the actor of the request's first state in its timeline, a review
decision names its reviewer, an extension its actor; these reach the certificate and the receipts as the CLI's do.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.contracts import Acknowledgement, Extension, OperatorDecision, ReviewDecision
from domain.deadlines import days_overdue
from domain.errors import ErasureError, InvalidInput
from domain.states import RequestState
from erasure.export import export_bundle
from erasure.holds import SUBJECT_UPLOAD, check_id, place_hold, release_hold, resume_released, uploaded_hold_order
from erasure.intake import Submission, check_order, submit
from erasure.preview import Preview, request_preview
from erasure.services import Services
from erasure.status import StatusReport, request_status, today
from evidence.errors import VerificationError
from evidence.keys import keyid_of, load_public_key_pem, public_key_pem
from evidence.verify import verify_bundle
from stores.catalogue import Catalogue
from stores.ledger import to_json
from stores.operators import Operator, Operators
from stores.orders import RequestKind, parse_order
from workflows.request import (
    ACK_RECIPIENT_UPDATE,
    APPROVE_UPDATE,
    EXTEND_UPDATE,
    REVIEW_QUERY,
    REVIEW_UPDATE,
    decision_problem,
    extension_problem,
    same_operator,
)

ORDER_SOURCE = "request body"
DECISIONS = ("include", "exclude", "confirm_nothing_found")


class NotFound(ErasureError):
    """No such request: answered 404."""


class Forbidden(ErasureError):
    """The operator may not do this to this request (approve what they submitted): answered 403."""


class Refused(ErasureError):
    """The request's workflow refused the action (a decided group, a certified request): answered 409."""


@dataclass
class Stack:
    services: Services
    client: Client
    catalogue: Catalogue
    operators: Operators


@dataclass(frozen=True)
class Verified:
    verified: bool
    steps: list[str]  # each check passed, in order
    failure: str | None = None  # the check that failed, when one did
    request_id: str | None = None
    outcome: str | None = None
    tree_size: int | None = None


def check_request_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound("no such request: expected a request id (a UUID)") from None


async def submit_order(
    stack: Stack, body: bytes, operator: Operator, *, allow_past_deadline: bool, force_new: bool
) -> Submission:
    order = parse_order(body, ORDER_SOURCE)
    check_order(order, stack.catalogue, ORDER_SOURCE, allow_past_deadline=allow_past_deadline)
    return await submit(stack.services, stack.client, order, stack.catalogue, force_new=force_new, actor=operator.name)


def list_requests(stack: Stack, state: str | None, kind: str | None, overdue: bool) -> list[dict[str, Any]]:
    wanted_state = _choice(RequestState, state, "state")
    wanted_kind = _choice(RequestKind, kind, "kind")
    records = stack.services.ledger.requests(
        state=wanted_state, kind=wanted_kind, due_before=today() if overdue else None
    )
    rows = []
    for record in records:
        row = to_json(record)
        state_now = RequestState(record.state)
        rows.append(
            {
                "request_id": row["request_id"],
                "kind": row["kind"],
                "state": row["state"],
                "outcome": row["outcome"],
                "deadline": row["deadline"],
                # none once ended, or while the deadline's clock waits for a guardian's authority
                "days_left": (record.deadline - today()).days if record.deadline and not state_now.ended else None,
                "days_overdue": days_overdue(record.deadline, state_now, today()),
                "created_at": row["created_at"],
            }
        )
    # overdue first, then the nearest deadline
    rows.sort(key=lambda r: (-r["days_overdue"], r["days_left"] is None, r["days_left"] or 0))
    return rows


def status(stack: Stack, request_id: str) -> StatusReport:
    try:
        return request_status(stack.services.ledger, check_request_id(request_id))
    except NotFound:
        raise
    except ErasureError:
        raise NotFound("no such request in the ledger") from None


async def review_groups(stack: Stack, request_id: str) -> dict[str, Any]:
    status(stack, request_id)
    handle = stack.client.get_workflow_handle(request_id)
    try:
        answer: dict[str, Any] = await handle.query(REVIEW_QUERY)
    except RPCError as exc:
        raise Refused(f"the request's workflow does not answer ({exc.status.name.lower()})") from None
    return answer


async def decide(stack: Stack, request_id: str, group: str, decision: str, reason: str, operator: Operator) -> str:
    status(stack, request_id)
    if decision not in DECISIONS:
        raise InvalidInput(ORDER_SOURCE, "decision", "must be include, exclude or confirm_nothing_found")
    if not reason.strip():
        raise InvalidInput(ORDER_SOURCE, "reason", "is required: the certificate records why")
    if _looks_like_identifier(reason):
        raise InvalidInput(ORDER_SOURCE, "reason", "must not hold an address or a long number: say why, not who")
    chosen = ReviewDecision(group=group, decision=decision, reason=reason, reviewer=operator.name)
    handle = stack.client.get_workflow_handle(request_id)
    try:
        result: str = await handle.execute_update(REVIEW_UPDATE, chosen, result_type=str)
    except WorkflowUpdateFailedError as exc:
        raise Refused(f"decision refused: {exc.cause}") from None
    except RPCError as exc:
        raise Refused(f"the request's workflow does not answer ({exc.status.name.lower()})") from None
    return result


async def extend(stack: Stack, request_id: str, days: int, reason: str, operator: Operator) -> str:
    status(stack, request_id)
    extension = Extension(days=days, reason=reason, actor=operator.name)
    problem = extension_problem(extension)
    if problem:
        field, _, message = problem.partition(": ")
        raise InvalidInput(ORDER_SOURCE, field, message)
    try:
        deadline: str = await stack.client.get_workflow_handle(request_id).execute_update(EXTEND_UPDATE, extension)
    except WorkflowUpdateFailedError as exc:
        raise Refused(f"cannot extend: {exc.cause}") from None
    except RPCError as exc:
        raise Refused(f"the request's workflow does not answer ({exc.status.name.lower()})") from None
    return deadline


async def acknowledge(stack: Stack, request_id: str, recipient: str, operator: Operator) -> str:
    """A manual recipient acknowledged the erasure (Art. 19); the operator is recorded with it."""
    status(stack, request_id)
    ack = Acknowledgement(recipient=recipient, actor=operator.name)
    try:
        answer: str = await stack.client.get_workflow_handle(request_id).execute_update(ACK_RECIPIENT_UPDATE, ack)
    except WorkflowUpdateFailedError as exc:
        raise Refused(f"acknowledgement refused: {exc.cause}") from None
    except RPCError as exc:
        raise Refused(f"the request's workflow does not answer ({exc.status.name.lower()})") from None
    return answer


def preview(stack: Stack, request_id: str) -> Preview:
    status(stack, request_id)
    return request_preview(stack.services.ledger, check_request_id(request_id))


async def decide_request(stack: Stack, request_id: str, update: str, reason: str, operator: Operator) -> str:
    """Approve, reject or cancel through the workflow's update; four eyes are checked here first, by operator
    identity, so that a submitter approving their own request is refused before the workflow is asked."""
    request_id = check_request_id(request_id)
    record = stack.services.ledger.request(request_id)
    if record is None:
        raise NotFound("no such request in the ledger")
    if update == APPROVE_UPDATE and same_operator(operator.name, record.submitted_by):
        raise Forbidden("the approver must not be the operator who submitted the request: four eyes")
    decision = OperatorDecision(actor=operator.name, reason=reason)
    problem = decision_problem(decision, need_reason=update != APPROVE_UPDATE)
    if problem:
        field, _, message = problem.partition(": ")
        raise InvalidInput(ORDER_SOURCE, field, message)
    try:
        answer: str = await stack.client.get_workflow_handle(request_id).execute_update(
            update, decision, result_type=str
        )
    except WorkflowUpdateFailedError as exc:
        raise Refused(f"cannot {update}: {exc.cause}") from None
    except RPCError as exc:
        raise Refused(f"the request's workflow does not answer ({exc.status.name.lower()})") from None
    return answer


def hold(
    stack: Stack,
    operator: Operator,
    case: str,
    request_id: str | None,
    subject_yaml: bytes | None,
    systems: str,
    categories: str,
) -> str:
    """Place a legal hold; the hold's fields are named as the form and the API name them. The uploaded subject's
    identifiers are checked and pseudonymised, never stored or echoed."""
    try:
        order = uploaded_hold_order(case, request_id, subject_yaml, systems, categories)
        return place_hold(stack.services, order, operator.name)
    except InvalidInput as exc:
        raise form_input(exc) from None


async def release(stack: Stack, hold_id: str, operator: Operator) -> int:
    """Release a hold and tell the workflows it stopped; returns how many resumed."""
    try:
        check_id(hold_id, "HOLD", "a hold id")
        requests = release_hold(stack.services, hold_id, operator.name)
    except InvalidInput as exc:
        raise NotFound(exc.problem) from None
    return len(await resume_released(stack.client, requests))


def form_input(exc: InvalidInput) -> InvalidInput:
    """The CLI's option names (`--case`, `HOLD`) as the form's and the API's fields (`case`, `hold_id`)."""
    renamed = {"HOLD": "hold_id", "--request": "request_id"}
    field = renamed.get(exc.field) or exc.field.removeprefix("--").replace("-", "_")
    if exc.source == SUBJECT_UPLOAD:
        field = f"{SUBJECT_UPLOAD}.{field}"
    return InvalidInput("form", field, exc.problem)


def bundle(stack: Stack, request_id: str) -> bytes:
    status(stack, request_id)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.zip"
        try:
            export_bundle(stack.services, request_id, path)
        except ErasureError as exc:
            raise Refused(str(exc)) from None
        return path.read_bytes()


def signing_key(stack: Stack) -> tuple[str, bytes]:
    public = stack.services.tlog.signer.public_key
    return keyid_of(public), public_key_pem(public)


def verify(bundle_bytes: bytes, trusted_key: bytes) -> Verified:
    """The bundle checked offline against the key given, as `erasure evidence verify` does."""
    try:
        key = load_public_key_pem(trusted_key)
    except (VerificationError, ValueError):
        raise InvalidInput("upload", "trusted_key", "expected an Ed25519 public key in PEM") from None
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.zip"
        path.write_bytes(bundle_bytes)
        try:
            report = verify_bundle(path, trusted_keys=[key])
        except VerificationError as exc:
            return Verified(False, [], failure=str(exc))
    return Verified(True, list(report.checks), None, report.request_id, str(report.outcome), report.tree_size)


def _choice(values: Any, given: str | None, name: str) -> Any:
    if not given:
        return None
    try:
        return values(given)
    except ValueError:
        allowed = ", ".join(repr(v.value) for v in values)
        raise InvalidInput("query", name, f"expected one of {allowed}, got another value") from None


def _looks_like_identifier(text: str) -> bool:
    import re

    return "@" in text or re.search(r"\d{5}", text) is not None
