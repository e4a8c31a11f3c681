"""Keyed pseudonyms: HMAC-SHA256 under a secret key, never a plain or unkeyed hash.

An unkeyed SHA-256 of an email is reversed by hashing a list of candidate emails; a keyed HMAC is not, as long as the
key stays secret. Two kinds of key serve two purposes: each request's ledger pseudonyms are keyed by that request's
data key (stores.vault), so shredding the request unlinks them; the suppression list (to refuse re-ingestion of an
erased subject) has a long-lived key of its own, kept apart from every other key (stores.suppression).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

from domain.classes import canonical_subject
from domain.model import IdentifierType, Subject


class Pseudonymizer:
    def __init__(self, key: bytes, *, purpose: str) -> None:
        self._key = hmac.new(key, f"erasure pseudonym v1 {purpose}".encode(), hashlib.sha256).digest()

    def pseudonym(self, kind: IdentifierType, value: str) -> str:
        # values are taken exactly as given: a case variant may be another person's address
        message = f"{kind.value}\x00{value.strip()}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def digest(self, document: bytes) -> str:
        """A keyed digest of a whole document (an order): equal documents, equal digests; nothing to guess from."""
        return hmac.new(self._key, b"document\x00" + document, hashlib.sha256).hexdigest()

    def keyed(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def of_subject(self, subject: Subject) -> Iterator[tuple[IdentifierType, str]]:
        for kind in sorted(subject.kinds()):
            for value in subject.values(kind):
                yield kind, self.pseudonym(kind, value)


def subject_pseudonym(pseudonymizer: Pseudonymizer, subject: Subject) -> bytes:
    """A class order's per-request pseudonym of one subject: HMAC-SHA256 under the request's ledger key (the vault's
    `pseudonyms`) over `b"class subject v1\x00"` and the subject's canonical form (domain.classes). 32 raw bytes:
    the leaf of the class's Merkle tree and the sort key of its batches. The only definition of it."""
    return pseudonymizer.keyed(b"class subject v1\x00" + canonical_subject(subject))
