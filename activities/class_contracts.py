"""What crosses Temporal for a class order: activity names and types. Request ids, system names, batch indexes,
levels and counts only; the subjects stay sealed in the vault."""

from __future__ import annotations

from dataclasses import dataclass, field

from activities.contracts import SystemPlan

CLASS_PLAN = "erasure.class_plan"
CLASS_PREVIEW = "erasure.class_preview"
ERASE_BATCH = "erasure.erase_batch"
RECORD_BATCH_RECEIPT = "erasure.record_batch_receipt"
SEAL_CLASS = "erasure.seal_class"
SET_PAUSED = "erasure.set_paused"
CANCEL_CLASS = "erasure.cancel_class"
CLEAN_UP_SYSTEM = "erasure.clean_up_system"
RECORD_CLEAN_UP_RECEIPT = "erasure.record_clean_up_receipt"


@dataclass(frozen=True)
class ClassSystem:
    plan: SystemPlan
    batches: int
    clean_up: bool = False  # one clean-up after all batches (Capabilities.clean_up_per_system)


@dataclass(frozen=True)
class ClassPlan:
    systems: list[ClassSystem]
    max_concurrency: int
    grace_s: float


@dataclass(frozen=True)
class ClassScope:
    """A class order counted, nothing erased: a second operator, never its submitter, approves it."""

    submitted_by: str


@dataclass(frozen=True)
class ClassOrderInput:
    """The class order's workflow input; a continued run carries its plan and where it stopped."""

    request_id: str
    plan: ClassPlan | None = None
    next_item: int = 0  # the next (system, batch) to start, counting over the plan's systems in order
    paused: bool = False
    cancel_reason: str | None = None  # the operator cancelled the order, saying why


@dataclass(frozen=True)
class BatchInput:
    request_id: str
    plan: SystemPlan
    batch: int


@dataclass(frozen=True)
class BatchStep:
    request_id: str
    system: str
    batch: int


@dataclass(frozen=True)
class BatchResult:
    level: str
    detail: str


@dataclass(frozen=True)
class BatchReceiptInput:
    request_id: str
    system: str
    batch: int
    level: str
    detail: str
    workflow_id: str
    run_id: str
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class CleanUpStep:
    request_id: str
    system: str


@dataclass(frozen=True)
class CleanUpResult:
    level: str
    detail: str
    remaining: dict[str, int] = field(default_factory=dict)  # per location of the catalogue: traces left
    facts: dict[str, str | int] = field(default_factory=dict)  # typed facts, e.g. the first version a table keeps


@dataclass(frozen=True)
class CleanUpReceiptInput:
    request_id: str
    system: str
    result: CleanUpResult
    workflow_id: str
    run_id: str
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class CancelInput:
    request_id: str
    reason: str  # the operator's, checked to hold no address
    at: str  # the workflow's time


@dataclass(frozen=True)
class PausedInput:
    request_id: str
    paused: bool


@dataclass(frozen=True)
class ClassResult:
    outcome: str
    batches: int
    levels: dict[str, int] = field(default_factory=dict)  # evidence level -> batches
