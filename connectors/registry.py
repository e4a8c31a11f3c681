"""Connector kinds by name. Modules are imported on first use, so a worker loads only what it runs."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from connectors.base import Connector
from domain.model import IdentifierType
from domain.resolution import IdentitySource
from domain.settings import StrictModel

_KINDS: dict[str, str] = {
    "postgres": "connectors.postgres:PostgresConnector",
    "s3": "connectors.s3:S3Connector",
    "delta": "connectors.delta:DeltaConnector",
    "segment": "connectors.segment:SegmentConnector",
    "meta_audiences": "connectors.meta_audiences:MetaAudiencesConnector",
}


def connector_class(kind: str) -> type[Connector]:
    try:
        target = _KINDS[kind]
    except KeyError:
        raise KeyError(kind) from None
    module_name, _, class_name = target.partition(":")
    cls: type[Connector] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_connector(kind: str, system: str, settings: StrictModel) -> Connector:
    """The connector of a system, with settings the catalogue validated (and resolved): connectors take that typed
    model and never validate again."""
    cls = connector_class(kind)
    if not isinstance(settings, cls.spec.settings_model):
        raise TypeError(f"connector {kind} takes {cls.spec.settings_model.__name__}, got {type(settings).__name__}")
    return cls(system, settings)


def build_identity_source(
    name: str, settings: StrictModel, table: str, columns: Mapping[IdentifierType, str]
) -> IdentitySource:
    """An identity source reading a table of a postgres system, with that system's (resolved) settings."""
    from connectors.postgres import PostgresIdentitySource
    from domain.settings.postgres import PostgresSettings

    if not isinstance(settings, PostgresSettings):
        raise TypeError(f"identity sources read postgres systems, got {type(settings).__name__}")
    return PostgresIdentitySource(name, settings, table, columns)


def close_connections() -> None:
    """Close the connections that connectors keep between steps: the worker stops."""
    from connectors.postgres import close_pools

    close_pools()
