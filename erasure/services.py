"""The orchestrator's own stores, opened once per process: ledger, vault, transparency log, suppression list, keys.

Opening never migrates: `erasure db migrate`, `erasure dev up` and the worker's start do. Read-only commands open
`LedgerReader`, whose connections refuse writes and which never creates a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool
from temporalio.client import Client

from domain.errors import InvalidInput
from erasure.config import Config
from stores.codec import CodecKeys, data_converter
from stores.db import check_migrated, migrate, open_pool
from stores.keys import existing_secret, local_secret, signing_key
from stores.ledger import Ledger
from stores.pseudonyms import Pseudonymizer
from stores.suppression import SuppressionList
from stores.tlog import TransparencyLog
from stores.vault import KmsMasterKey, LocalMasterKey, MasterKey, Vault


@dataclass
class Services:
    config: Config
    pool: ConnectionPool
    ledger: Ledger
    vault: Vault
    tlog: TransparencyLog
    pseudonyms: Pseudonymizer
    suppression: SuppressionList

    @classmethod
    def open(cls, config: Config) -> Services:
        pool = _open_migrated(config, read_only=False)
        keys = config.keys_dir
        return cls(
            config=config,
            pool=pool,
            ledger=Ledger(pool),
            vault=Vault(pool, master_key(config)),
            tlog=TransparencyLog(pool, signing_key(keys, config.signing_key_path), config.log_origin),
            pseudonyms=Pseudonymizer(local_secret(keys, "pseudonym.key"), purpose="ledger"),
            suppression=SuppressionList(
                pool, Pseudonymizer(local_secret(keys, "suppression.key"), purpose="suppression")
            ),
        )

    def close(self) -> None:
        self.pool.close()


@dataclass
class LedgerReader:
    """The ledger for commands that only read (`status`, `list`, `suppression check`)."""

    config: Config
    pool: ConnectionPool
    ledger: Ledger

    @classmethod
    def open(cls, config: Config) -> LedgerReader:
        pool = _open_migrated(config, read_only=True)
        return cls(config=config, pool=pool, ledger=Ledger(pool))

    def suppression(self) -> SuppressionList:
        """The suppression list, hashed with the deployment's existing key (never a new one)."""
        key = existing_secret(self.config.keys_dir, "suppression.key")
        return SuppressionList(self.pool, Pseudonymizer(key, purpose="suppression"))

    def close(self) -> None:
        self.pool.close()


def migrate_ledger(config: Config) -> list[str]:
    """Apply the ledger's pending migrations; returns their names."""
    return migrate(config.database_url, config.ledger_schema)


def _open_migrated(config: Config, *, read_only: bool) -> ConnectionPool:
    pool = open_pool(config.database_url, config.ledger_schema, read_only=read_only)
    try:
        check_migrated(pool, config.ledger_schema)
    except BaseException:
        pool.close()
        raise
    return pool


def master_key(config: Config) -> MasterKey:
    if config.kms_key_id:
        return KmsMasterKey(config.kms_key_id, endpoint_url=config.kms_endpoint_url)
    return LocalMasterKey(local_secret(config.keys_dir, "master.key"))


async def connect_temporal(config: Config) -> Client:
    """A client for the configured frontend (TLS, API key, mTLS as configured) with the project's data converter."""
    try:
        connect = config.temporal_profile().to_client_connect_config()  # reads the TLS files
    except OSError as exc:
        raise InvalidInput("environment", "TEMPORAL_TLS_*", f"cannot read {exc.filename}: {exc.strerror}") from None
    return await Client.connect(**connect, data_converter=data_converter(CodecKeys(config.keys_dir).codec()))
