"""Identity resolution and review, as the activities run them: values go to the vault, counts to the ledger.

resolve_request   expand the ordered identifiers through the catalogue's identity sources (domain/resolution.py),
                  seal the result and the near-match candidates, decide again which systems apply, and say what a
                  reviewer must decide (nothing, when the subject is known and nothing is near)
apply_review      merge the candidates a reviewer included, and decide again which systems apply
identity_record   what the certificate and receipts state of both: counts per type, source names, decisions
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from activities.contracts import (
    INCLUDE,
    NEAR_MATCH,
    NOTHING_FOUND,
    ResolveResult,
    ReviewDecision,
    ReviewGroup,
)
from connectors.registry import build_identity_source
from domain.model import IdentifierType, Subject
from domain.resolution import Resolution, resolve
from domain.states import TaskState
from stores.catalogue import Catalogue
from stores.ledger import EventRecord, Ledger
from stores.vault import Vault

RESOLVED = "identity_resolved"
REVIEW_REQUIRED = "review_required"
REVIEW_DECISION = "review_decision"
REVIEW_APPLIED = "review_applied"
NOTHING_FOUND_GROUP = "nothing-found"
NOT_RESOLVED = "the catalogue names no identity source: the identifiers were used as ordered"


def resolve_request(ledger: Ledger, vault: Vault, catalogue: Catalogue, request_id: str, at: datetime) -> ResolveResult:
    if not catalogue.identity_sources:
        return ResolveResult(resolved=False, review=[])
    sources = [
        build_identity_source(spec.name, catalogue.system(spec.system).connector_settings(), spec.table, spec.columns)
        for spec in catalogue.identity_sources
    ]
    resolution = resolve(vault.ordered_subject(request_id), sources)
    groups = _groups(resolution)
    vault.put(request_id, Vault.RESOLVED, _sealed(resolution.subject))
    vault.put(
        request_id,
        Vault.CANDIDATES,
        {
            g.group: {k.value: v for k, v in c.identifiers.items()}
            for g, c in zip(groups, resolution.candidates, strict=False)
        },
    )
    _decide_applicable(ledger, catalogue, request_id, resolution.subject, resolution.sources)
    ledger.record_event(request_id, None, RESOLVED, RESOLVED, at, _resolution_record(resolution))
    if groups:
        detail = {"groups": [g.__dict__ for g in groups]}
        ledger.record_event(request_id, None, REVIEW_REQUIRED, REVIEW_REQUIRED, at, detail)
        ledger.awaiting_review(request_id)
    return ResolveResult(resolved=True, review=groups)


def apply_review(
    ledger: Ledger,
    vault: Vault,
    catalogue: Catalogue,
    request_id: str,
    decisions: Sequence[ReviewDecision],
    at: datetime,
) -> None:
    """Included candidates join the subject: every system then erases and verifies them like exact matches."""
    included = [d.group for d in decisions if d.decision == INCLUDE]
    subject = vault.subject(request_id)
    if included:
        candidates = vault.open(request_id, Vault.CANDIDATES)
        merged = {k: set(subject.values(k)) for k in subject.kinds()}
        for group in included:
            for kind, value in candidates[group].items():
                merged.setdefault(IdentifierType(kind), set()).add(value)
        subject = Subject({k: tuple(sorted(v)) for k, v in merged.items()})
        vault.put(request_id, Vault.RESOLVED, _sealed(subject))
        _decide_applicable(ledger, catalogue, request_id, subject, tuple(s.name for s in catalogue.identity_sources))
    counts = {k.value: len(subject.values(k)) for k in sorted(subject.kinds())}
    ledger.record_event(
        request_id, None, REVIEW_APPLIED, REVIEW_APPLIED, at, {"included": len(included), "identifiers": counts}
    )


def identity_record(events: Sequence[EventRecord]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The resolution (counts and source names) and every review decision, as the certificate states them."""
    resolution: dict[str, Any] = {"sources": [], "note": NOT_RESOLVED}
    reviews = []
    for event in events:
        if event.kind == RESOLVED:
            resolution = dict(event.detail)
        elif event.kind == REVIEW_DECISION:
            reviews.append({**event.detail, "at": event.at.isoformat()})
    return resolution, sorted(reviews, key=lambda r: str(r.get("group")))


def receipt_notes(events: Sequence[EventRecord]) -> list[str]:
    """The same, in words, for every system's receipt: which identifiers it ran with, and who decided what."""
    resolution, reviews = identity_record(events)
    if not resolution.get("sources"):
        notes = [f"identity: {NOT_RESOLVED}"]
    else:
        found = "; ".join(
            f"{source}: {_counts(types) or 'nothing'}" for source, types in resolution.get("found_by", {}).items()
        )
        notes = [
            f"identity: resolved in {resolution.get('rounds')} round(s) to {_counts(resolution.get('identifiers', {}))}"
            f" (ordered {_counts(resolution.get('ordered', {}))}; found by {found})"
        ]
    notes += [
        f"review {r.get('group')} ({r.get('kind')}{', ' + r['rules'] if r.get('rules') else ''}): "
        f"{r.get('decision')} by {r.get('reviewer')} at {r.get('at')}: {r.get('reason')}"
        for r in reviews
    ]
    return notes


def _groups(resolution: Resolution) -> list[ReviewGroup]:
    groups = [
        ReviewGroup(
            group=f"near-{n}",
            kind=NEAR_MATCH,
            source=c.source,
            rules={k.value: r.value for k, r in sorted(c.rules.items())},
            counts={k.value: 1 for k in sorted(c.identifiers)},
        )
        for n, c in enumerate(resolution.candidates, start=1)
    ]
    if not resolution.known:
        groups.append(ReviewGroup(NOTHING_FOUND_GROUP, NOTHING_FOUND, "", {}, {}))
    return groups


def _decide_applicable(
    ledger: Ledger, catalogue: Catalogue, request_id: str, subject: Subject, sources: Sequence[str]
) -> None:
    """A system is not applicable only when the identity sources were searched and hold no type it is keyed by."""
    for task in ledger.tasks(request_id):
        if task.state not in (TaskState.PLANNED, TaskState.NOT_APPLICABLE):
            continue
        keyed_by = catalogue.system(task.system).identifiers
        applies = bool(subject.kinds() & set(keyed_by))
        detail = (
            ""
            if applies
            else f"the identity sources ({', '.join(sources)}) hold no identifier of a type it is keyed by "
            f"({', '.join(sorted(k.value for k in keyed_by))})"
        )
        ledger.applicable(request_id, task.system, applies=applies, detail=detail)


def _resolution_record(resolution: Resolution) -> dict[str, Any]:
    return {
        "sources": list(resolution.sources),
        "ordered": {k.value: n for k, n in sorted(resolution.ordered.items())},
        "found_by": {s: {k.value: n for k, n in types.items()} for s, types in resolution.found_by.items()},
        "identifiers": {k.value: len(resolution.subject.values(k)) for k in sorted(resolution.subject.kinds())},
        "rounds": resolution.rounds,
        "known": resolution.known,
        "near_matches": len(resolution.candidates),
        "ignored": resolution.ignored,
    }


def _sealed(subject: Subject) -> dict[str, Any]:
    return {k.value: list(v) for k, v in subject.identifiers.items()}


def _counts(types: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in types.items())
