"""The orchestrator's own stores, opened once per process: ledger, vault, transparency log, suppression list, keys.

Opening never migrates: `erasure db migrate`, `erasure dev up` and the worker's start do. Read-only commands open
`LedgerReader`, whose connections refuse writes and which never creates a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool
from temporalio.client import Client
from temporalio.runtime import Runtime

from domain.errors import InvalidInput
from erasure.config import Config
from stores.class_ledger import ClassLedger
from stores.codec import CodecKeys, data_converter
from stores.db import check_migrated, migrate, open_pool
from stores.holds import HoldRegistry
from stores.keys import existing_secret, local_secret, signing_key
from stores.ledger import Ledger
from stores.suppression import SuppressionList, wrapped_key
from stores.tlog import TransparencyLog
from stores.vault import KmsMasterKey, LocalMasterKey, MasterKey, Vault


@dataclass
class Services:
    config: Config
    pool: ConnectionPool
    ledger: Ledger
    vault: Vault
    tlog: TransparencyLog
    suppression: SuppressionList
    holds: HoldRegistry
    classes: ClassLedger

    @classmethod
    def open(cls, config: Config) -> Services:
        pool = _open_migrated(config, read_only=False)
        keys = config.keys_dir
        master = master_key(config)
        list_key = suppression_key(config, pool, master)
        return cls(
            config=config,
            pool=pool,
            ledger=Ledger(pool),
            vault=Vault(pool, master),
            tlog=TransparencyLog(pool, signing_key(keys, config.signing_key_path), config.log_origin),
            suppression=SuppressionList(pool, list_key),
            holds=HoldRegistry(pool, list_key),
            classes=ClassLedger(pool),
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
        if self.config.kms_key_id:
            key = wrapped_key(self.pool, master_key(self.config), create=False)
        else:
            key = existing_secret(self.config.suppression_key_dir, "suppression.key")
        return SuppressionList(self.pool, key)

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


def suppression_key(config: Config, pool: ConnectionPool, master: MasterKey) -> bytes:
    """Kept apart from every other key: wrapped by KMS in the ledger, or a file in a directory of its own."""
    if config.kms_key_id:
        return wrapped_key(pool, master)
    return local_secret(config.suppression_key_dir, "suppression.key")


async def connect_temporal(config: Config, runtime: Runtime | None = None) -> Client:
    """A client for the configured frontend (TLS, API key, mTLS as configured) with the project's data converter."""
    try:
        connect = config.temporal_profile().to_client_connect_config()  # reads the TLS files
    except OSError as exc:
        raise InvalidInput("environment", "TEMPORAL_TLS_*", f"cannot read {exc.filename}: {exc.strerror}") from None
    return await Client.connect(
        **connect, data_converter=data_converter(CodecKeys(config.keys_dir).codec()), runtime=runtime
    )
