"""Normalising and hashing identifiers the way Meta matches them.

Pure functions, no I/O. A wrong normalisation is not a cosmetic bug: the hash then names nobody (the removal silently
misses the child) or names somebody else (a neighbour is removed), so each rule follows the vendor's document:

- email: trimmed, trailing dots removed, lower-cased;
- phone: digits only, country code first, no "+" and no leading zeros;
- mobile advertiser id (MADID: IDFA or Android advertising id): sent unhashed, lower-case, hyphens kept.

Phones written without "+" or "00" are read as national numbers of `default_country_code` (digits, e.g. "44"): one
national trunk "0" is dropped (for "1", an 11-digit number's leading trunk "1") except where the zero is part of the
number (Italy, San Marino, Vatican City). Identifiers are best kept in E.164 at the source; this only covers the
common national forms. Errors never quote the value.
"""

from __future__ import annotations

import hashlib
import re

# Calling codes whose national numbers keep their leading zero after the country code (+39 06 ... is Rome).
_ZERO_IS_PART_OF_NUMBER = frozenset({"39", "378", "379"})
_NANP = "1"
_NON_DIGITS = re.compile(r"[^0-9]")
_TRAILING_DOTS_AND_SPACE = re.compile(r"[\s.]+$")
_COUNTRY_CODE = re.compile(r"[1-9][0-9]{0,2}")
_ADVERTISING_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def sha256_hex(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes, the form both vendors expect."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def meta_email(raw: str) -> str:
    normalised = _TRAILING_DOTS_AND_SPACE.sub("", raw.strip()).lower()
    _require_email(normalised)
    return normalised


def meta_phone(raw: str, default_country_code: str | None) -> str:
    return _international_digits(raw, default_country_code)


def meta_madid(raw: str) -> str:
    normalised = raw.strip().lower()
    if not _ADVERTISING_ID.fullmatch(normalised):
        raise ValueError("advertising id is not a UUID (8-4-4-4-12 hex digits)")
    return normalised


def _require_email(value: str) -> None:
    local, at, domain = value.rpartition("@")
    if not (at and local and domain):
        raise ValueError("email has no local part and domain around an '@'")


def _international_digits(raw: str, default_country_code: str | None) -> str:
    """Country code followed by the subscriber number, digits only."""
    text = raw.strip()
    # "+44 (0)20 ..." shows the national trunk zero in brackets; it is not dialled after the country code
    digits = _NON_DIGITS.sub("", text.replace("(0)", ""))
    if text.startswith("+"):
        international = digits
    elif digits.startswith("00"):  # the international call prefix used in most of the world
        international = digits[2:]
    else:
        international = _from_national(digits, default_country_code)
    international = international.lstrip("0")
    if not 8 <= len(international) <= 15:  # E.164 allows at most 15 digits; shorter than 8 is no phone number
        raise ValueError(f"phone number has {len(international)} digits with its country code, expected 8 to 15")
    return international


def _from_national(digits: str, country_code: str | None) -> str:
    if country_code is None:
        raise ValueError("phone number has no country code and no default country code is configured")
    if not _COUNTRY_CODE.fullmatch(country_code):
        raise ValueError("default country code must be 1 to 3 digits without '+'")
    if (
        country_code == _NANP
        and len(digits) == 11
        and digits.startswith("1")
        or country_code not in _ZERO_IS_PART_OF_NUMBER
        and digits.startswith("0")
    ):
        digits = digits[1:]
    return country_code + digits
