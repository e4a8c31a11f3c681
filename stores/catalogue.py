"""The catalogue of systems that may hold a subject's data (YAML, validated with pydantic).

Each system names its connector kind, its category, the identifier types it is keyed by, its connection settings
and the connector's mapping. Secrets, and endpoints that differ per environment, are named one way only: by
environment variable, in the settings' `*_env` fields, read where the connector is built; nothing is expanded here. The connector's own settings model
validates `connection` and `mapping`, so an error names the file, the system and the field.

Each system may list the recipients of its data (GDPR Art. 19: processors and third parties it disclosed the data
to), told of the erasure once the system is done: by a webhook whose URL an environment variable names, or by hand
(`erasure recipients ack`).

Identity sources name the tables that tie a subject's identifiers together (domain/resolution.py): each reads one
table of a `postgres` system, with that system's connection and schema, and says which column holds which type.

The approval policy says which kinds of request wait, after locating, for a second operator's approval before
anything is erased; court orders always do, whatever the policy says.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from domain.errors import InvalidInput, TerminalError
from domain.model import Category, IdentifierType
from domain.settings import KINDS, KindSpec, StrictModel
from domain.settings.postgres import SQL_NAME
from stores.orders import RequestKind
from stores.validation import describe, read_yaml

SYSTEM_NAME = r"^[a-z][a-z0-9_]{0,62}$"
ENV_NAME = r"^[A-Z][A-Z0-9_]{0,62}$"


class RetrySettings(StrictModel):
    """How this system's steps are retried. Transient errors only: terminal ones never retry.

    `maximum_attempts` counts the attempts that ended in an error of the system's own (a transient error, a
    throttle, an unexpected error): the step turns non-retryable at that many. An attempt lost with its worker
    (a crash, a kill, a deployment: the heartbeat or start-to-close timeout fires) does not count; `schedule_to_close`
    bounds every attempt of a step together, deaths and waits included, so no retry goes on without end.
    """

    initial_interval: timedelta = timedelta(seconds=1)
    backoff: float = Field(default=2.0, ge=1.0)
    maximum_interval: timedelta = timedelta(minutes=5)
    maximum_attempts: int = Field(default=10, ge=1)
    start_to_close: timedelta = timedelta(minutes=10)
    heartbeat: timedelta = timedelta(seconds=30)
    # generous: a vendor's monthly quota resets at the start of the next month (Segment's Retry-After can ask for up
    # to a month), and a request may take weeks; crashing or redeployed workers are retried within it
    schedule_to_close: timedelta = timedelta(days=35)

    @model_validator(mode="after")
    def _budget_fits_an_attempt(self) -> RetrySettings:
        if self.schedule_to_close < self.start_to_close:
            raise ValueError(
                f"schedule_to_close: expected at least start_to_close ({self.start_to_close}), "
                f"got {self.schedule_to_close}"
            )
        return self


class PollSettings(StrictModel):
    """Overrides of the vendor's job timings (defaults come from the connector's capabilities)."""

    every: timedelta | None = None
    service_time: timedelta | None = None
    deadline: timedelta | None = None


class RecipientSpec(StrictModel):
    """Someone the system disclosed the subject's data to, and how they are told of its erasure."""

    name: str = Field(pattern=SYSTEM_NAME)
    role: Literal["processor", "third_party"]
    notify: Literal["webhook", "manual"]
    url_env: str | None = Field(
        default=None, pattern=ENV_NAME, description="webhook only: the variable holding the URL"
    )

    @model_validator(mode="after")
    def _url_for_webhooks_only(self) -> RecipientSpec:
        if self.notify == "webhook" and self.url_env is None:
            raise ValueError("a webhook recipient names the environment variable of its URL in url_env")
        if self.notify == "manual" and self.url_env is not None:
            raise ValueError("a manual recipient has no url_env: it is told by hand and acknowledged")
        return self


class SystemSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SYSTEM_NAME)
    connector: str
    category: Category
    identifiers: list[IdentifierType] = Field(min_length=1)
    description: str = ""
    connection: dict[str, Any] = Field(default_factory=dict)
    mapping: dict[str, Any] = Field(default_factory=dict)
    retry: RetrySettings = RetrySettings()
    poll: PollSettings = PollSettings()
    recipients: list[RecipientSpec] = Field(default_factory=list)
    # subjects per batch of a class order, at most the connector's own (a fragile system may want smaller batches)
    batch_size: int | None = Field(default=None, ge=1)

    @field_validator("connector")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in KINDS:
            raise ValueError(f"unknown connector {value!r}; expected one of {', '.join(KINDS)}")
        return value

    @field_validator("recipients")
    @classmethod
    def _unique_recipients(cls, recipients: list[RecipientSpec]) -> list[RecipientSpec]:
        names = [r.name for r in recipients]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"recipient names must be unique per system; repeated: {', '.join(duplicates)}")
        return recipients

    @field_validator("connection")
    @classmethod
    def _no_references(cls, connection: dict[str, Any]) -> dict[str, Any]:
        for key, value in connection.items():
            if isinstance(value, str) and "${" in value:
                raise ValueError(f"{key}: ${{...}} is not expanded; name the variable in a `*_env` field instead")
        return connection

    @model_validator(mode="after")
    def _identifiers_supported(self) -> SystemSpec:
        unsupported = set(self.identifiers) - self.kind.identifiers
        if unsupported:
            raise ValueError(
                f"connector {self.connector} cannot use identifier type(s) {', '.join(sorted(unsupported))}"
            )
        return self

    @model_validator(mode="after")
    def _batch_within_connector(self) -> SystemSpec:
        most = self.kind.capabilities.batch_size
        if self.batch_size is not None and self.batch_size > most:
            raise ValueError(
                f"batch_size: expected at most {most} (the {self.connector} connector's), got {self.batch_size}"
            )
        return self

    @property
    def batches_of(self) -> int:
        """Subjects per batch of a class order on this system."""
        return self.batch_size or self.kind.capabilities.batch_size

    @property
    def kind(self) -> KindSpec:
        return KINDS[self.connector]

    def connector_settings(self) -> StrictModel:
        return self.kind.settings_model.model_validate({"connection": self.connection, "mapping": self.mapping})


class IdentitySourceSpec(StrictModel):
    """A table that ties identifiers together: a row found by one of them gives the others (read only)."""

    name: str = Field(pattern=SYSTEM_NAME)
    system: str = Field(description="a postgres system of the catalogue: its connection and schema are used")
    table: str = Field(pattern=SQL_NAME)
    columns: dict[IdentifierType, str] = Field(min_length=1)

    @field_validator("columns")
    @classmethod
    def _columns_are_names(cls, value: dict[IdentifierType, str]) -> dict[IdentifierType, str]:
        for column in value.values():
            if not re.fullmatch(SQL_NAME, column):
                raise ValueError(f"not a column name: {column[:40]!r}")
        return value


class ClassSpec(StrictModel):
    """A class of subjects a class order may name (`under_13`): the rows of an identity source's table whose birth
    date makes them younger than `under_years` on the order's cutoff date, and that equal every fixed value of `where`
    (a tenant, say). Read only, every value a bound parameter: an order gives the class's name and its cutoff date,
    never SQL text. A birthday on the cutoff date itself is that age already: outside the class."""

    name: str = Field(pattern=SYSTEM_NAME)
    source: str = Field(description="an identity source of the catalogue: its table and identifier columns are used")
    birth_date_column: str = Field(pattern=SQL_NAME)
    under_years: int = Field(ge=1, le=25)
    where: dict[str, str] = Field(default_factory=dict)

    @field_validator("where")
    @classmethod
    def _where_columns_are_names(cls, value: dict[str, str]) -> dict[str, str]:
        for column in value:
            if not re.fullmatch(SQL_NAME, column):
                raise ValueError(f"not a column name: {column[:40]!r}")
        return value


class ApprovalPolicy(StrictModel):
    """Which kinds of request a second operator approves before anything is erased, besides court and class orders."""

    required_for: list[RequestKind] = Field(default_factory=list)

    def requires_approval(self, kind: str) -> bool:
        # a court or class order is checked by a second person before an irreversible step: no policy turns that off
        return kind in (RequestKind.COURT_ORDER, "class_order") or kind in self.required_for


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: list[SystemSpec] = Field(min_length=1)
    identity_sources: list[IdentitySourceSpec] = Field(default_factory=list)
    classes: list[ClassSpec] = Field(default_factory=list)
    max_concurrency: int = Field(default=8, ge=1, le=100)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)

    @model_validator(mode="after")
    def _sources_read_postgres_systems(self) -> Catalogue:
        names = [s.name for s in self.identity_sources]
        if len(names) != len(set(names)):
            raise ValueError("identity source names must be unique")
        kinds = {s.name: s.connector for s in self.systems}
        for source in self.identity_sources:
            if kinds.get(source.system) != "postgres":
                raise ValueError(f"identity source {source.name}: system {source.system!r} is not a postgres system")
        for declared in self.classes:
            if declared.source not in names:
                raise ValueError(f"class {declared.name}: no identity source named {declared.source!r}")
        return self

    @field_validator("systems")
    @classmethod
    def _unique_names(cls, systems: list[SystemSpec]) -> list[SystemSpec]:
        names = [s.name for s in systems]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"system names must be unique; repeated: {', '.join(duplicates)}")
        return systems

    def class_spec(self, name: str) -> ClassSpec:
        for declared in self.classes:
            if declared.name == name:
                return declared
        raise KeyError(name)

    def identity_source(self, name: str) -> IdentitySourceSpec:
        for source in self.identity_sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def system(self, name: str) -> SystemSpec:
        for spec in self.systems:
            if spec.name == name:
                return spec
        known = ", ".join(spec.name for spec in self.systems)
        raise TerminalError(f"system {name}: expected one of the request's catalogue ({known}), got none")

    def snapshot(self) -> dict[str, Any]:
        """The catalogue as stored with a request: it holds no secrets, only environment variable names. A system
        without recipients is stored as before they existed, so its digest does not change."""
        data: dict[str, Any] = self.model_dump(mode="json")
        for system in data["systems"]:
            if not system["recipients"]:
                del system["recipients"]
        return data

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.snapshot(), sort_keys=True).encode()).hexdigest()


def load_catalogue(path: Path) -> Catalogue:
    data = read_yaml(path, allow_aliases=True)
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(str(path), *describe(exc, data)) from None
    for spec in catalogue.systems:
        # the connector's own model checks `connection` and `mapping`; errors keep the system's name and field path
        try:
            settings = spec.connector_settings()
        except ValidationError as exc:
            field, problem = describe(exc, {"connection": spec.connection, "mapping": spec.mapping})
            raise InvalidInput(str(path), f"systems[{spec.name}].{field}", problem) from None
        _check_searched(path, spec, spec.kind.searched_by(settings))
    return catalogue


def _check_searched(path: Path, spec: SystemSpec, searched: frozenset[IdentifierType]) -> None:
    """A declared type the mapping never uses would be searched over nothing, and certified as absent."""
    declared = frozenset(spec.identifiers)
    unused = sorted(declared - searched)
    if unused:
        raise InvalidInput(
            str(path),
            f"systems[{spec.name}].identifiers",
            f"declares {', '.join(unused)}, which the mapping never searches: map it or remove it",
        )
    undeclared = sorted(searched - declared)
    if undeclared:
        raise InvalidInput(
            str(path),
            f"systems[{spec.name}].mapping",
            f"searches by {', '.join(undeclared)}, which identifiers does not declare",
        )


def catalogue_from_snapshot(snapshot: dict[str, Any]) -> Catalogue:
    return Catalogue.model_validate(snapshot)
