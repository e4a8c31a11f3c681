"""Connector kinds by name. Modules are imported on first use, so a worker loads only what it runs."""

from __future__ import annotations

import importlib

from connectors.base import Connector
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
