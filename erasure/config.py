"""Where things are: read once from the environment and, for the dev stack, from `$ERASURE_HOME/stack.json`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DEFAULT_TASK_QUEUE = "erasure"
DEFAULT_LEDGER_SCHEMA = "erasure"


def code_version() -> str:
    try:
        return f"erasure-orchestrator {version('erasure-orchestrator')}"
    except PackageNotFoundError:
        return "erasure-orchestrator (unpackaged)"


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    temporal_address: str
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA
    log_origin: str = "erasure.local/log"
    grace_days: float = 30.0  # after the certificate, before the request's key is destroyed
    backup_retention_days: float = 35.0  # how long the ledger database's backups are kept: the beyond-use date
    kms_key_id: str | None = None  # wrap vault keys with AWS KMS instead of the local master key
    kms_endpoint_url: str | None = None

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def suppression_key_dir(self) -> Path:
        """The suppression list's key in development: a directory apart from keys/, so no copy of keys/ takes it."""
        return self.home / "suppression-key"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def with_(self, **changes: object) -> Config:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls) -> Config:
        home = Path(os.environ.get("ERASURE_HOME", ".erasure")).resolve()
        stack = read_stack_file(home)
        database_url = os.environ.get("DATABASE_URL") or stack.get("database_url", "")
        temporal = os.environ.get("ERASURE_TEMPORAL_ADDRESS") or stack.get("temporal_address", "localhost:7233")
        return cls(
            home=home,
            database_url=database_url,
            temporal_address=temporal,
            namespace=os.environ.get("ERASURE_NAMESPACE", "default"),
            task_queue=os.environ.get("ERASURE_TASK_QUEUE", DEFAULT_TASK_QUEUE),
            ledger_schema=os.environ.get("ERASURE_LEDGER_SCHEMA", DEFAULT_LEDGER_SCHEMA),
            log_origin=os.environ.get("ERASURE_LOG_ORIGIN", "erasure.local/log"),
            grace_days=float(os.environ.get("ERASURE_GRACE_DAYS", "30")),
            backup_retention_days=float(os.environ.get("ERASURE_BACKUP_RETENTION_DAYS", "35")),
            kms_key_id=os.environ.get("ERASURE_KMS_KEY_ID") or None,
            kms_endpoint_url=os.environ.get("ERASURE_KMS_ENDPOINT_URL") or None,
        )


def read_stack_file(home: Path) -> dict[str, str]:
    path = home / "stack.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if isinstance(v, str)}
