"""An erasure order as a person writes it (YAML), validated at the edge with pydantic.

The order splits in two on intake: the facts of the request (kind, legal basis, dates, the court's reference) go
to the ledger; the subject's identifiers and a guardian's name and contact are sealed in the vault.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from domain.errors import InvalidInput
from domain.identifiers import problem as identifier_problem
from domain.model import IdentifierType, Subject
from stores.validation import describe, parse_yaml, read_yaml


class RequestKind(StrEnum):
    COURT_ORDER = "court_order"
    GUARDIAN_REQUEST = "guardian_request"
    SUBJECT_REQUEST = "subject_request"
    REGULATOR_DIRECTION = "regulator_direction"


def _identifier_value(value: str, info: ValidationInfo) -> str:
    """A value checked as written for its field's identifier type (domain.identifiers); never echoed."""
    found = identifier_problem(IdentifierType(info.field_name or ""), value)
    if found:
        raise ValueError(found)
    return value


IdentifierValue = Annotated[str, Field(max_length=512), AfterValidator(_identifier_value)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CourtOrder(_Strict):
    court: str = Field(min_length=1)
    claim_number: str = Field(min_length=1)
    judge: str = ""
    made_on: date
    party_reference: str = Field(min_length=1, description="the subject as the order names them, often initials")
    anonymity_order: bool = False
    document_sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")


AuthorityMethod = Literal["document_check", "verified_parental_consent", "payment_card_check", "court_order"]
Relationship = Literal["parent", "legal_guardian", "other_with_authority"]
# how an authority checked before intake may be described in an order (verify-authority takes AuthorityMethod only)
_CheckedAtIntake = Literal[
    "document_check", "verified_parental_consent", "payment_card_check", "court_order", "in_person", "other"
]


class Guardian(_Strict):
    """A guardian's request. Authority verified before intake carries who checked it, how and when; an order without
    them waits in verifying_authority for `erasure verify-authority`."""

    name: str = Field(min_length=1)  # personal data: sealed in the vault, never in the ledger
    contact: str = ""  # idem
    relationship: Relationship
    authority_check: _CheckedAtIntake | None = None
    verified_by: str | None = Field(
        default=None, min_length=1, description="the staff member or role who checked the authority"
    )
    verified_on: date | None = None

    @model_validator(mode="after")
    def _verified_in_full_or_not_at_all(self) -> Guardian:
        given = [self.authority_check is not None, self.verified_by is not None, self.verified_on is not None]
        if any(given) and not all(given):
            raise ValueError(
                "authority_check, verified_by and verified_on go together: all three, or none to verify later"
            )
        return self

    @property
    def verified_at_intake(self) -> bool:
        return self.verified_on is not None


class SubjectIdentifiers(_Strict):
    user_id: list[IdentifierValue] = []
    email: list[IdentifierValue] = []
    phone: list[IdentifierValue] = []
    device_id: list[IdentifierValue] = []
    advertising_id: list[IdentifierValue] = []
    username: list[IdentifierValue] = []

    @model_validator(mode="after")
    def _at_least_one(self) -> SubjectIdentifiers:
        if not any(getattr(self, kind.value) for kind in IdentifierType):
            raise ValueError("the subject needs at least one identifier")
        return self

    def to_subject(self) -> Subject:
        return Subject({kind: tuple(getattr(self, kind.value)) for kind in IdentifierType if getattr(self, kind.value)})


class Order(_Strict):
    kind: RequestKind
    legal_basis: str = Field(min_length=1)
    regime: Literal["gdpr", "uk_gdpr", "ccpa", "coppa"] | None = None  # whose deadline rule applies; not for courts
    received: date
    deadline: date | None = None  # may only be earlier than the rule's; a court order's (or COPPA's) own date
    court_order: CourtOrder | None = None
    guardian: Guardian | None = None
    regulator: str = ""
    subject: SubjectIdentifiers
    scope: Literal["all"] | list[str] = "all"

    @model_validator(mode="after")
    def _consistent(self) -> Order:
        if self.deadline is not None and self.deadline < self.received:
            raise ValueError("deadline must not be before received")
        if self.kind is RequestKind.COURT_ORDER and self.court_order is None:
            raise ValueError("a court_order request needs a court_order section")
        if self.kind is RequestKind.GUARDIAN_REQUEST and self.guardian is None:
            raise ValueError("a guardian_request needs a guardian section")
        if self.kind is not RequestKind.COURT_ORDER and self.regime is None:
            raise ValueError(f"a {self.kind.value} needs the regime whose deadline rule applies")
        if self.kind is RequestKind.REGULATOR_DIRECTION and not self.regulator:
            raise ValueError("a regulator_direction needs the regulator's name")
        if isinstance(self.scope, list) and (not self.scope or len(set(self.scope)) != len(self.scope)):
            raise ValueError("scope must be 'all' or a non-empty list of distinct system names")
        return self

    def reference(self) -> str:
        """How evidence names the request's authority, without naming the subject."""
        if self.court_order is not None:
            order = self.court_order
            return f"{order.court}, claim {order.claim_number}, order of {order.made_on.isoformat()} ({order.party_reference})"
        if self.guardian is not None:
            g = self.guardian
            if g.authority_check is None:
                return f"request by a {g.relationship.replace('_', ' ')}, authority to be verified"
            return f"request by a {g.relationship.replace('_', ' ')}, authority checked by {g.authority_check.replace('_', ' ')}"
        if self.regulator:
            return f"direction of {self.regulator}"
        return "the data subject's own request"

    def requester_record(self) -> dict[str, Any]:
        """What the ledger keeps of the requester: the court's public reference or the guardian's role, no name."""
        if self.court_order is not None:
            return {"court_order": self.court_order.model_dump(mode="json")}
        if self.guardian is not None:
            return {"guardian": self.guardian.model_dump(mode="json", exclude={"name", "contact"})}
        return {"regulator": self.regulator} if self.regulator else {}

    def sealed_requester(self) -> dict[str, str]:
        """The guardian's name and contact, for the vault."""
        if self.guardian is None:
            return {}
        return {"name": self.guardian.name, "contact": self.guardian.contact}


def load_order(path: Path) -> Order:
    data = read_yaml(path, allow_aliases=False)
    try:
        return Order.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(str(path), *describe(exc, data)) from None


def parse_order(raw: bytes, source: str) -> Order:
    """An order from bytes (an HTTP body, YAML or JSON), refused as a file would be, naming `source`."""
    data = parse_yaml(raw, source, allow_aliases=False)
    try:
        return Order.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(source, *describe(exc, data)) from None
