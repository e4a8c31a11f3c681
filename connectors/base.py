"""The connector protocol: one small base that every external system implements.

A connector knows one system and nothing of Temporal. Its four jobs:

- `locate(subject) -> Inventory`: what exists before deletion, per location; nothing found is said explicitly.
- `erase(subject, idempotency_key, journal) -> Outcome`: deletes now, or returns a vendor job handle. Safe to run
  twice. Before each deletion it tells the journal which keys it is about to delete (and afterwards which of them the
  system refused), so the receipt's commitment survives a crash between the deletion and its report.
- `poll(job) -> JobState`: only for job-based vendors.
- `verify(subject) -> Verification`: looks again and reports what remains, with the evidence level it supports.
- `erase_batch` / `verify_batch` / `clean_up`: a class order's batch, and the one clean-up per system after all
  batches for kinds whose erasure ends in a costly whole-system step (Delta's checkpoint, file and log clean-up).
- `restrict(subject)` / `lift(subject, ...)`: only where the system can restrict records while a legal hold stops
  their erasure (S3 object legal hold); elsewhere a held system is recorded as not processed.

Errors are mapped at the edge of each connector into `domain.errors`: `TransientError` (Temporal retries it) or
`TerminalError` (a person must act). Messages carry codes and counts, never identifiers or response bodies.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import ClassVar, Self

from domain.errors import TerminalError
from domain.model import Inventory, JobHandle, JobState, Journal, Outcome, Restriction, Subject, Verification
from domain.settings.base import Capabilities, KindSpec, StrictModel


class _Unrecorded:
    """A journal that keeps nothing, for callers that only read the outcome (connector tests, benchmarks)."""

    def intend(self, keys: Iterable[str]) -> None:
        pass

    def withdraw(self, keys: Iterable[str]) -> None:
        pass


UNRECORDED: Journal = _Unrecorded()


class Connector(ABC):
    kind: ClassVar[str]
    spec: ClassVar[KindSpec]  # settings, capabilities and identifier types, from the domain

    @property
    def capabilities(self) -> Capabilities:
        return self.spec.capabilities

    def __init__(self, system: str, settings: StrictModel) -> None:
        """`settings` is the kind's settings model, validated once by the catalogue."""
        self.system = system
        self.settings = settings

    @abstractmethod
    def locate(self, subject: Subject) -> Inventory: ...

    @abstractmethod
    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome: ...

    def poll(self, job: JobHandle) -> JobState:
        raise TerminalError(f"{self.kind} has no asynchronous jobs to poll")

    @abstractmethod
    def verify(self, subject: Subject) -> Verification: ...

    def erase_batch(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        """A class order's batch: `erase`, unless the kind leaves a clean-up to `clean_up`, once per system."""
        return self.erase(subject, idempotency_key, journal)

    def verify_batch(self, subject: Subject) -> Verification:
        """Looks again after `erase_batch`, at what that step removes."""
        return self.verify(subject)

    def clean_up(self, subject: Subject) -> Verification:
        """Once per system after a class order's batches (kinds with `Capabilities.clean_up_per_system`): remove what
        the batches' deletions left behind for all of `subject`'s values, then look again everywhere."""
        raise TerminalError(f"{self.kind} has no clean-up after a class order's batches")

    def restrict(self, subject: Subject) -> Restriction | None:
        """Under a legal hold: put the subject's records beyond any other processing, or None where the system
        offers no restriction (the hold then leaves them untouched and unprocessed)."""
        return None

    def lift(self, subject: Subject, restricted_here: Callable[[str], bool]) -> int:
        """The hold is released: lift the restrictions whose labels `restricted_here` names; returns how many."""
        return 0

    def close(self) -> None:
        """Release clients and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def secret_from_env(variable: str) -> str:
    """The value of a variable a catalogue's `*_env` field names: a secret, or an endpoint that differs per
    environment. The one place a connector reads the environment; the catalogue never holds the value itself."""
    value = os.environ.get(variable)
    if not value:
        raise TerminalError(f"environment variable {variable} is not set")
    return value
