"""The orchestrator's own stores, opened once per process: ledger, vault, transparency log, suppression list, keys."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool
from temporalio.client import Client

from erasure.config import Config
from stores.codec import CodecKeys, data_converter
from stores.db import migrate, open_pool
from stores.keys import local_secret, signing_key
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

    @classmethod
    def open(cls, config: Config) -> Services:
        migrate(config.database_url, config.ledger_schema)
        pool = open_pool(config.database_url, config.ledger_schema)
        keys = config.keys_dir
        master = master_key(config)
        return cls(
            config=config,
            pool=pool,
            ledger=Ledger(pool),
            vault=Vault(pool, master),
            tlog=TransparencyLog(pool, signing_key(keys), config.log_origin),
            suppression=SuppressionList(pool, suppression_key(config, pool, master)),
        )

    def close(self) -> None:
        self.pool.close()


def master_key(config: Config) -> MasterKey:
    if config.kms_key_id:
        return KmsMasterKey(config.kms_key_id, endpoint_url=config.kms_endpoint_url)
    return LocalMasterKey(local_secret(config.keys_dir, "master.key"))


def suppression_key(config: Config, pool: ConnectionPool, master: MasterKey) -> bytes:
    """Kept apart from every other key: wrapped by KMS in the ledger, or a file in a directory of its own."""
    if config.kms_key_id:
        return wrapped_key(pool, master)
    return local_secret(config.suppression_key_dir, "suppression.key")


async def connect_temporal(config: Config) -> Client:
    return await Client.connect(
        config.temporal_address,
        namespace=config.namespace,
        data_converter=data_converter(CodecKeys(config.keys_dir).codec()),
    )
