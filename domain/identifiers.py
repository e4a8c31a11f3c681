"""What a well-formed identifier of each type looks like, checked as written: nothing is trimmed or rewritten.

An order's identifiers are matched exactly by the systems, so a value that only looks right (a trailing space, a
Cyrillic letter in a Latin address, a phone without its country code) would match nothing and be certified as
erased. Such values are refused at intake instead. Each check returns the problem, or None when the value is sound.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from enum import StrEnum

from domain.model import IdentifierType

# RFC 5322 dot-atom local part, letters of any script allowed (RFC 6531); a domain of letter-digit-hyphen labels
_LOCAL = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(\.[\w!#$%&'*+/=?^`{|}~-]+)*")
_LABEL = re.compile(r"[^\W_]([\w-]{0,61}[^\W_])?")
_PHONE_LAYOUT = re.compile(r"[ ().-]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TOKEN = re.compile(r"\S+")
# Japanese writes one name in three scripts; any other mixture in one identifier is a look-alike
_JAPANESE = {"CJK", "HIRAGANA", "KATAKANA"}


def problem(kind: IdentifierType, value: str) -> str | None:
    """Why `value` is not a usable identifier of type `kind`, or None."""
    if not value.strip():
        return "must not be empty"
    if value != value.strip():
        return "must not begin or end with whitespace (it is matched exactly, never trimmed)"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Cn") for ch in value):
        return "must not contain control, invisible or unassigned characters"
    if len(_scripts(value)) > 1:
        return "mixes letters of different scripts (a look-alike letter?)"
    if kind is IdentifierType.EMAIL:
        return _email(value)
    if kind is IdentifierType.PHONE:
        return _phone(value)
    if kind is IdentifierType.ADVERTISING_ID:
        return _advertising_id(value)
    if not _TOKEN.fullmatch(value):
        return f"a {kind.value} must not contain whitespace"
    return None


def _email(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or len(value) > 254
        or len(local) > 64
        or not _LOCAL.fullmatch(local)
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        return "an email must look like name@domain.tld"
    return None


def _phone(value: str) -> str | None:
    if not _E164.fullmatch(_PHONE_LAYOUT.sub("", value)):
        return "a phone number must be E.164: '+', the country code and number, 8 to 15 digits (spaces allowed)"
    return None


def _advertising_id(value: str) -> str | None:
    """Apple's IDFA and Google's advertising id are both UUIDs."""
    try:
        uuid.UUID(value)
    except ValueError:
        return "an advertising id must be a UUID (IDFA or Google advertising id)"
    return None if len(value) == 36 else "an advertising id must be a UUID in its 36-character form"


def _scripts(value: str) -> set[str]:
    scripts = set()
    for ch in value:
        if unicodedata.category(ch).startswith("L"):
            script = unicodedata.name(ch, "UNKNOWN").split(" ")[0]
            scripts.add("JAPANESE" if script in _JAPANESE else script)
    return scripts


# -- normalisation: what counts as a near-match of an identifier -------------------------------------------------


class NearRule(StrEnum):
    """Why a value is a near-match of an ordered one: equal after the type's normalisation, yet not exactly equal.

    email  trim and lower-case the whole address (LETTER_CASE); then also drop the local part's `+tag` (PLUS_TAG)
    phone  the same E.164 number written with other spaces, dots, dashes or brackets (PHONE_FORMAT)
    Other types have no normalisation: only exact matches count. Provider rules (Gmail's ignored dots) are not
    applied: they hold for one provider only, and an address of another provider with a dot is another person.
    """

    LETTER_CASE = "letter_case"
    PLUS_TAG = "plus_tag"
    PHONE_FORMAT = "phone_format"


NORMALISED = frozenset({IdentifierType.EMAIL, IdentifierType.PHONE})  # the types that have near-matches
_PLUS_TAG = re.compile(r"\+[^@]*@")


def folded_email(value: str) -> str:
    return value.strip().lower()


def mailbox(value: str) -> str:
    """The address trimmed, lower-cased and without its plus tag: the widest form a near-match is searched by."""
    return _PLUS_TAG.sub("@", folded_email(value), count=1)


def e164(value: str) -> str:
    return _PHONE_LAYOUT.sub("", value.strip())


def near_key(kind: IdentifierType, value: str) -> str | None:
    """The normal form near-matches of `value` share, or None for a type without normalisation."""
    if kind is IdentifierType.EMAIL:
        return mailbox(value)
    if kind is IdentifierType.PHONE:
        return e164(value)
    return None


def near_rule(kind: IdentifierType, ordered: str, found: str) -> NearRule | None:
    """The narrowest rule under which `found` equals `ordered`; None if they are equal exactly, or unrelated."""
    if found == ordered:
        return None
    if kind is IdentifierType.EMAIL:
        if folded_email(found) == folded_email(ordered):
            return NearRule.LETTER_CASE
        return NearRule.PLUS_TAG if mailbox(found) == mailbox(ordered) else None
    if kind is IdentifierType.PHONE:
        return NearRule.PHONE_FORMAT if e164(found) == e164(ordered) else None
    return None
