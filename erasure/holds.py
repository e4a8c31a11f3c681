"""Placing and releasing legal holds (`erasure hold place`, `erasure hold release`): the input checked at the edge,
the registry written, each step an event of the requests it concerns, with the operator and the time."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from domain.errors import InvalidInput
from domain.model import Category, Subject
from erasure.services import Services
from stores.catalogue import SYSTEM_NAME
from stores.orders import SubjectIdentifiers
from stores.validation import describe, read_yaml

# a court's claim number or a matter reference: no address, nothing that could be an identifier of the child
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
    if not CASE_REFERENCE.fullmatch(case):
        raise InvalidInput("arguments", "--case", "expected a case reference of letters, digits and ./()_:- (1-80)")
    if (request_id is None) == (subject_file is None):
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
    subject = read_subject_file(subject_file) if subject_file is not None else None
    return HoldOrder(case, request_id, subject, names, kinds)


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
    try:
        return SubjectIdentifiers.model_validate(data).to_subject()
    except ValidationError as exc:
        raise InvalidInput(str(path), *describe(exc, data)) from None


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


def _detail(
    hold_id: str, case: str, operator: str, systems: Sequence[str], categories: Sequence[str]
) -> dict[str, str]:
    detail = {"hold": hold_id, "case": case, "operator": operator}
    if systems:
        detail["systems"] = ", ".join(systems)
    if categories:
        detail["categories"] = ", ".join(categories)
    return detail
