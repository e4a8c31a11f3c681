"""Identity resolution: the order's identifiers expanded through the catalogue's identity sources until closed.

An identity source (the application's users table, say) holds rows that tie identifiers together: a row found by
the order's email gives the user id, the phone, the device ids the other systems are keyed by. Rows are found by
exact equality only (the source's own, so a `citext` column decides case itself); rows that equal a known
identifier only after normalisation (domain.identifiers) are near-matches: candidates a person must decide on, never
merged on their own. A subject that no source knows is a finding too. Values stay here and in the vault: what leaves
is counts per type, source names and rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from domain.errors import TerminalError
from domain.identifiers import NearRule, near_rule
from domain.identifiers import problem as identifier_problem
from domain.model import IdentifierType, Subject

MAX_ROUNDS = 4  # a subject's identifiers close in two rounds in practice; a chain longer than this is a bad mapping

Row = Mapping[IdentifierType, str]  # one source row's identifiers, by type (a column may be empty)


@dataclass(frozen=True)
class Lookup:
    """What one source holds for a set of identifiers: rows equal exactly, and rows equal only after normalisation."""

    exact: tuple[Row, ...]
    near: tuple[Row, ...]


class IdentitySource(Protocol):
    @property
    def name(self) -> str: ...

    def lookup(self, subject: Subject) -> Lookup: ...


@dataclass(frozen=True)
class Candidate:
    """A near-match: a row of `source` whose identifiers equal the subject's only under `rules`."""

    source: str
    identifiers: Row
    rules: Mapping[IdentifierType, NearRule]


@dataclass(frozen=True)
class Resolution:
    subject: Subject  # the ordered identifiers and every identifier the sources tied to them
    ordered: Mapping[IdentifierType, int]  # counts per type, as ordered
    found_by: Mapping[str, Mapping[IdentifierType, int]]  # per source: how many identifiers of each type it holds
    rounds: int
    candidates: tuple[Candidate, ...]
    ignored: int = 0  # values a source holds that are not well-formed identifiers of their type (never used)
    sources: tuple[str, ...] = field(default=())

    @property
    def known(self) -> bool:
        """Some source holds the subject: at least one row matched exactly."""
        return any(self.found_by.values())


def resolve(subject: Subject, sources: Sequence[IdentitySource], max_rounds: int = MAX_ROUNDS) -> Resolution:
    """Look the subject up in every source, add what the rows tie to it, and repeat until nothing new appears."""
    known: dict[IdentifierType, set[str]] = {k: set(subject.values(k)) for k in subject.kinds()}
    held: dict[str, dict[IdentifierType, set[str]]] = {s.name: {} for s in sources}
    exact_rows: set[tuple[str, tuple[tuple[IdentifierType, str], ...]]] = set()
    ignored: set[tuple[IdentifierType, str]] = set()
    last: dict[str, Lookup] = {}
    rounds, grew = 0, True
    while grew:
        if rounds == max_rounds:
            raise TerminalError(
                f"identity resolution did not close within {max_rounds} rounds: a source ties too many identifiers "
                "together; check the catalogue's identity_sources"
            )
        rounds, grew = rounds + 1, False
        for source in sources:
            last[source.name] = lookup = source.lookup(_subject(known))
            for row in lookup.exact:
                exact_rows.add((source.name, _key(row)))
                for kind, value in row.items():
                    if identifier_problem(kind, value) is not None:
                        ignored.add((kind, value))
                        continue
                    held[source.name].setdefault(kind, set()).add(value)
                    if value not in known.setdefault(kind, set()):
                        known[kind].add(value)
                        grew = True
    return Resolution(
        subject=_subject(known),
        ordered={k: len(subject.values(k)) for k in subject.kinds()},
        found_by={name: {k: len(v) for k, v in sorted(types.items())} for name, types in held.items()},
        rounds=rounds,
        candidates=_candidates(sources, last, exact_rows, known),
        ignored=len(ignored),
        sources=tuple(s.name for s in sources),
    )


def _candidates(
    sources: Sequence[IdentitySource],
    last: Mapping[str, Lookup],
    exact_rows: set[tuple[str, tuple[tuple[IdentifierType, str], ...]]],
    known: Mapping[IdentifierType, set[str]],
) -> tuple[Candidate, ...]:
    """Rows the last round found only after normalisation, each with the rule that ties it to the subject."""
    found: list[Candidate] = []
    for source in sources:
        seen: set[tuple[tuple[IdentifierType, str], ...]] = set()
        for row in sorted(last[source.name].near, key=_key):
            key = _key(row)
            if (source.name, key) in exact_rows or key in seen:
                continue
            seen.add(key)
            rules = {}
            for kind, value in row.items():
                matched = [r for ordered in sorted(known.get(kind, ())) if (r := near_rule(kind, ordered, value))]
                if matched and value not in known.get(kind, ()):
                    rules[kind] = min(matched, key=list(NearRule).index)  # the narrowest rule that ties them
            if rules:
                found.append(Candidate(source.name, dict(row), rules))
    return tuple(found)


def _subject(known: Mapping[IdentifierType, set[str]]) -> Subject:
    return Subject({k: tuple(sorted(v)) for k, v in known.items() if v})


def _key(row: Row) -> tuple[tuple[IdentifierType, str], ...]:
    return tuple(sorted(row.items()))
