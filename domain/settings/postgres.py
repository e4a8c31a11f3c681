"""Settings of the `postgres` connector: a DSN by variable name and the tables that hold a subject's rows."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from domain.model import IdentifierType
from domain.settings.base import ENV_NAME, Capabilities, KindSpec, StrictModel

SQL_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"


class PostgresConnection(StrictModel):
    dsn_env: str = Field(pattern=ENV_NAME)
    lock_timeout_ms: int = Field(default=5000, gt=0)
    statement_timeout_ms: int = Field(default=60000, gt=0)


class SubjectTable(StrictModel):
    table: str = Field(pattern=SQL_NAME)
    key: str = Field(pattern=SQL_NAME)
    match: dict[IdentifierType, str] = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _columns_are_names(cls, value: dict[IdentifierType, str]) -> dict[IdentifierType, str]:
        for column in value.values():
            if not re.fullmatch(SQL_NAME, column):
                raise ValueError(f"not a column name: {column!r}")
        return value


class LinkedTable(StrictModel):
    table: str = Field(pattern=SQL_NAME)
    key: str | None = Field(default=None, pattern=SQL_NAME)
    # column -> the table whose key it references
    references: dict[str, str] = Field(min_length=1)

    @field_validator("references")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for column, table in value.items():
            if not re.fullmatch(SQL_NAME, column) or not re.fullmatch(SQL_NAME, table):
                raise ValueError(f"not a column and table name: {column!r} -> {table!r}")
        return value


class PostgresMapping(StrictModel):
    schema_name: str = Field(default="public", pattern=SQL_NAME, alias="schema")
    subject: SubjectTable
    tables: list[LinkedTable] = Field(default_factory=list)

    @model_validator(mode="after")
    def _graph_is_sound(self) -> PostgresMapping:
        keyed = {self.subject.table}
        names = [self.subject.table]
        for linked in self.tables:
            for column, parent in linked.references.items():
                if parent not in keyed:
                    raise ValueError(
                        f"table {linked.table}: column {column} references {parent}, which is not a keyed table "
                        "listed before it"
                    )
            if linked.key is not None:
                keyed.add(linked.table)
            names.append(linked.table)
        if len(names) != len(set(names)):
            raise ValueError("a table is listed twice")
        return self


class PostgresSettings(StrictModel):
    connection: PostgresConnection
    mapping: PostgresMapping


KIND = KindSpec(
    settings_model=PostgresSettings,
    capabilities=Capabilities(asynchronous=False, verifiable=True, batch_size=1000),  # one `= ANY` chunk
    identifiers=frozenset(IdentifierType),
    searched_by=lambda settings: frozenset(settings.mapping.subject.match),
)
