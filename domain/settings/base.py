"""What every kind of system shares: strict settings, capabilities as data, and the spec that ties them together."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from domain.model import IdentifierType

# A catalogue names a secret, or a value that differs per environment, only by its variable: the `*_env` fields.
ENV_NAME = r"^[A-Z_][A-Z0-9_]*$"


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do, as data (dlt's capabilities context)."""

    asynchronous: bool = False  # erase returns a vendor job that must be polled
    verifiable: bool = True  # verify looks again itself (else the vendor's word is the evidence)
    rate_per_second: float | None = None  # enforced by the server on the vendor's own task queue
    poll_every: timedelta = timedelta(minutes=10)
    service_time: timedelta = timedelta(days=30)  # the vendor's stated time to finish; past it we escalate
    deadline: timedelta = timedelta(days=35)  # past it a job still running is a failure, never a success
    # subjects per batch of a class order (domain/classes.py): what one bulk call of the system takes at once
    batch_size: int = 1
    # a class order's batches only delete; one clean-up per system follows them all (Connector.clean_up)
    clean_up_per_system: bool = False


class StrictModel(BaseModel):
    """Base for settings: unknown fields are errors, so a typo in a catalogue never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class KindSpec:
    """One kind of system as the catalogue sees it, readable without importing the connector's heavy modules."""

    settings_model: type[StrictModel]
    capabilities: Capabilities
    identifiers: frozenset[IdentifierType]  # the identifier types the connector knows how to use
    # the identifier types a system's validated settings actually search with: the catalogue must declare exactly these
    searched_by: Callable[[Any], frozenset[IdentifierType]]
