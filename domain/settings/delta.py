"""Settings of the `delta` connector: Delta Lake tables on S3 and the column that holds each subject's key."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from domain.model import IdentifierType
from domain.settings.base import ENV_NAME, Capabilities, KindSpec, StrictModel

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class Connection(StrictModel):
    # variable holding an S3 endpoint URL (moto, LocalStack); None: AWS itself. Credentials come from the standard
    # AWS environment (variables, profile, instance role), never from the catalogue.
    endpoint_url_env: str | None = Field(default=None, pattern=ENV_NAME)
    region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]+$")
    allow_http: bool = False


class DeltaTableMapping(StrictModel):
    uri: str  # s3://bucket/path/to/table
    key_column: str
    identifier: IdentifierType

    @field_validator("uri")
    @classmethod
    def _s3_uri(cls, uri: str) -> str:
        scheme, _, rest = uri.partition("://")
        bucket, _, path = rest.partition("/")
        segments = path.rstrip("/").split("/")
        if scheme != "s3" or not _BUCKET.fullmatch(bucket):
            raise ValueError("expected s3://bucket/path")
        if not path.strip("/") or any(s in ("", ".", "..") for s in segments):
            raise ValueError("expected a table path after the bucket, without empty, '.' or '..' segments")
        return f"s3://{bucket}/{path.rstrip('/')}"

    @field_validator("key_column")
    @classmethod
    def _sql_identifier(cls, column: str) -> str:
        if not _IDENTIFIER.fullmatch(column):
            raise ValueError("expected a column name matching [A-Za-z_][A-Za-z0-9_]*")
        return column

    @property
    def bucket(self) -> str:
        return self.uri.removeprefix("s3://").partition("/")[0]

    @property
    def path(self) -> str:
        """The location name: the table's key prefix in its bucket, without a trailing slash."""
        return self.uri.removeprefix("s3://").partition("/")[2]


class DeltaMapping(StrictModel):
    tables: list[DeltaTableMapping] = Field(min_length=1)

    @field_validator("tables")
    @classmethod
    def _each_table_once(cls, tables: list[DeltaTableMapping]) -> list[DeltaTableMapping]:
        if len({t.path for t in tables}) != len(tables):
            raise ValueError("each table path may be mapped once (it names the location)")
        return tables


class DeltaSettings(StrictModel):
    connection: Connection = Connection()
    mapping: DeltaMapping
    # A file no commit names may belong to a writer that has not committed yet: erase deletes such a file only when
    # it is older than this (Delta's own default retention is 7 days). Never zero.
    orphan_min_age_hours: int = Field(default=168, ge=1)


KIND = KindSpec(
    settings_model=DeltaSettings,
    capabilities=Capabilities(
        asynchronous=False, verifiable=True, batch_size=5000, clean_up_per_system=True
    ),  # one MERGE per batch
    identifiers=frozenset(IdentifierType),
    searched_by=lambda settings: frozenset(t.identifier for t in settings.mapping.tables),
)
