"""The domain model shared by every room: identifiers, subjects, outcomes and evidence levels.

Plain frozen dataclasses and enums only, so that connectors, activities and workflows can import it cheaply.
A `Subject` holds identifier values and therefore never crosses Temporal: activities build it from the vault.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class IdentifierType(StrEnum):
    """The kinds of identifier a system can be keyed by."""

    USER_ID = "user_id"
    EMAIL = "email"
    PHONE = "phone"
    DEVICE_ID = "device_id"
    ADVERTISING_ID = "advertising_id"
    USERNAME = "username"


class Category(StrEnum):
    STORAGE = "storage"
    ANALYTICS = "analytics"
    AD_TARGETING = "ad_targeting"
    BACKUP = "backup"


class EvidenceLevel(StrEnum):
    """How strongly a system's outcome is proven (design.md, "Evidence level")."""

    VERIFIED_ABSENT = "verified_absent"
    VENDOR_ATTESTED = "vendor_attested"
    ACCEPTED = "accepted"
    BLOCKED = "blocked"
    FAILED = "failed"


@dataclass(frozen=True)
class Subject:
    """The identifiers of one data subject, by type. Lives only inside activities and connectors."""

    identifiers: Mapping[IdentifierType, tuple[str, ...]]

    @classmethod
    def of(cls, **values: Iterable[str]) -> Subject:
        return cls({IdentifierType(k): tuple(v) for k, v in values.items() if v})

    def values(self, kind: IdentifierType) -> tuple[str, ...]:
        return tuple(self.identifiers.get(kind, ()))

    def kinds(self) -> frozenset[IdentifierType]:
        return frozenset(k for k, v in self.identifiers.items() if v)

    def only(self, kinds: Iterable[IdentifierType]) -> Subject:
        """The identifiers of the given types: a system sees only the types it is keyed by."""
        wanted = set(kinds)
        return Subject({k: v for k, v in self.identifiers.items() if k in wanted})

    def __repr__(self) -> str:  # never print identifier values
        counts = {str(k): len(v) for k, v in self.identifiers.items()}
        return f"Subject(<redacted> {counts})"

    __str__ = __repr__


@dataclass(frozen=True)
class Inventory:
    """What a system holds of the subject before deletion, per location (a table, a key template, an audience).

    Location names come from the catalogue and never contain identifier values.
    """

    counts: Mapping[str, int]
    note: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def found(self) -> bool:
        return self.total > 0


@dataclass(frozen=True)
class JobHandle:
    """A vendor's asynchronous deletion job. The id is the vendor's, never an identifier of the subject."""

    job_id: str
    submitted_at: datetime | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Opaque:
    """A vendor value outside its documented shape, held only until the activity layer keys it.

    Neither kept as it came nor as a plain digest: a vendor that echoes the subject's identifier would make an
    unkeyed SHA-256 of it a dictionary-reversible copy. The activity replaces it with an HMAC under a key derived
    from the request's data key, so shredding unlinks it too.
    """

    value: bytes

    def __repr__(self) -> str:  # never print what the vendor sent
        return "Opaque(<withheld>)"

    __str__ = __repr__


# A vendor's answer reduced to typed values at the connector edge (enumerated words, counts, validated ids, opaque
# values): what the receipt may say about the vendor's own view, never its raw strings. An `Opaque` fact under `name`
# reaches the evidence as `name: "unknown"` and `name_hmac`.
VendorFacts = Mapping[str, str | int | Opaque]


@dataclass(frozen=True)
class DestinationStatus:
    """One destination a vendor's job fans out to, reduced at the connector edge to fields that cannot carry an
    identifier: a name declared in the catalogue, an id of the vendor's documented shape, a status from its documented
    enum (else "unknown"). A value that could not be kept is held opaque, by field name, for the activity to key."""

    name: str | None
    id: str | None
    status: str
    finished_at: datetime | None = None
    opaque: Mapping[str, Opaque] = field(default_factory=dict)


class JobStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class JobState:
    status: JobStatus
    vendor_status: str
    finished_at: datetime | None = None
    detail: str = ""
    facts: VendorFacts = field(default_factory=dict)
    destinations: tuple[DestinationStatus, ...] = ()
    # where the subject's data remains although the vendor's own job is done, each needing its own erasure
    residual: tuple[str, ...] = ()


class Journal(Protocol):
    """Where `erase` writes down what it deletes before a crash can lose it: the keys it is about to delete, before
    the destructive call (or before its transaction commits), and the keys the system then refused to delete."""

    def intend(self, keys: Iterable[str]) -> None: ...

    def withdraw(self, keys: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """What `erase` did. `deleted_keys` stay inside the activity: only a commitment to them leaves it."""

    level: EvidenceLevel
    deleted: int = 0
    blocked: int = 0
    deleted_keys: tuple[str, ...] = ()
    job: JobHandle | None = None
    vendor_status: str = ""
    detail: str = ""
    facts: VendorFacts = field(default_factory=dict)


@dataclass(frozen=True)
class Restriction:
    """What `restrict` did while a legal hold stops the erasure (GDPR Art. 18): how many records it put beyond any
    other processing, how many it could not, and a label of each restricted record, which stays inside the activity
    (only keyed HMACs of them are kept, so that the release lifts exactly these)."""

    restricted: int
    unrestricted: int
    labels: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    """What `verify` found when looking again."""

    level: EvidenceLevel
    remaining: Mapping[str, int]
    detail: str = ""
    facts: VendorFacts = field(default_factory=dict)

    @property
    def total_remaining(self) -> int:
        return sum(self.remaining.values())
