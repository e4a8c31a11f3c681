"""The embedded stack and the demo, run as a new user runs them: the `erasure` command in fresh processes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import httpx
import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]


def stack_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERASURE_")}
    env["ERASURE_HOME"] = str(home)
    for part in ("TEMPORAL", "UI", "S3", "EMULATORS", "CODEC", "API"):
        env[f"ERASURE_{part}_PORT"] = str(free_port())
    env.update(extra)
    return env


def erasure(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "erasure.cli", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_dev_up_status_and_down(tmp_path: Path, database_url: str) -> None:
    env = stack_env(tmp_path / "home", DATABASE_URL=database_url)
    up = erasure(env, "dev", "up")
    try:
        assert up.returncode == 0, up.stderr
        status = json.loads(erasure(env, "dev", "status", "--json").stdout)
        assert status["erasure_home"] == str(tmp_path / "home")
        assert status["temporal_address"] == f"127.0.0.1:{env['ERASURE_TEMPORAL_PORT']}"
        assert status["temporal_ui"] == f"http://127.0.0.1:{env['ERASURE_UI_PORT']}"
        assert status["database_url"] == database_url
        assert set(status["parts"].values()) == {"running"}
        assert set(status["parts"]) == {"temporal", "s3", "emulators", "codec_server", "worker", "api"}
        assert httpx.get(status["temporal_ui"], timeout=30).status_code == 200
        codec = httpx.post(f"http://127.0.0.1:{env['ERASURE_CODEC_PORT']}/decode", json={"payloads": []}, timeout=10)
        assert codec.status_code == 401  # the UI's codec endpoint answers only with the bearer token
        assert httpx.get(f"{status['dashboard']}/api/health", timeout=10).json() == {"status": "ok"}
        again = erasure(env, "dev", "up")
        assert again.returncode == 1 and "already running" in again.stderr
        # an object keyed by a child's id goes through moto, which logs every request line: no log keeps it
        s3 = boto3.client("s3", endpoint_url=status["s3_endpoint"], region_name="us-east-1")
        s3.create_bucket(Bucket="uploads")
        s3.put_object(Bucket="uploads", Key="uploads/7391827364/clip-0.mp4", Body=b"video")
        logs = tmp_path / "home" / "logs"
        assert logs.stat().st_mode & 0o777 == 0o700
        assert not (logs / "s3.log").exists()
        assert not [p.name for p in logs.iterdir() if b"7391827364" in p.read_bytes()]
    finally:
        down = erasure(env, "dev", "down")
    assert down.returncode == 0
    assert "worker" in down.stdout and "temporal" in down.stdout
    assert json.loads(erasure(env, "dev", "status", "--json").stdout)["parts"] == {}
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(env["ERASURE_TEMPORAL_PORT"]))) != 0


def test_a_taken_port_gets_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = erasure(stack_env(tmp_path / "home", ERASURE_TEMPORAL_PORT=str(port)), "dev", "up")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: port {port} (Temporal) is taken: stop what uses it, or choose another with ERASURE_TEMPORAL_PORT"
    )


@pytest.mark.slow
def test_the_demo_passes_on_its_own_embedded_stack(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "home")
    env.pop("DATABASE_URL", None)
    result = erasure(env, "demo", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    outcome = json.loads((tmp_path / "home" / "demo" / "result.json").read_text())
    assert outcome["passed"] is True
    # the dashboard's address and a sign-in token for each demo operator, printed once
    assert re.search(r"dashboard at http://127\.0\.0\.1:\d+", result.stdout), result.stdout[-3000:]
    assert len(re.findall(r"demo-\S+ \([a-z, ]+\): eop_\S+", result.stdout)) >= 2, result.stdout[-3000:]
    assert outcome["outcome"] == "complete"
    assert set(outcome["systems"]) == {"app_db", "uploads", "events", "segment", "meta_audiences"}
    assert Path(outcome["bundle"]).exists()
    verified = erasure(env, "evidence", "verify", outcome["bundle"], "--trusted-key", outcome["trusted_key"])
    assert verified.returncode == 0, verified.stderr
    # the second order names only the child's email: resolution reaches her uploads and lake rows by her user id,
    # and the look-alike accounts are near-matches the scripted reviewer excludes
    court, guardian = outcome["orders"]
    assert guardian["order"] == "guardian-request.yaml" and guardian["outcome"] == "complete"
    assert guardian["systems"]["uploads"]["records_before"] > 0 and guardian["systems"]["events"]["records_before"] > 0
    for order in (court, guardian):
        assert {(g["rules"], g["kind"]) for g in order["review"]} == {
            ("email letter_case", "near_match"),
            ("email plus_tag", "near_match"),
        }
        assert all(order["checks"].values()), order["checks"]
    # the class order: a few hundred children erased in batches, one child's proof verified by the CLI too
    erased = outcome["class_order"]
    assert erased["outcome"] == "complete" and erased["subjects"] == 300
    assert all(erased["checks"].values()) and len(erased["checks"]) == 7, erased["checks"]
    proof = erasure(env, "evidence", "verify-proof", erased["proof"], "--trusted-key", outcome["trusted_key"])
    assert proof.returncode == 0, proof.stderr
