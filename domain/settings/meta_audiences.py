"""Settings of the `meta_audiences` connector: Graph API version, token variable, audiences and their schema."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from domain.model import IdentifierType
from domain.settings.base import Capabilities, KindSpec, StrictModel

SchemaKey = Literal["EMAIL", "PHONE"]
IDENTIFIER_BY_KEY: dict[SchemaKey, IdentifierType] = {"EMAIL": IdentifierType.EMAIL, "PHONE": IdentifierType.PHONE}


def _as_text(value: Any) -> Any:
    """A YAML catalogue writes an unquoted audience id as a number; its digits are what Meta means."""
    return str(value) if type(value) is int else value


def _unique(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


class MetaConnection(StrictModel):
    base_url: str = "https://graph.facebook.com"
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d+$")] = "v21.0"
    access_token_env: str  # names the environment variable holding a system user's access token


class MetaMapping(StrictModel):
    # numeric, because they become path segments
    audience_ids: Annotated[
        list[Annotated[str, BeforeValidator(_as_text), Field(pattern=r"^\d+$")]],
        Field(min_length=1),
        AfterValidator(_unique),
    ]
    # "schema" would shadow a pydantic attribute, hence the alias; the catalogue writes `schema:`
    schema_keys: Annotated[list[SchemaKey], Field(alias="schema", min_length=1), AfterValidator(_unique)]
    # calling code for phones written in national format, e.g. "44"; see connectors/hashing.py
    default_country_code: Annotated[str, Field(pattern=r"^[1-9]\d{0,2}$")] | None = None


class MetaSettings(StrictModel):
    connection: MetaConnection
    mapping: MetaMapping


KIND = KindSpec(
    settings_model=MetaSettings,
    capabilities=Capabilities(
        asynchronous=False,
        verifiable=False,
        # Each call carries up to 10,000 rows, so a subject is one call per audience; the ad account's business use
        # case quota is shared with the platform's own audience syncs, which should keep the headroom.
        rate_per_second=2.0,
    ),
    identifiers=frozenset(IDENTIFIER_BY_KEY.values()),
)
