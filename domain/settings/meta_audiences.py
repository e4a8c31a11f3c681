"""Settings of the `meta_audiences` connector: Graph API version, secrets' variables, audiences and their schemas."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from domain.model import IdentifierType
from domain.settings.base import ENV_NAME, Capabilities, KindSpec, StrictModel

# Keys of a multi-key schema ("FILE_IMPORTED.MULTI_HASHES" audiences); EMAIL and PHONE travel as SHA-256 digests,
# MADID and EXTERN_ID unhashed, as Meta documents.
SchemaKey = Literal["EMAIL", "PHONE", "MADID", "EXTERN_ID"]
# Single-key schemas ("FILE_IMPORTED.HASHES_OR_USER_IDS" audiences), each a flat list of one kind of value.
SingleSchema = Literal["EMAIL_SHA256", "PHONE_SHA256", "MOBILE_ADVERTISER_ID"]
IDENTIFIER_BY_KEY: dict[SchemaKey | SingleSchema, IdentifierType] = {
    "EMAIL": IdentifierType.EMAIL,
    "PHONE": IdentifierType.PHONE,
    "MADID": IdentifierType.ADVERTISING_ID,
    "EXTERN_ID": IdentifierType.USER_ID,
    "EMAIL_SHA256": IdentifierType.EMAIL,
    "PHONE_SHA256": IdentifierType.PHONE,
    "MOBILE_ADVERTISER_ID": IdentifierType.ADVERTISING_ID,
}


def _as_text(value: Any) -> Any:
    """A YAML catalogue writes an unquoted audience id as a number; its digits are what Meta means."""
    return str(value) if type(value) is int else value


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


def _unique_audiences(audiences: list[MetaAudience]) -> list[MetaAudience]:
    _unique([audience.id for audience in audiences])
    return audiences


class MetaConnection(StrictModel):
    base_url: str = "https://graph.facebook.com"
    # Graph versions expire (v24.0 on 2026-11-10, v25.0 on 2027-02-23): an expired one is refused with #2635
    api_version: Annotated[str, Field(pattern=r"^v\d+\.\d+$")] = "v25.0"
    access_token_env: Annotated[str, Field(pattern=ENV_NAME)]  # names the variable holding the access token
    # names the variable holding the app secret, for apps with "Require App Secret": calls then carry appsecret_proof
    app_secret_env: Annotated[str, Field(pattern=ENV_NAME)] | None = None
    # names the variable holding the host instead of base_url (an emulator whose port differs per environment)
    base_url_env: Annotated[str, Field(pattern=ENV_NAME)] | None = None

    @model_validator(mode="after")
    def _one_base_url(self) -> Self:
        if self.base_url_env is not None and "base_url" in self.model_fields_set:
            raise ValueError("give base_url or base_url_env, not both")
        return self


class MetaAudience(StrictModel):
    # numeric, because it becomes a path segment
    id: Annotated[str, BeforeValidator(_as_text), Field(pattern=r"^\d+$")]
    # the kind the audience was built with: Meta refuses a payload of the other kind (#2650)
    schema_keys: Annotated[
        Annotated[list[SchemaKey], Field(min_length=1), AfterValidator(_unique)] | SingleSchema,
        Field(alias="schema"),  # "schema" would shadow a pydantic attribute; the catalogue writes `schema:`
    ]


class MetaMapping(StrictModel):
    audiences: Annotated[list[MetaAudience], Field(min_length=1), AfterValidator(_unique_audiences)]
    # calling code for phones written in national format, e.g. "44"; see connectors/hashing.py
    default_country_code: Annotated[str, Field(pattern=r"^[1-9]\d{0,2}$")] | None = None


class MetaSettings(StrictModel):
    connection: MetaConnection
    mapping: MetaMapping


def _searched_by(settings: MetaSettings) -> frozenset[IdentifierType]:
    keys = [[a.schema_keys] if isinstance(a.schema_keys, str) else a.schema_keys for a in settings.mapping.audiences]
    return frozenset(IDENTIFIER_BY_KEY[key] for schema in keys for key in schema)


KIND = KindSpec(
    settings_model=MetaSettings,
    capabilities=Capabilities(
        asynchronous=True,  # erase returns the removal sessions; Meta applies them later
        verifiable=False,  # no membership lookup: Meta's report that a session finished is the evidence
        # Each call carries up to 10,000 rows, so a subject is one call per audience; the ad account's business use
        # case quota is shared with the platform's own audience syncs, which should keep the headroom.
        rate_per_second=2.0,
        # "usually within 24 hours", longer for many records: poll a few times a day, escalate after two days
        poll_every=timedelta(hours=4),
        service_time=timedelta(hours=48),
        deadline=timedelta(days=7),
        batch_size=10000,  # rows per removal call
    ),
    identifiers=frozenset(IDENTIFIER_BY_KEY.values()),
    searched_by=lambda settings: _searched_by(settings),
)
