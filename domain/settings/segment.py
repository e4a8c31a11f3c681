"""Settings of the `segment` connector: the Public API host, token variable and the regulation to create."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from domain.model import IdentifierType
from domain.settings.base import ENV_NAME, Capabilities, KindSpec, StrictModel

# Only the regulation types that delete: an erasure must never be configured as suppression alone.
RegulationType = Literal[
    "SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_ONLY", "DELETE_INTERNAL", "DELETE_ARCHIVE_ONLY"
]


class SegmentConnection(StrictModel):
    # exactly one: the host (https://api.segmentapis.com, or the EU host https://eu1.api.segmentapis.com), or the
    # environment variable holding it (an emulator whose port differs per environment)
    base_url: str | None = None
    base_url_env: str | None = Field(default=None, pattern=ENV_NAME)
    token_env: str = Field(pattern=ENV_NAME)  # names the environment variable holding the Public API token
    # set for a source-scoped regulation, else the whole workspace; checked because it becomes a path segment
    source_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] | None = None


# Regulation types that stay inside Segment: its destinations are never asked to delete (vendors.md).
INTERNAL_TYPES = frozenset({"SUPPRESS_WITH_DELETE_INTERNAL", "DELETE_INTERNAL", "DELETE_ARCHIVE_ONLY"})
SUPPRESSING_TYPES = frozenset({"SUPPRESS_WITH_DELETE", "SUPPRESS_WITH_DELETE_INTERNAL"})


class SegmentMapping(StrictModel):
    regulation_type: RegulationType = "SUPPRESS_WITH_DELETE"
    subject_type: Literal["USER_ID", "ANONYMOUS_ID"] = "USER_ID"
    identifier: Literal[IdentifierType.USER_ID, IdentifierType.DEVICE_ID] = IdentifierType.USER_ID
    # the workspace's destinations by name, as Segment's console shows them: only these names enter the evidence
    destinations: tuple[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,79}$")], ...] = ()

    @property
    def scope(self) -> Literal["segment_only", "segment_and_destinations"]:
        return "segment_only" if self.regulation_type in INTERNAL_TYPES else "segment_and_destinations"


class SegmentSettings(StrictModel):
    connection: SegmentConnection
    mapping: SegmentMapping = SegmentMapping()

    @model_validator(mode="after")
    def _source_scoped_options_need_a_source(self) -> Self:
        """Segment's rule: anonymous ids and archive deletion exist only for source-scoped regulations."""
        mapping = self.mapping
        if mapping.subject_type == "ANONYMOUS_ID" and mapping.regulation_type != "DELETE_ARCHIVE_ONLY":
            raise ValueError("subject_type ANONYMOUS_ID needs regulation_type DELETE_ARCHIVE_ONLY")
        if mapping.regulation_type == "DELETE_ARCHIVE_ONLY" and self.connection.source_id is None:
            raise ValueError("regulation_type DELETE_ARCHIVE_ONLY needs connection.source_id")
        return self

    @model_validator(mode="after")
    def _one_base_url(self) -> Self:
        if (self.connection.base_url is None) == (self.connection.base_url_env is None):
            raise ValueError("connection needs exactly one of base_url and base_url_env")
        return self


KIND = KindSpec(
    settings_model=SegmentSettings,
    capabilities=Capabilities(
        asynchronous=True,
        verifiable=False,
        # One call per request; the regulation quota is counted per period, so speed buys nothing and a slow,
        # steady rate keeps bursts of requests from spending it on a 429.
        rate_per_second=1.0,
        poll_every=timedelta(hours=12),
        service_time=timedelta(days=30),
        deadline=timedelta(days=35),
        batch_size=5000,  # subjectIds per regulation
    ),
    identifiers=frozenset({IdentifierType.USER_ID, IdentifierType.DEVICE_ID}),
    searched_by=lambda settings: frozenset({settings.mapping.identifier}),
)
