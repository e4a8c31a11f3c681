"""Placing and releasing legal holds (`erasure hold place`, `erasure hold release`): the input checked at the edge,
the registry written, each step an event of the requests it concerns, with the operator and the time."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import RPCError

from domain.errors import InvalidInput
from domain.model import Category, Subject
from erasure.services import Services
from stores.catalogue import SYSTEM_NAME
from stores.orders import SubjectIdentifiers
from stores.validation import describe, parse_yaml, read_yaml
from workflows.request import HOLD_RELEASED_SIGNAL

# a court's claim number or a matter reference: no address, nothing that could be an identifier of the child
SUBJECT_UPLOAD = "subject_file"  # the form field of an uploaded subject file: the source its errors name
CASE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ./()_:-]{0,79}")


@dataclass(frozen=True)
class HoldOrder:
    case_reference: str
    request_id: str | None
    subject: Subject | None
    systems: tuple[str, ...]
    categories: tuple[str, ...]


def hold_order(
    case: str, request_id: str | None, subject_file: Path | None, systems: str, categories: str
) -> HoldOrder:
    """The hold as asked for, or InvalidInput naming the option: nothing is stored before this passes."""
    order = _checked_order(case, request_id, subject_file is not None, systems, categories)
    return replace(order, subject=read_subject_file(subject_file)) if subject_file is not None else order


def uploaded_hold_order(
    case: str, request_id: str | None, subject_yaml: bytes | None, systems: str, categories: str
) -> HoldOrder:
    """The hold as the API and the dashboard receive it: the subject's identifiers as an uploaded YAML file."""
    order = _checked_order(case, request_id, subject_yaml is not None, systems, categories)
    if subject_yaml is None:
        return order
    return replace(order, subject=parse_subject(subject_yaml, SUBJECT_UPLOAD))


def _checked_order(case: str, request_id: str | None, has_subject: bool, systems: str, categories: str) -> HoldOrder:
    if not CASE_REFERENCE.fullmatch(case):
        raise InvalidInput("arguments", "--case", "expected a case reference of letters, digits and ./()_:- (1-80)")
    if (request_id is None) != has_subject:
        raise InvalidInput("arguments", "--request", "expected exactly one of --request ID or --subject-file F")
    if request_id is not None:
        check_id(request_id, "--request", "a request id")
    names = tuple(n.strip() for n in systems.split(",") if n.strip())
    for name in names:
        if not re.fullmatch(SYSTEM_NAME, name):
            raise InvalidInput(
                "arguments", "--systems", f"expected system names separated by commas, got {name[:40]!r}"
            )
    kinds = tuple(c.strip() for c in categories.split(",") if c.strip())
    known = {c.value for c in Category}
    for kind in kinds:
        if kind not in known:
            raise InvalidInput("arguments", "--categories", f"expected some of {', '.join(sorted(known))}")
    return HoldOrder(case, request_id, None, names, kinds)


def check_id(value: str, option: str, what: str) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput("arguments", option, f"expected {what} (a UUID)") from None


def read_subject_file(path: Path) -> Subject:
    """The subject's identifiers from a private YAML file shaped like an order's `subject` (mode 0600 only: the
    command line and its history never see them)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise InvalidInput(str(path), "(file)", f"cannot be read: {exc.strerror}") from None
    if mode & 0o077:
        raise InvalidInput(str(path), "(file)", f"expected mode 0600 (others may read it), got {mode & 0o777:04o}")
    data = read_yaml(path, allow_aliases=False)
    return _subject(data, str(path))


def parse_subject(raw: bytes, source: str) -> Subject:
    return _subject(parse_yaml(raw, source, allow_aliases=False), source)


def _subject(data: object, source: str) -> Subject:
    try:
        return SubjectIdentifiers.model_validate(data).to_subject()
    except ValidationError as exc:
        raise InvalidInput(source, *describe(exc, data)) from None


def place_hold(services: Services, order: HoldOrder, operator: str) -> str:
    at = datetime.now(UTC)
    if order.request_id is not None:
        record = services.ledger.request(order.request_id)
        if record is None:
            raise InvalidInput("arguments", "--request", "no such request in the ledger")
        known = {s["name"] for s in services.ledger.catalogue_snapshot(order.request_id).get("systems", [])}
        unknown = sorted(set(order.systems) - known)
        if unknown:
            raise InvalidInput("arguments", "--systems", f"the request has no system {unknown[0]!r}")
    hold_id = services.holds.place(
        order.case_reference,
        request_id=order.request_id,
        subject=order.subject,
        systems=order.systems,
        categories=order.categories,
        placed_by=operator,
        at=at,
    )
    if order.request_id is not None:
        detail = _detail(hold_id, order.case_reference, operator, order.systems, order.categories)
        services.ledger.record_event(order.request_id, None, "hold_placed", f"hold_placed:{hold_id}", at, detail)
    return hold_id


def release_hold(services: Services, hold_id: str, operator: str) -> list[str]:
    """Release the hold; returns the requests whose workflows must hear of it (those it stopped or names)."""
    at = datetime.now(UTC)
    record = services.holds.release(hold_id, operator, at)
    if record is None:
        raise InvalidInput("arguments", "HOLD", "no such hold in the registry")
    requests = set(services.ledger.requests_held_by(hold_id))
    if record.request_id is not None:
        requests.add(record.request_id)
    detail = _detail(hold_id, record.case_reference, record.released_by or operator, (), ())
    for request_id in sorted(requests):
        when = record.released_at or at
        services.ledger.record_event(request_id, None, "hold_released", f"hold_released:{hold_id}", when, detail)
    return sorted(requests)


async def resume_released(client: Client, requests: list[str]) -> list[str]:
    """Tell the workflows of the requests a released hold concerns; returns those that heard it."""
    told = []
    for request_id in requests:
        try:
            await client.get_workflow_handle(request_id).signal(HOLD_RELEASED_SIGNAL)
            told.append(request_id)
        except RPCError:
            pass  # its workflow has ended: nothing of it waits for the hold any more
    return told


def _detail(
    hold_id: str, case: str, operator: str, systems: Sequence[str], categories: Sequence[str]
) -> dict[str, str]:
    detail = {"hold": hold_id, "case": case, "operator": operator}
    if systems:
        detail["systems"] = ", ".join(systems)
    if categories:
        detail["categories"] = ", ".join(categories)
    return detail
