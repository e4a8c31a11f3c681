"""Settings of the `s3` connector: buckets and the key templates that hold a subject's objects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import Field, field_validator

from domain.model import IdentifierType
from domain.settings.base import ENV_NAME, Capabilities, KindSpec, StrictModel


class S3Connection(StrictModel):
    endpoint_url_env: str | None = Field(default=None, pattern=ENV_NAME)
    region: str = "us-east-1"


class BucketMapping(StrictModel):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    keys: list[str] = Field(min_length=1)

    @field_validator("keys")
    @classmethod
    def _templates(cls, value: list[str]) -> list[str]:
        for template in value:
            parse_template(template)
        return value


class S3Mapping(StrictModel):
    buckets: list[BucketMapping] = Field(min_length=1)
    bypass_governance_retention: bool = False


class S3Settings(StrictModel):
    connection: S3Connection = S3Connection()
    mapping: S3Mapping


@dataclass(frozen=True)
class KeyTemplate:
    text: str
    identifier: IdentifierType
    is_prefix: bool

    def render(self, value: str) -> str:
        return self.text.replace("{" + self.identifier.value + "}", value)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def parse_template(text: str) -> KeyTemplate:
    """One placeholder, written exactly `{type}`: a format spec, conversion or index (`{user_id:}`, `{user_id!s}`,
    `{user_id[0]}`) would leave the placeholder unrendered, a constant key that searches nothing of the subject."""
    placeholders = _PLACEHOLDER.findall(text)
    if len(placeholders) != 1 or text.count("{") != 1 or text.count("}") != 1:
        raise ValueError(f"key template {text!r} must hold exactly one identifier placeholder")
    try:
        identifier = IdentifierType(placeholders[0])
    except ValueError:
        raise ValueError(
            f"key template {text!r}: expected a placeholder written exactly {{type}} with a known identifier type"
        ) from None
    is_prefix = text.endswith("/")
    if is_prefix and "/" not in text.split("}", 1)[1]:
        raise ValueError(f"key template {text!r}: a prefix must end with '/' after the placeholder")
    return KeyTemplate(text=text, identifier=identifier, is_prefix=is_prefix)


KIND = KindSpec(
    settings_model=S3Settings,
    capabilities=Capabilities(asynchronous=False, verifiable=True, batch_size=1000),  # DeleteObjects: 1,000 keys
    identifiers=frozenset(IdentifierType),
    searched_by=lambda settings: frozenset(
        parse_template(t).identifier for b in settings.mapping.buckets for t in b.keys
    ),
)
