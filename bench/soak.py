"""Soak under faults: many requests over the demo estate's five systems, three workers killed and restarted all along,
the Temporal dev server restarted once and the ledger's Postgres restarted once mid-run. Prints a report; `make soak`.

    .venv/bin/python bench/soak.py                          # 1,000 requests (long on 2 shared cores)
    .venv/bin/python bench/soak.py --requests 100           # a smaller soak

Every request erases a child of its own (user id 2001, 2002, ...) planted with a look-alike neighbour (user id
20010, 20020, ...: the child's id with a 0 appended; email with a plus tag), beside the demo's usual neighbours. After
the run it reports: requests complete, receipts per (request, system) (exactly one expected), neighbour records lost
(zero expected) in every system, the consistency of every signed checkpoint with the next and with the latest, wall
time and throughput, and the peak resident memory of each worker slot. It asserts no time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import boto3
import httpx
import psycopg
import psycopg_pool
import pyarrow as pa
import yaml
from deltalake import DeltaTable, write_deltalake

from activities.contracts import EXCLUDE, NEAR_MATCH, OperatorDecision, ReviewDecision
from connectors.hashing import meta_email, sha256_hex
from domain.states import RequestState
from erasure import devstack
from erasure.config import Config, Ports, port_variable
from erasure.intake import submit, validate
from erasure.services import Services, connect_temporal
from evidence.checkpoint import open_checkpoint
from evidence.merkle import verify_consistency
from examples.estate import NEIGHBOURS, Person, create_app_schema, seed_people, upload_keys
from workflows.request import APPROVE_UPDATE, REVIEW_QUERY, REVIEW_UPDATE

APP_SCHEMA = "app"
UPLOADS_BUCKET = "clipstream-uploads"
LAKE_URI = "s3://clipstream-lake/events"
AUDIENCE = "23850000000000001"
SYSTEMS = ("app_db", "uploads", "events", "segment", "meta_audiences")
APPROVER = "soak approver"  # the second operator: court orders always wait for one after their preview
REVIEWER = "soak reviewer"
REVIEW_REASON = "another person's account: a look-alike address of a different user, not the child's"


def people(requests: int) -> tuple[list[Person], list[Person]]:
    children = [
        Person(2000 + n, f"kid.{2000 + n}", f"kid.{2000 + n}@example.org", None) for n in range(1, requests + 1)
    ]
    lookalikes = [Person(c.user_id * 10, f"{c.username}0", f"kid.{c.user_id}+n@example.org", None) for c in children]
    return children, [*NEIGHBOURS, *lookalikes]


def emulator_seed(everyone: list[Person]) -> dict[str, Any]:
    return {
        "segment": {"profiles": [str(p.user_id) for p in everyone]},
        "meta": {
            "audiences": {AUDIENCE: [[sha256_hex(meta_email(p.email or ""))] for p in everyone]},
            "processing_time": "6s",  # Meta takes hours; the emulator seconds, so polling is still seen to wait
        },
    }


def plant(stack: devstack.Stack, everyone: list[Person]) -> None:
    with psycopg.connect(devstack.app_database_url(stack.database_url), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {APP_SCHEMA} CASCADE")
        create_app_schema(conn, APP_SCHEMA)
        seed_people(conn, APP_SCHEMA, everyone)
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=UPLOADS_BUCKET)
    s3.put_bucket_versioning(Bucket=UPLOADS_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for person in everyone:
        for key in upload_keys(person):
            s3.put_object(Bucket=UPLOADS_BUCKET, Key=key, Body=b"clip")
    s3.create_bucket(Bucket="clipstream-lake")
    for batch in range(2):  # two commits, so an older file holds every id too
        write_deltalake(
            LAKE_URI,
            pa.table({"user_id": [str(p.user_id) for p in everyone], "event": [f"play-{batch}"] * len(everyone)}),
            mode="append",
            storage_options=lake_options(stack),
        )


def lake_options(stack: devstack.Stack) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": stack.s3_endpoint, "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}


def neighbours_lost(stack: devstack.Stack, neighbours: list[Person]) -> dict[str, int]:
    """Per system, how many of the neighbours' records are missing (all zero when nothing was over-deleted)."""
    ids = {p.user_id for p in neighbours}
    with psycopg.connect(devstack.app_database_url(stack.database_url)) as conn:
        users = {row[0] for row in conn.execute(f"SELECT id FROM {APP_SCHEMA}.users").fetchall()}
        videos = conn.execute(f"SELECT count(*) FROM {APP_SCHEMA}.videos WHERE user_id = ANY(%s)", [list(ids)])
        video_count = int(videos.fetchone()[0])  # type: ignore[index]
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint, region_name="us-east-1")
    keys: set[str] = set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=UPLOADS_BUCKET):
        keys |= {v["Key"] for v in page.get("Versions", [])}
    lake = DeltaTable(LAKE_URI, storage_options=lake_options(stack)).to_pyarrow_table()
    lake_ids = lake.column("user_id").to_pylist()
    vendors = httpx.get(f"{stack.emulators_url}/_emulator/state", timeout=30).json()
    members = {tuple(m) for m in vendors["meta"]["audiences"][AUDIENCE]}
    return {
        "app_db users": len(ids - users),
        "app_db videos": sum(p.videos for p in neighbours) - video_count,
        "uploads objects": len({k for p in neighbours for k in upload_keys(p)} - keys),
        "events rows": 2 * len(neighbours) - sum(1 for i in lake_ids if int(i) in ids),
        "segment profiles": len({str(i) for i in ids} - set(vendors["segment"]["profiles"])),
        "meta audience members": sum(1 for p in neighbours if (sha256_hex(meta_email(p.email or "")),) not in members),
    }


def catalogue() -> dict[str, Any]:
    systems = yaml.safe_load(Path("examples/systems.yaml").read_text())
    for system in systems["systems"]:
        if system["name"] == "meta_audiences":
            system["identifiers"] = ["email"]  # the soak's children have no phone number
            system["mapping"]["audiences"][0]["schema"] = ["EMAIL"]
    return dict(systems)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- processes ---------------------------------------------------------------------------------------------------


@dataclass
class Workers:
    """Worker slots; each slot's process is killed and restarted, its peak RSS tracked across restarts."""

    envs: list[dict[str, str]]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_offsets: list[int] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)
    kills: int = 0

    def start_all(self) -> None:
        self.log_offsets = [0] * len(self.envs)
        self.processes = [self._start(slot) for slot in range(len(self.envs))]
        self.peak_rss_kib = [0] * len(self.envs)

    def _log(self, slot: int) -> Path:
        return Path(self.envs[slot]["ERASURE_HOME"]) / "logs" / "worker.jsonl"

    def ready(self, slot: int) -> bool:
        """This slot's current process has started polling (its log says so after the point it was started)."""
        log = self._log(slot)
        if not log.exists():
            return False
        with log.open("rb") as handle:
            handle.seek(self.log_offsets[slot])
            return b"worker started" in handle.read()

    def _start(self, slot: int) -> subprocess.Popen[bytes]:
        log = self._log(slot)
        self.log_offsets[slot] = log.stat().st_size if log.exists() else 0
        env = self.envs[slot]
        return subprocess.Popen(
            [sys.executable, "-m", "erasure.cli", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def sample(self) -> None:
        for slot, process in enumerate(self.processes):
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_kib[slot] = max(self.peak_rss_kib[slot], int(line.split()[1]))

    def kill_and_restart(self, slot: int) -> None:
        self.sample()
        self.processes[slot].send_signal(signal.SIGKILL)
        self.processes[slot].wait(timeout=30)
        self.kills += 1
        self.processes[slot] = self._start(slot)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def restart_temporal(stack: devstack.Stack, ports: Ports) -> None:
    stack.processes["temporal"].stop()
    temporal = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    argv = devstack.temporal_server_command(temporal, stack.home / "temporal.db", ports.temporal, ports.ui, ports.codec)
    stack.processes["temporal"] = devstack._spawn("temporal", stack.home / "logs", argv)
    stack.save()
    devstack._wait_for_port("temporal", ports.temporal, stack.processes["temporal"], stack.home / "logs")


def restart_postgres(stack: devstack.Stack) -> None:
    devstack._stop_postgres(Path(stack.embedded_pgdata))
    time.sleep(2)  # down for a moment: workers' ledger calls fail and are retried
    devstack.embedded_postgres(Path(stack.embedded_pgdata))


# -- the run -----------------------------------------------------------------------------------------------------


def counts(services: Services) -> tuple[int, int]:
    with services.pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = ANY(%s)), count(*) FROM requests",
            [[state.value for state in RequestState if state.settled]],
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def waiting_for_operators(services: Services, request_ids: list[str]) -> list[tuple[str, str]]:
    """(request id, state) of the requests that wait for a reviewer or for a second operator's approval."""
    with services.pool.connection() as conn:
        rows = conn.execute(
            "SELECT request_id::text, state FROM requests WHERE request_id = ANY(%s::uuid[]) AND state = ANY(%s)",
            [request_ids, [RequestState.AWAITING_REVIEW.value, RequestState.AWAITING_APPROVAL.value]],
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def decide(config: Config, waiting: list[tuple[str, str]]) -> int:
    """The soak's operators: each look-alike neighbour (a near match) excluded by a reviewer, then each previewed
    request approved by a second operator. One the server cannot take now is tried again the next round."""

    async def decide_all() -> int:
        client = await connect_temporal(config)
        decided = 0
        for request_id, state in waiting:
            handle = client.get_workflow_handle(request_id)
            try:
                if state == RequestState.AWAITING_REVIEW.value:
                    for group in (await handle.query(REVIEW_QUERY))["groups"]:
                        if group["kind"] == NEAR_MATCH:
                            exclude = ReviewDecision(group["group"], EXCLUDE, REVIEW_REASON, REVIEWER)
                            await handle.execute_update(REVIEW_UPDATE, exclude, result_type=str)
                else:
                    await handle.execute_update(APPROVE_UPDATE, OperatorDecision(actor=APPROVER), result_type=str)
                decided += 1
            except Exception:  # the server restarting, or decided already by an earlier round: looked at again
                continue
        return decided

    try:
        return asyncio.run(decide_all())
    except Exception:  # the server is restarting: the next round tries again
        return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="erasure-soak-"))
    ports = Ports(**{f.name: free_port() for f in fields(Ports)})
    children, neighbours = people(args.requests)
    seed = home / "emulators-seed.json"
    home.mkdir(exist_ok=True)
    seed.write_text(json.dumps(emulator_seed([*children, *neighbours])))
    ports_env = {port_variable(f.name): str(getattr(ports, f.name)) for f in fields(Ports)}
    stack_config = Config.from_env({**ports_env, "ERASURE_HOME": str(home)}, read_stack_file=False)
    stack = devstack.up(stack_config, emulator_seed=seed)
    services: Services | None = None
    workers: Workers | None = None
    try:
        stack.processes.pop("worker").stop()  # the soak runs its own three
        env = stack.process_env()
        os.environ.update(env)  # the AWS stand-in credentials too, for planting and checking the estate
        config = Config.from_env()
        plant(stack, [*children, *neighbours])
        envs = []
        for slot in range(args.workers):
            worker_home = home / f"worker-{slot}"
            shutil.copytree(home / "keys", worker_home / "keys")
            envs.append({**env, "ERASURE_HOME": str(worker_home)})
        workers = Workers(envs)
        workers.start_all()
        services = Services.open(config)
        systems_path = home / "systems.yaml"
        systems_path.write_text(yaml.safe_dump(catalogue()))
        orders = []
        for child in children:
            order = yaml.safe_load(Path("examples/court-order.yaml").read_text())
            order["subject"] = {"user_id": [str(child.user_id)], "email": [child.email]}
            path = home / "orders" / f"{child.user_id}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(yaml.safe_dump(order))
            orders.append(path)

        started = time.monotonic()
        killer_stop = threading.Event()

        def killer() -> None:
            # Kill in turn, but only a worker that has started polling: on a busy machine a worker takes seconds to
            # start, and killing it before it polls would test nothing but start-up.
            slot = 0
            while not killer_stop.wait(args.kill_every):
                for _ in range(args.workers):
                    slot = (slot + 1) % args.workers
                    if workers.ready(slot):
                        workers.kill_and_restart(slot)
                        break

        threading.Thread(target=killer, daemon=True).start()

        async def submit_all() -> list[str]:
            client = await connect_temporal(config)
            ids = []
            for path in orders:
                order, systems = validate(path, systems_path)
                ids.append((await submit(services, client, order, systems)).request_id)
            return ids

        request_ids = asyncio.run(submit_all())
        submitted_s = time.monotonic() - started
        faults: list[str] = []
        decisions = 0
        deadline = started + args.timeout
        last_checkpoint = time.monotonic()
        while time.monotonic() < deadline:
            workers.sample()
            try:
                waiting = waiting_for_operators(services, request_ids)
                settled, _ = counts(services)
                if settled >= len(request_ids) or time.monotonic() - last_checkpoint >= args.checkpoint_every:
                    services.tlog.checkpoint()  # as an export would publish one: the log's state, signed, mid-run
                    last_checkpoint = time.monotonic()
            except (psycopg.Error, psycopg_pool.PoolTimeout):  # the ledger is restarting
                time.sleep(1)
                continue
            if settled >= len(request_ids):
                break
            decisions += decide(config, waiting) if waiting else 0
            if not faults and settled >= len(request_ids) // 3:
                restart_temporal(stack, ports)
                faults.append(f"temporal restarted at {settled} settled")
            elif len(faults) == 1 and settled >= 2 * len(request_ids) // 3:
                restart_postgres(stack)
                faults.append(f"postgres restarted at {settled} settled")
            time.sleep(1)
        wall_s = time.monotonic() - started
        killer_stop.set()
        workers.sample()
        return {
            **report(services, stack, request_ids, neighbours, workers, faults, wall_s, submitted_s),
            "operator decisions (reviews and approvals)": decisions,
        }
    finally:
        if workers is not None:
            workers.stop()
        if services is not None:
            services.close()
        devstack.down(home)
        shutil.rmtree(home, ignore_errors=True)


def report(
    services: Services,
    stack: devstack.Stack,
    request_ids: list[str],
    neighbours: list[Person],
    workers: Workers,
    faults: list[str],
    wall_s: float,
    submitted_s: float,
) -> dict[str, Any]:
    with services.pool.connection() as conn:
        outcomes: dict[str, int] = dict(
            conn.execute(
                "SELECT coalesce(outcome, state), count(*) FROM requests WHERE request_id = ANY(%s::uuid[]) GROUP BY 1",
                [request_ids],
            ).fetchall()
        )
        per_system = conn.execute(
            "SELECT n, count(*) FROM (SELECT request_id, system, count(*) AS n FROM receipts "
            "WHERE action = 'erase' GROUP BY 1, 2) AS r GROUP BY n"
        ).fetchall()
        missing = conn.execute(
            "SELECT count(*) FROM system_tasks t WHERE NOT EXISTS (SELECT 1 FROM receipts r WHERE "
            "r.request_id = t.request_id AND r.system = t.system AND r.action = 'erase')"
        ).fetchone()
        levels: dict[str, int] = dict(
            conn.execute(
                "SELECT system || ':' || coalesce(evidence_level, state), count(*) FROM system_tasks GROUP BY 1"
            )
        )
        checkpoints = conn.execute(
            "SELECT tree_size, root_hash, note FROM tlog_checkpoints ORDER BY tree_size"
        ).fetchall()
    trusted = [(services.tlog.origin, services.tlog.signer.public_key)]
    latest = services.tlog.size()
    latest_root = services.tlog.root(latest)
    consistent = 0
    for n, (size, root_hash, note) in enumerate(checkpoints):
        following = checkpoints[n + 1] if n + 1 < len(checkpoints) else None
        opened = open_checkpoint(note, trusted)
        assert opened.size == size and opened.root_hash == bytes(root_hash) == services.tlog.root(size)
        if following is not None and size > 0:
            verify_consistency(
                size,
                following[0],
                bytes(root_hash),
                bytes(following[1]),
                services.tlog.consistency_proof(size, following[0]),
            )
        if size > 0:
            verify_consistency(
                size, latest, bytes(root_hash), latest_root, services.tlog.consistency_proof(size, latest)
            )
        consistent += 1
    complete = outcomes.get("complete", 0)
    return {
        "requests": len(request_ids),
        "requests complete": complete,
        "outcomes": outcomes,
        "systems by evidence level": levels,
        "erase receipts per (request, system)": {f"{n} receipt(s)": c for n, c in per_system},
        "systems without a receipt": int(missing[0]) if missing else None,
        "neighbour records lost": neighbours_lost(stack, neighbours),
        "checkpoints verified consistent (with the next and with the latest)": f"{consistent} of {len(checkpoints)}",
        "log size": latest,
        "faults": [f"{workers.kills} worker kills (SIGKILL, restarted)", *faults],
        "wall time (s)": round(wall_s, 1),
        "submission time (s)": round(submitted_s, 1),
        "throughput (requests/s)": round(complete / wall_s, 3),
        "throughput (system erasures/s)": round(complete * len(SYSTEMS) / wall_s, 3),
        "peak RSS per worker slot (MiB)": [round(k / 1024, 1) for k in workers.peak_rss_kib],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests, each for a child of its own")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between worker kills")
    parser.add_argument("--checkpoint-every", type=float, default=10.0, help="seconds between signed checkpoints")
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="give up after this many seconds")
    args = parser.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
