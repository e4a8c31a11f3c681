"""The vault: identifiers sealed per request, wrapped by a local key or by KMS (moto's server), and shredded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool

from stores.db import migrate, open_pool
from stores.keys import local_secret
from stores.vault import KmsMasterKey, LocalMasterKey, MasterKey, Vault, VaultSealed

SUBJECT = {"email": ["child@example.org"], "user_id": ["1"]}


@pytest.fixture
def pool(database_url: str) -> Iterator[ConnectionPool]:
    schema = f"vault_{uuid.uuid4().hex[:10]}"
    migrate(database_url, schema)
    pool = open_pool(database_url, schema)
    yield pool
    pool.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def new_request(pool: ConnectionPool, vault: Vault) -> str:
    request_id = str(uuid.uuid4())
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            "INSERT INTO requests (request_id, kind, legal_basis, reference, requester, received_on, deadline, scope, "
            "catalogue, catalogue_sha256, state) VALUES (%s, 'court_order', 'b', 'r', '{}', '2026-01-01', "
            "'2026-02-01', '\"all\"', '{}', 'x', 'received')",
            [request_id],
        )
        vault.create(conn, request_id, {Vault.SUBJECT: SUBJECT})
    return request_id


@pytest.fixture(params=["local", "kms"])
def master(request: pytest.FixtureRequest, tmp_path: Path, moto_url: str) -> MasterKey:
    if request.param == "local":
        return LocalMasterKey(local_secret(tmp_path, "master.key"))
    key_id = boto3.client("kms", endpoint_url=moto_url, region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    return KmsMasterKey(key_id, endpoint_url=moto_url, region="us-east-1")


def test_sealed_identifiers_round_trip_and_are_not_stored_in_clear(pool: ConnectionPool, master: MasterKey) -> None:
    vault = Vault(pool, master)
    request_id = new_request(pool, vault)
    assert vault.open(request_id, Vault.SUBJECT) == SUBJECT
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT wrapped_key, ciphertext FROM vault_keys JOIN vault_items USING (request_id)"
        ).fetchall()
    assert all(b"child@example.org" not in bytes(ct) for _, ct in rows)


def test_shredding_makes_the_request_unreadable_for_good(pool: ConnectionPool, master: MasterKey) -> None:
    vault = Vault(pool, master)
    request_id, other = new_request(pool, vault), new_request(pool, vault)
    with pool.connection() as conn:
        assert vault.destroy(conn, request_id) is True
        assert vault.destroy(conn, request_id) is False  # a second shred is harmless
    with pytest.raises(VaultSealed, match="shredded"):
        vault.open(request_id, Vault.SUBJECT)
    with pytest.raises(VaultSealed):
        vault.commitment_key(request_id)
    assert vault.open(other, Vault.SUBJECT) == SUBJECT  # other requests keep their keys


def test_a_vault_row_moved_to_another_request_does_not_decrypt(pool: ConnectionPool, master: MasterKey) -> None:
    vault = Vault(pool, master)
    first, second = new_request(pool, vault), new_request(pool, vault)
    with pool.connection() as conn:
        conn.execute(
            "UPDATE vault_items SET ciphertext = (SELECT ciphertext FROM vault_items WHERE request_id = %s), "
            "nonce = (SELECT nonce FROM vault_items WHERE request_id = %s) WHERE request_id = %s",
            [first, first, second],
        )
    with pytest.raises(Exception):  # noqa: B017 (AES-GCM's InvalidTag: the row is bound to its request)
        vault.open(second, Vault.SUBJECT)


def test_a_different_local_master_key_cannot_unwrap(pool: ConnectionPool, tmp_path: Path) -> None:
    request_id = new_request(pool, Vault(pool, LocalMasterKey(local_secret(tmp_path / "a", "master.key"))))
    with pytest.raises(Exception, match="not by the configured master key"):
        Vault(pool, LocalMasterKey(local_secret(tmp_path / "b", "master.key"))).open(request_id, Vault.SUBJECT)


def test_key_files_are_private(tmp_path: Path) -> None:
    local_secret(tmp_path / "keys", "master.key")
    assert (tmp_path / "keys" / "master.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
