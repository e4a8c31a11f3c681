"""The connector protocol: one small base that every external system implements.

A connector knows one system and nothing of Temporal. Its four jobs:

- `locate(subject) -> Inventory`: what exists before deletion, per location; nothing found is said explicitly.
- `erase(subject, idempotency_key) -> Outcome`: deletes now, or returns a vendor job handle. Safe to run twice.
- `poll(job) -> JobState`: only for job-based vendors.
- `verify(subject) -> Verification`: looks again and reports what remains, with the evidence level it supports.

Errors are mapped at the edge of each connector into `erasure.errors`: `TransientError` (Temporal retries it) or
`TerminalError` (a person must act). Messages carry codes and counts, never identifiers or response bodies.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from erasure.errors import TerminalError
from erasure.model import IdentifierType, Inventory, JobHandle, JobState, Outcome, Subject, Verification


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, as data (dlt's capabilities context)."""

    asynchronous: bool = False  # erase returns a vendor job that must be polled
    verifiable: bool = True  # verify looks again itself (else the vendor's word is the evidence)
    rate_per_second: float | None = None  # enforced by the server on the vendor's own task queue
    poll_every: timedelta = timedelta(minutes=10)
    service_time: timedelta = timedelta(days=30)  # the vendor's stated time to finish; past it we escalate
    deadline: timedelta = timedelta(days=35)  # past it a job still running is a failure, never a success


class StrictModel(BaseModel):
    """Base for connector settings: unknown fields are errors, so a typo in a catalogue never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Connector(ABC):
    kind: ClassVar[str]
    capabilities: ClassVar[Capabilities] = Capabilities()
    settings_model: ClassVar[type[StrictModel]]
    # identifier types the connector knows how to use; the catalogue may not ask for others
    supported_identifiers: ClassVar[frozenset[IdentifierType]]

    def __init__(self, system: str, settings: Any) -> None:
        self.system = system
        self.settings = settings

    @abstractmethod
    def locate(self, subject: Subject) -> Inventory: ...

    @abstractmethod
    def erase(self, subject: Subject, idempotency_key: str) -> Outcome: ...

    def poll(self, job: JobHandle) -> JobState:
        raise TerminalError(f"{self.kind} has no asynchronous jobs to poll")

    @abstractmethod
    def verify(self, subject: Subject) -> Verification: ...

    def close(self) -> None:
        """Release clients and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def secret_from_env(variable: str) -> str:
    """Read a connection secret named by the catalogue; the catalogue never holds the secret itself."""
    value = os.environ.get(variable)
    if not value:
        raise TerminalError(f"environment variable {variable} is not set")
    return value
