"""The suppression list answers for an erased subject's identifiers and for no look-alike neighbour; it holds no
link to a request, and its production key is stored only wrapped by KMS (moto's server)."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from psycopg_pool import ConnectionPool

from domain.model import IdentifierType, Subject
from stores.db import migrate, open_pool
from stores.suppression import SuppressionList, wrapped_key
from stores.vault import KmsMasterKey


@pytest.fixture
def pool(database_url: str, schema: str) -> Iterator[ConnectionPool]:
    migrate(database_url, schema)
    pool = open_pool(database_url, schema)
    yield pool
    pool.close()


def test_an_erased_subject_is_suppressed_and_its_neighbours_are_not(pool: ConnectionPool) -> None:
    suppression = SuppressionList(pool, b"k" * 32)
    suppression.add(Subject.of(email=["Mia.Child@example.org"], user_id=["1"]))
    suppression.add(Subject.of(email=["Mia.Child@example.org"], user_id=["1"]))  # a retried seal: no error

    assert suppression.contains(IdentifierType.EMAIL, "Mia.Child@example.org")
    assert suppression.contains(IdentifierType.USER_ID, "1")
    assert not suppression.contains(IdentifierType.EMAIL, "mia.child@example.org")  # another person's address
    assert not suppression.contains(IdentifierType.USER_ID, "10")
    assert not suppression.contains(IdentifierType.USERNAME, "1")  # the same value as another kind


def test_a_row_of_the_list_holds_the_identifier_type_and_the_hash_only(pool: ConnectionPool) -> None:
    with pool.connection() as conn:
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = 'suppression' ORDER BY ordinal_position"
        ).fetchall()

    assert [c for (c,) in columns] == ["identifier_type", "digest"]  # no request id, no time to correlate


def test_the_production_key_is_stored_only_wrapped_by_kms(pool: ConnectionPool, moto_url: str) -> None:
    kms = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1")
    master = KmsMasterKey(kms.create_key()["KeyMetadata"]["KeyId"], endpoint_url=moto_url, region="us-east-1")

    key = wrapped_key(pool, master)

    assert len(key) == 32 and wrapped_key(pool, master) == key  # made once; every process reads the same key
    with pool.connection() as conn:
        ((stored, wrapping),) = conn.execute("SELECT wrapped_key, wrapping FROM suppression_key").fetchall()
    assert key not in bytes(stored) and wrapping == master.wrapping
    SuppressionList(pool, key).add(Subject.of(user_id=["1"]))
    assert SuppressionList(pool, wrapped_key(pool, master)).contains(IdentifierType.USER_ID, "1")
