"""Normalisation before hashing: awkward inputs, look-alike neighbours, and idempotence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import hashing

UK = "447700900123"


def test_sha256_is_lowercase_hex_of_utf8() -> None:
    assert hashing.sha256_hex("test@example.com") == "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Child.Name@Example.COM  ", "child.name@example.com"),
        ("child@example.com.", "child@example.com"),
        ("child@example.com. .\t", "child@example.com"),
        ("CHILD+news@example.com", "child+news@example.com"),  # plus tags are another address: kept
    ],
)
def test_meta_email(raw: str, expected: str) -> None:
    assert hashing.meta_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+44 7700 900123", None, UK),
        ("07700 900123", "44", UK),
        ("0044 7700 900123", None, UK),
        ("+44 (0)7700 900123", None, UK),
        ("+44 7700 900123", "1", UK),  # an explicit country code wins over the default
        ("(555) 010-9999", "1", "15550109999"),
        ("1 (555) 010-9999", "1", "15550109999"),
        ("+1 555.010.9999", None, "15550109999"),
        ("06 1234 5678", "39", "390612345678"),  # Italian numbers keep their zero
    ],
)
def test_meta_phone(raw: str, country: str | None, expected: str) -> None:
    assert hashing.meta_phone(raw, country) == expected


def test_neighbours_stay_apart() -> None:
    assert hashing.meta_phone("+44 7700 900123", None) != hashing.meta_phone("+44 7700 900124", None)
    assert hashing.meta_email("child@example.com") != hashing.meta_email("child+news@example.com")
    assert hashing.meta_email("Child@Example.com") == hashing.meta_email("child@example.com")  # same address at Meta


@pytest.mark.parametrize(
    ("raw", "country", "problem"),
    [
        ("07700 900123", None, "no default country code"),
        ("07700 900123", "+44", "1 to 3 digits"),
        ("+44 12", None, "expected 8 to 15"),
        ("+44 7700 900123 4567 89", None, "expected 8 to 15"),
        ("no digits here", "44", "expected 8 to 15"),
    ],
)
def test_unusable_phones_are_refused_without_quoting_them(raw: str, country: str | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        hashing.meta_phone(raw, country)
    assert "7700" not in str(caught.value)


@pytest.mark.parametrize("raw", ["child.example.com", "@example.com", "child@", "  "])
def test_non_emails_are_refused_without_quoting_them(raw: str) -> None:
    with pytest.raises(ValueError, match="email") as caught:
        hashing.meta_email(raw)
    assert "child" not in str(caught.value)


_decorated_emails = st.tuples(
    st.sampled_from(["", " ", "\t"]), st.emails(), st.sampled_from(["", ".", ". ", " .."])
).map(lambda parts: parts[0] + parts[1].upper() + parts[2])
_phones = st.tuples(
    st.sampled_from(["+44 ", "0044 ", "0", "+1 ", "+39 "]),
    st.lists(st.sampled_from("0123456789 -()."), min_size=9, max_size=14).map("".join),
)


@given(_decorated_emails)
def test_email_normalisation_is_idempotent(raw: str) -> None:
    once = hashing.meta_email(raw)
    assert hashing.meta_email(once) == once


@given(_phones)
def test_phone_normalisation_is_idempotent(parts: tuple[str, str]) -> None:
    raw = "".join(parts)
    try:
        meta = hashing.meta_phone(raw, "44")
    except ValueError:
        return  # too short or too long: refused, never guessed
    assert hashing.meta_phone("+" + meta, None) == meta  # Meta's form drops the "+", which marks it international
