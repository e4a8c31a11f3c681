"""Normalisation rules and the closure of identity resolution, on sources held in memory (pure domain code)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from domain.errors import TerminalError
from domain.identifiers import NearRule, near_rule
from domain.model import IdentifierType, Subject
from domain.resolution import Lookup, Row, resolve

E, P, U, D = IdentifierType.EMAIL, IdentifierType.PHONE, IdentifierType.USER_ID, IdentifierType.DEVICE_ID


@pytest.mark.parametrize(
    ("kind", "ordered", "found", "rule"),
    [
        (E, "Sunny.Day+clips@example.org", "Sunny.Day+clips@example.org", None),  # exact: not a near-match
        (E, "Sunny.Day+clips@example.org", "sunny.day+clips@example.org", NearRule.LETTER_CASE),
        (E, "Sunny.Day+clips@example.org", "Sunny.Day@example.org", NearRule.PLUS_TAG),
        (E, "Sunny.Day@example.org", "sunny.day+other@EXAMPLE.org", NearRule.PLUS_TAG),
        (E, "sunny.day@example.org", "sunnyday@example.org", None),  # no provider rules: another mailbox
        (E, "sunny@example.org", "sunny@example.com", None),
        (P, "+44 7700 900123", "+447700900123", NearRule.PHONE_FORMAT),
        (P, "+44 7700 900123", "+44 7700 900124", None),
        (U, "1", "01", None),  # ids have no normalisation
    ],
)
def test_near_rules(kind: IdentifierType, ordered: str, found: str, rule: NearRule | None) -> None:
    assert near_rule(kind, ordered, found) is rule


@dataclass
class Table:
    """A source in memory: exact equality on any column, near by the rule of the column's type."""

    name: str
    rows: list[Row]

    def lookup(self, subject: Subject) -> Lookup:
        exact = [r for r in self.rows if any(v in subject.values(k) for k, v in r.items())]
        near = [
            r
            for r in self.rows
            if r not in exact and any(near_rule(k, o, v) for k, v in r.items() for o in subject.values(k))
        ]
        return Lookup(tuple(exact), tuple(near))


def test_resolution_closes_across_sources_and_keeps_near_matches_apart() -> None:
    accounts = Table("accounts", [{U: "1", E: "a+x@example.org"}, {U: "10", E: "A+x@example.org"}])
    devices = Table("devices", [{U: "1", D: "dev-1"}, {U: "1", D: "dev-2"}, {U: "11", D: "dev-3"}])
    resolution = resolve(Subject.of(email=["a+x@example.org"]), [accounts, devices])
    assert resolution.subject.identifiers == {E: ("a+x@example.org",), U: ("1",), D: ("dev-1", "dev-2")}
    assert resolution.found_by == {"accounts": {E: 1, U: 1}, "devices": {D: 2, U: 1}}
    assert resolution.rounds == 2  # accounts then devices in one round (email -> user 1 -> devices); then nothing new
    assert [(c.source, c.identifiers[U], dict(c.rules)) for c in resolution.candidates] == [
        ("accounts", "10", {E: NearRule.LETTER_CASE})
    ]
    assert resolution.known


def test_a_subject_no_source_holds_is_not_known() -> None:
    resolution = resolve(Subject.of(email=["nobody@example.org"]), [Table("accounts", [{U: "1", E: "a@example.org"}])])
    assert not resolution.known and resolution.candidates == () and resolution.rounds == 1


def test_malformed_values_in_a_source_are_never_used() -> None:
    accounts = Table("accounts", [{U: "1", E: "a@example.org", P: " +44 7700 900123"}])
    resolution = resolve(Subject.of(user_id=["1"]), [accounts])
    assert resolution.subject.kinds() == {U, E} and resolution.ignored == 1


def test_a_chain_that_does_not_close_is_a_terminal_error() -> None:
    chain = Table(
        "chain", [{U: str(n), D: f"dev-{n + 1}"} for n in range(10)] + [{D: f"dev-{n}", U: str(n)} for n in range(10)]
    )
    with pytest.raises(TerminalError, match="did not close within 2 rounds"):
        resolve(Subject.of(user_id=["0"]), [chain], max_rounds=2)
