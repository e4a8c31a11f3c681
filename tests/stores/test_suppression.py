"""The suppression list answers for an erased subject's identifiers and for no look-alike neighbour."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from domain.model import IdentifierType, Subject
from stores.db import migrate, open_pool
from stores.pseudonyms import Pseudonymizer
from stores.suppression import SuppressionList


@pytest.fixture
def suppression(database_url: str, schema: str) -> Iterator[SuppressionList]:
    migrate(database_url, schema)
    pool = open_pool(database_url, schema)
    yield SuppressionList(pool, Pseudonymizer(b"k" * 32, purpose="suppression"))
    pool.close()


def test_an_erased_subject_is_suppressed_and_its_neighbours_are_not(suppression: SuppressionList) -> None:
    suppression.add(Subject.of(email=["Mia.Child@example.org"], user_id=["1"]))
    suppression.add(Subject.of(email=["Mia.Child@example.org"], user_id=["1"]))  # a retried seal: no error

    assert suppression.contains(IdentifierType.EMAIL, "Mia.Child@example.org")
    assert suppression.contains(IdentifierType.USER_ID, "1")
    assert not suppression.contains(IdentifierType.EMAIL, "mia.child@example.org")  # another person's address
    assert not suppression.contains(IdentifierType.USER_ID, "10")
    assert not suppression.contains(IdentifierType.USERNAME, "1")  # the same value as another kind
