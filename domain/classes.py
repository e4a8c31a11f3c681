"""Class orders: one order, many subjects, cut into batches that anyone holding the sealed list can derive again.

The contract (issue 13; `childproof` builds per-child proofs on it):

- A class order's subjects come from a file (CSV, one column per identifier type) or from a class the catalogue
  declares on an identity source (a parameterised, read-only query with a cutoff date from the order), resolved once
  at a recorded snapshot time.
- Each subject has one canonical form (`canonical_subject`): its identifier values by type, sorted, as compact JSON.
  Its per-request pseudonym is the request's Pseudonymizer over that form (`stores.pseudonyms.subject_pseudonym`).
- The resolved list is sealed in the vault under the request's key, sorted bytewise by pseudonym. The ledger keeps
  only the subject count and the RFC 9162 Merkle root over the sorted pseudonyms (leaves = the raw 32 bytes).
- For each system, the sorted list is cut into consecutive chunks of that connector's batch size
  (`Capabilities.batch_size`, or the catalogue's smaller `batch_size`): batch `i` holds subjects
  `[i * size, (i + 1) * size)`. A batch's receipt names the Merkle root of its subjects' pseudonyms, in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from domain.model import IdentifierType, Subject


def canonical_subject(subject: Subject) -> bytes:
    """One subject's identifiers as canonical bytes: types sorted, each type's values sorted, compact UTF-8 JSON."""
    values = {kind.value: sorted(subject.values(kind)) for kind in sorted(subject.kinds())}
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def subject_from_canonical(data: bytes) -> Subject:
    return Subject({IdentifierType(k): tuple(v) for k, v in json.loads(data.decode("utf-8")).items()})


def batch_count(subjects: int, size: int) -> int:
    if size < 1:
        raise ValueError(f"batch size: expected at least 1, got {size}")
    return -(-subjects // size)


def batch_slice(index: int, size: int) -> slice:
    """Which subjects of the pseudonym-sorted list batch `index` holds."""
    return slice(index * size, (index + 1) * size)


def merged(subjects: Iterable[Subject], kinds: Iterable[IdentifierType]) -> Subject:
    """A batch as one subject of many values per type (the connectors search `= ANY` of them), only the given types.

    Each value is matched exactly, as in a single request, so a batch reaches exactly what its subjects would reach
    one by one."""
    wanted = frozenset(kinds)
    values: dict[IdentifierType, set[str]] = {}
    for subject in subjects:
        for kind in subject.kinds() & wanted:
            values.setdefault(kind, set()).update(subject.values(kind))
    return Subject({kind: tuple(sorted(v)) for kind, v in values.items()})


def sort_by_pseudonym(pairs: Sequence[tuple[bytes, Subject]]) -> list[tuple[bytes, Subject]]:
    return sorted(pairs, key=lambda pair: pair[0])
