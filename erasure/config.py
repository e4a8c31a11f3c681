"""Configuration in one place: every environment variable the product reads is read here, once, into `Config`.

Stores and connectors receive values; they never read the environment. (The one exception: connector secrets the
catalogue names by variable are read where the connector is built, by `connectors.base.secret_from_env`.) The
Temporal connection follows Temporal's own environment configuration (`temporalio.envconfig`: `TEMPORAL_ADDRESS`,
`TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`, profiles in `TEMPORAL_CONFIG_FILE` chosen with
`TEMPORAL_PROFILE`), so one set of variables serves `erasure` and the `temporal` CLI alike. The dev stack's addresses
come from `$ERASURE_HOME/stack.json` when nothing else names them.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from domain.errors import InvalidInput

if TYPE_CHECKING:  # temporalio takes most of a second to import: commands that never reach Temporal skip it
    from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS

DEFAULT_TASK_QUEUE = "erasure"
DEFAULT_LEDGER_SCHEMA = "erasure"
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"


def code_version() -> str:
    try:
        return f"erasure-orchestrator {version('erasure-orchestrator')}"
    except PackageNotFoundError:
        return "erasure-orchestrator (unpackaged)"


@dataclass(frozen=True)
class Ports:
    """The dev stack's loopback ports; each can be moved with ERASURE_<PART>_PORT (ERASURE_TEMPORAL_PORT, ...)."""

    temporal: int = 7233
    ui: int = 8233
    s3: int = 7240
    emulators: int = 7241
    codec: int = 7242
    api: int = 7243  # erasure serve: the HTTP API and the dashboard

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Ports:
        defaults = cls()
        return cls(**{f.name: _port(environ, f.name, getattr(defaults, f.name)) for f in fields(cls)})


def port_variable(part: str) -> str:
    return f"ERASURE_{part.upper()}_PORT"


def _port(environ: Mapping[str, str], part: str, default: int) -> int:
    text = environ.get(port_variable(part))
    if text is None:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise InvalidInput("environment", port_variable(part), f"expected a port number, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    temporal_address: str
    namespace: str = "default"
    temporal_api_key: str | None = None  # an API key turns TLS on (Temporal Cloud)
    temporal_tls: ClientConfigTLS | None = None  # CA, client certificate (mTLS), server name
    temporal_grpc_meta: Mapping[str, str] = field(default_factory=dict)
    task_queue: str = DEFAULT_TASK_QUEUE
    ledger_schema: str = DEFAULT_LEDGER_SCHEMA
    log_origin: str = "erasure.local/log"
    grace_days: float = 30.0  # after the certificate, before the request's key is destroyed
    backup_retention_days: float = 35.0  # how long the ledger database's backups are kept: the beyond-use date
    kms_key_id: str | None = None  # wrap vault keys with AWS KMS instead of the local master key
    kms_endpoint_url: str | None = None
    signing_key_path: Path | None = None  # a deployment's own Ed25519 key, instead of one under keys/
    codec_token: str | None = None  # the bearer token the codec server asks of its callers
    operator: str = ""  # who runs `erasure` commands, recorded with the extensions they make
    reminder_lead_days: tuple[float, ...] = (7.0, 1.0)  # reminders recorded this long before a request's deadline
    recipient_ack_days: float = 14.0  # how long a manual recipient's acknowledgement may take; then not confirmed
    reminder_webhook_url: str | None = None  # each reminder is also POSTed here (request id, deadline, lead)
    authority_limit_days: float = 30.0  # a guardian's request whose authority is not verified by then is rejected
    metrics_address: str | None = None  # host:port of the worker's Prometheus endpoint; none when unset
    worker_shutdown_s: float = 10.0  # how long a stopping worker lets running activities finish
    ports: Ports = Ports()
    hold_dir: Path | None = None  # tests only: where the process pauses at named points (activities/hold.py)

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

    def temporal_profile(self) -> ClientConfigProfile:
        """The Temporal connection as envconfig describes it; `to_client_connect_config()` gives connect's arguments."""
        from temporalio.envconfig import ClientConfigProfile

        return ClientConfigProfile(
            address=self.temporal_address,
            namespace=self.namespace,
            api_key=self.temporal_api_key,
            tls=self.temporal_tls,
            grpc_meta=self.temporal_grpc_meta,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, read_stack_file: bool = True) -> Config:
        """The configuration of this process; `read_stack_file=False` ignores a dev stack's recorded addresses."""
        env = os.environ if environ is None else environ
        home = Path(env.get("ERASURE_HOME", ".erasure")).resolve()
        stack = _stack_file(home) if read_stack_file else {}
        temporal = _temporal_profile(env)
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or stack.get("database_url", ""),
            temporal_address=temporal.address or stack.get("temporal_address", DEFAULT_TEMPORAL_ADDRESS),
            namespace=temporal.namespace or "default",
            temporal_api_key=temporal.api_key,
            temporal_tls=temporal.tls,
            temporal_grpc_meta=dict(temporal.grpc_meta),
            task_queue=env.get("ERASURE_TASK_QUEUE", DEFAULT_TASK_QUEUE),
            ledger_schema=env.get("ERASURE_LEDGER_SCHEMA", DEFAULT_LEDGER_SCHEMA),
            log_origin=env.get("ERASURE_LOG_ORIGIN", "erasure.local/log"),
            grace_days=_number(env, "ERASURE_GRACE_DAYS", 30.0),
            backup_retention_days=_number(env, "ERASURE_BACKUP_RETENTION_DAYS", 35.0),
            kms_key_id=env.get("ERASURE_KMS_KEY_ID") or None,
            kms_endpoint_url=env.get("ERASURE_KMS_ENDPOINT_URL") or None,
            signing_key_path=Path(env["ERASURE_SIGNING_KEY"]) if env.get("ERASURE_SIGNING_KEY") else None,
            codec_token=env.get("ERASURE_CODEC_TOKEN") or None,
            operator=env.get("ERASURE_OPERATOR") or getpass.getuser(),
            reminder_lead_days=_days(env, "ERASURE_REMINDER_LEAD_DAYS", "7,1"),
            recipient_ack_days=_number(env, "ERASURE_RECIPIENT_ACK_DAYS", 14.0),
            reminder_webhook_url=_url(env, "ERASURE_REMINDER_WEBHOOK_URL"),
            authority_limit_days=_number(env, "ERASURE_AUTHORITY_LIMIT_DAYS", 30.0),
            metrics_address=env.get("ERASURE_METRICS_ADDRESS") or None,
            worker_shutdown_s=_number(env, "ERASURE_WORKER_SHUTDOWN_S", 10.0),
            ports=Ports.from_env(env),
            hold_dir=Path(env["ERASURE_TEST_HOLD_DIR"]) if env.get("ERASURE_TEST_HOLD_DIR") else None,
        )


def process_environment(values: Mapping[str, str], defaults: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the shell starts: `defaults` where this process sets nothing, then `values`."""
    return {**(defaults or {}), **os.environ, **values}


def _temporal_profile(env: Mapping[str, str]) -> ClientConfigProfile:
    from temporalio.envconfig import ClientConfigProfile

    try:
        return ClientConfigProfile.load(override_env_vars=dict(env))
    except Exception as exc:  # the bridge's ConfigError: a bad profile file or an unknown TEMPORAL_PROFILE
        problem = str(exc).splitlines()[0].lower()
        raise InvalidInput("environment", "TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE", problem) from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidInput("environment", name, f"expected a number, got {text!r}") from None


def _url(env: Mapping[str, str], name: str) -> str | None:
    text = env.get(name) or None
    if text is not None and not (text.startswith(("http://", "https://")) and len(text) < 2048 and " " not in text):
        raise InvalidInput("environment", name, "expected an http:// or https:// URL")
    return text


def _days(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    text = env.get(name, default)
    try:
        days = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        days = (-1.0,)
    if any(d < 0 for d in days):
        raise InvalidInput("environment", name, "expected days separated by commas, e.g. 7,1")
    return days


def _stack_file(home: Path) -> dict[str, str]:
    path = home / "stack.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if isinstance(v, str)}
