"""The transparency log on the real Postgres: appends racing from threads and processes, proofs and checkpoints.

Each test migrates a ledger schema of its own. Processes are spawned (not forked), so each has its own connection
pool, exactly like several workers of one deployment.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from evidence.checkpoint import Checkpoint, open_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, sign_envelope, verify_envelope
from evidence.keys import Ed25519Signer
from evidence.merkle import MemoryTree, leaf_hash, verify_consistency, verify_inclusion
from stores.db import migrate, open_pool
from stores.tlog import Logged, Notarisation, TransparencyLog

ORIGIN = "erasure.test/log"
PROCESSES, THREADS, APPENDS = 4, 4, 50  # appends per process and per thread
SPAWN = multiprocessing.get_context("spawn")


def entry(worker: str, i: int) -> bytes:
    return f'{{"worker":"{worker}","entry":{i},"pad":"{"x" * (i % 7)}"}}'.encode()


@pytest.fixture
def ledger(database_url: str) -> Iterator[str]:
    name = f"tlog_{uuid.uuid4().hex[:12]}"
    migrate(database_url, name)
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture
def tlog(database_url: str, ledger: str, signer: Ed25519Signer) -> Iterator[TransparencyLog]:
    pool = open_pool(database_url, ledger, max_size=THREADS + 2)
    yield TransparencyLog(pool, signer, ORIGIN)
    pool.close()


# -- in other processes ---------------------------------------------------------------------------------------------


def _open_log(database_url: str, schema: str, signer_pem: bytes) -> TransparencyLog:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(signer_pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return TransparencyLog(open_pool(database_url, schema, max_size=1), Ed25519Signer(key), ORIGIN)


def _process_appends(
    database_url: str, schema: str, signer_pem: bytes, worker: str, ready: Any, start: Any, results: Any
) -> None:
    tlog = _open_log(database_url, schema, signer_pem)
    ready.put(worker)
    start.wait(30)
    results.put((worker, [tlog.append_entry(entry(worker, i)) for i in range(APPENDS)]))


def _process_append_once(
    database_url: str,
    schema: str,
    signer_pem: bytes,
    worker: str,
    request_id: str,
    systems: list[str],
    ready: Any,
    start: Any,
    results: Any,
) -> None:
    tlog = _open_log(database_url, schema, signer_pem)
    ready.put(worker)
    start.wait(30)
    out = []
    for system in systems:
        made: list[bytes] = []
        logged = tlog.append_once(request_id, system, "erase", _envelope_maker(tlog.signer, worker, system, made))
        out.append((system, logged.envelope, logged.leaf_index, bool(made)))
    results.put((worker, out))


def _envelope_maker(signer: Ed25519Signer, worker: str, system: str, made: list[bytes]) -> Callable[[], bytes]:
    """Each caller signs an envelope of its own, so the one in the log shows whose attempt won."""

    def make() -> bytes:
        statement = f'{{"system":"{system}","signed_by_attempt":"{worker}"}}'.encode()
        envelope = sign_envelope(statement, IN_TOTO_PAYLOAD_TYPE, signer).to_json()
        made.append(envelope)
        return envelope

    return make


@pytest.fixture
def spawned() -> Iterator[list[Any]]:
    """The test's processes; any still running when the test ends (it failed) are terminated."""
    processes: list[Any] = []
    yield processes
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(timeout=10)


def _spawn(processes: list[Any], target: Callable[..., None], count: int, *args: Any) -> tuple[Any, Any]:
    """Start `count` processes that report ready and then wait for `start`; returns start and the results queue."""
    ready, start, results = SPAWN.Queue(), SPAWN.Event(), SPAWN.Queue()
    for n in range(count):
        worker = f"process-{n}"
        process = SPAWN.Process(target=target, args=(*args[:3], worker, *args[3:], ready, start, results))
        process.start()
        processes.append(process)
    for _ in range(count):
        ready.get(timeout=60)
    return start, results


def _join(processes: list[Any], results: Any) -> dict[str, Any]:
    collected = dict(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    return collected


# -- tests ------------------------------------------------------------------------------------------------------------


def test_concurrent_appends_from_threads_and_processes_make_one_consistent_log(
    tlog: TransparencyLog, database_url: str, ledger: str, signer: Ed25519Signer, spawned: list[Any]
) -> None:
    start, results = _spawn(spawned, _process_appends, PROCESSES, database_url, ledger, signer.private_pem())
    checkpoints: dict[int, str] = {}
    done = threading.Event()

    def take_checkpoints() -> None:  # an exporter signing checkpoints while the workers append
        while not done.is_set():
            checkpoint, note = tlog.checkpoint()
            checkpoints.setdefault(checkpoint.size, note)
            time.sleep(0.01)

    def thread_appends(n: int) -> tuple[str, list[int]]:
        start.wait(30)
        return f"thread-{n}", [tlog.append_entry(entry(f"thread-{n}", i)) for i in range(APPENDS)]

    with ThreadPoolExecutor(max_workers=THREADS + 1) as threads:
        checkpointer = threads.submit(take_checkpoints)
        appending = [threads.submit(thread_appends, n) for n in range(THREADS)]
        start.set()
        indexes = dict(f.result(timeout=120) for f in appending)
        indexes |= _join(spawned, results)
        done.set()
        checkpointer.result(timeout=30)

    total = (PROCESSES + THREADS) * APPENDS
    assert tlog.size() == total
    with tlog._pool.connection() as conn:
        leaves = conn.execute("SELECT leaf_index, leaf_hash, entry FROM tlog_leaves ORDER BY leaf_index").fetchall()
        nodes = conn.execute("SELECT count(*) FROM tlog_nodes").fetchone()
    assert [int(row[0]) for row in leaves] == list(range(total))  # no gap, no duplicate
    entries = [bytes(row[2]) for row in leaves]
    assert all(bytes(row[1]) == leaf_hash(e) for row, e in zip(leaves, entries, strict=True))
    for worker, appended in indexes.items():  # each append landed at the index it was told, once
        assert [entries[i] for i in appended] == [entry(worker, i) for i in range(APPENDS)]
    assert len(set(entries)) == total
    interleaved = [w for w, got in indexes.items() if got != list(range(got[0], got[0] + APPENDS))]
    assert len(interleaved) >= 2, "the workers did not race: each appended in one uninterrupted run"
    assert nodes == (sum(total >> level for level in range(total.bit_length())),)  # every perfect subtree, once

    # The root equals an in-memory RFC 9162 tree over the same entries in index order, and so does every root signed
    # along the way.
    memory, roots = MemoryTree(), {0: MemoryTree().root()}
    for e in entries:
        memory.append(e)
        roots[memory.size] = memory.root()
    final, note = tlog.checkpoint()
    checkpoints[final.size] = note
    opened = {size: open_checkpoint(n, [(ORIGIN, signer.public_key)]) for size, n in checkpoints.items()}
    assert opened[total].root_hash == memory.root() == tlog.root(total)
    for size, checkpoint in opened.items():
        assert checkpoint == Checkpoint(ORIGIN, size, roots[size])
    along_the_way = sorted(size for size in opened if 0 < size < total)
    assert len(along_the_way) >= 3, f"too few checkpoints taken during the appends: {sorted(opened)}"

    # Every leaf has an inclusion proof to the ONE final signed checkpoint.
    for index, e in enumerate(entries):
        verify_inclusion(leaf_hash(e), index, total, tlog.inclusion_proof(index, total), opened[total].root_hash)

    # Consistency between every pair of a few checkpoints taken along the way (and the empty and final trees).
    chosen = sorted({0, *along_the_way[:: max(1, len(along_the_way) // 6)], total})
    for old, new in combinations(chosen, 2):
        old_root = opened[old].root_hash if old in opened else roots[old]
        proof = tlog.consistency_proof(old, new)
        verify_consistency(old, new, old_root, opened[new].root_hash, proof)


def test_append_once_racing_for_the_same_receipt_appends_exactly_one_leaf(
    tlog: TransparencyLog, database_url: str, ledger: str, signer: Ed25519Signer, spawned: list[Any]
) -> None:
    request_id = _create_request(database_url, ledger)
    for i in range(3):  # the log already holds other entries
        tlog.append_entry(entry("earlier", i))
    systems = ["app_db", "uploads", "segment"]
    start, results = _spawn(
        spawned, _process_append_once, 2, database_url, ledger, signer.private_pem(), request_id, systems
    )

    def attempt(n: int, system: str) -> tuple[str, Logged, bool]:
        made: list[bytes] = []
        start.wait(30)
        logged = tlog.append_once(request_id, system, "erase", _envelope_maker(signer, f"thread-{n}", system, made))
        return system, logged, bool(made)

    with ThreadPoolExecutor(max_workers=12) as threads:
        futures = [threads.submit(attempt, n, system) for n in range(4) for system in systems]
        start.set()
        attempts = [f.result(timeout=120) for f in futures]
        for _, out in _join(spawned, results).items():
            attempts += [(system, Logged(envelope, index), made) for system, envelope, index, made in out]

    assert tlog.size() == 3 + len(systems)
    with tlog._pool.connection() as conn:
        rows = conn.execute(
            "SELECT system, envelope, leaf_index FROM receipts WHERE request_id = %s ORDER BY leaf_index", [request_id]
        ).fetchall()
        leaves = {int(i): bytes(e) for i, e in conn.execute("SELECT leaf_index, entry FROM tlog_leaves").fetchall()}
    assert sorted(str(r[0]) for r in rows) == sorted(systems)
    assert sorted(int(r[2]) for r in rows) == [3, 4, 5]
    for system, envelope, index in rows:
        seen = {logged for s, logged, _ in attempts if s == system}
        assert seen == {Logged(bytes(envelope), int(index))}, f"{system}: attempts saw different receipts"
        assert leaves[int(index)] == bytes(envelope)  # the receipt row and its leaf hold the same bytes
        assert sum(made for s, _, made in attempts if s == system) == 1  # only the winner signed
    assert len(attempts) == len(systems) * (4 + 2)


def _create_request(database_url: str, ledger: str) -> str:
    request_id = str(uuid.uuid4())
    with psycopg.connect(database_url, autocommit=True, options=f"-c search_path={ledger}") as conn:
        conn.execute(
            "INSERT INTO requests (request_id, kind, legal_basis, reference, requester, received_on, deadline, "
            "scope, catalogue, catalogue_sha256, state) VALUES (%s, 'court_order', 'test', 'test', %s, "
            "'2026-11-20', '2026-12-18', %s, %s, %s, 'executing')",
            [request_id, Jsonb({}), Jsonb("all"), Jsonb({}), hashlib.sha256(b"{}").hexdigest()],
        )
    return request_id


@pytest.fixture
def second_log(database_url: str, signer: Ed25519Signer) -> Iterator[TransparencyLog]:
    name = f"tlog_{uuid.uuid4().hex[:12]}"
    migrate(database_url, name)
    pool = open_pool(database_url, name, max_size=2)
    yield TransparencyLog(pool, signer, ORIGIN)
    pool.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def _stored_tree(tlog: TransparencyLog) -> tuple[list[Any], list[Any]]:
    with tlog._pool.connection() as conn:
        leaves = conn.execute("SELECT leaf_index, leaf_hash, entry FROM tlog_leaves ORDER BY leaf_index").fetchall()
        nodes = conn.execute("SELECT level, node_index, hash FROM tlog_nodes ORDER BY level, node_index").fetchall()
    return leaves, nodes


def test_batch_appends_store_the_same_tree_and_proofs_as_one_by_one_appends(
    tlog: TransparencyLog, second_log: TransparencyLog
) -> None:
    batches = [1, 2, 3, 7, 16, 33, 64, 1, 100, 29]  # across and onto perfect-subtree borders
    entries = [entry("batch", i) for i in range(sum(batches))]
    for e in entries:
        tlog.append_entry(e)
    start, sizes = 0, []
    for count in batches:
        assert second_log.append_entries(entries[start : start + count]) == start
        start += count
        sizes.append(start)

    assert _stored_tree(second_log) == _stored_tree(tlog)  # every leaf and perfect node, byte for byte
    total = len(entries)
    for size in sizes:
        assert second_log.root(size) == tlog.root(size)
    for index in range(total):
        assert second_log.inclusion_proof(index, total) == tlog.inclusion_proof(index, total)
    for old in sizes:
        assert second_log.consistency_proof(old, total) == tlog.consistency_proof(old, total)
    memory = MemoryTree()
    for e in entries:
        memory.append(e)
    assert second_log.root(total) == memory.root()
    for index in (0, 1, total // 2, total - 1):
        verify_inclusion(
            leaf_hash(entries[index]), index, total, second_log.inclusion_proof(index, total), memory.root()
        )


def test_notarise_many_logs_each_receipt_once_and_a_retry_returns_the_same(
    tlog: TransparencyLog, database_url: str, ledger: str, signer: Ed25519Signer
) -> None:
    first, second = _create_request(database_url, ledger), _create_request(database_url, ledger)
    tlog.append_entry(entry("earlier", 0))
    single = tlog.notarise(first, "app_db/batch/0", "erase", lambda: b'{"batch":0}')

    def statement(request_id: str, n: int) -> Notarisation:
        return Notarisation(request_id, f"app_db/batch/{n}", "erase", b'{"batch":%d}' % n)

    wanted = [statement(first, n) for n in range(4)] + [statement(second, n) for n in range(3)]
    logged = tlog.notarise_many(wanted)

    assert logged[0] == single  # already logged one by one: returned, not appended again
    assert [item.leaf_index for item in logged[1:]] == list(range(2, 8))
    assert tlog.size() == 8
    for item, asked in zip(logged, wanted, strict=True):
        payload = Envelope.from_json(item.envelope)
        assert verify_envelope(payload, {signer.keyid: signer.public_key}) == asked.statement

    again = tlog.notarise_many([*reversed(wanted), statement(second, 3)])  # a retried batch, one more receipt
    assert again[:-1] == list(reversed(logged))
    assert again[-1].leaf_index == 8 and tlog.size() == 9
    rows = {(r.system, r.envelope, r.leaf_index) for r in tlog.receipts(second)}
    assert rows == {
        (f"app_db/batch/{n}", item.envelope, item.leaf_index) for n, item in enumerate([*logged[4:], again[-1]])
    }

    leaves, _ = _stored_tree(tlog)
    total = tlog.size()
    root = tlog.root(total)
    for item in [*logged, again[-1]]:
        assert bytes(leaves[item.leaf_index][2]) == item.envelope
        verify_inclusion(
            leaf_hash(item.envelope), item.leaf_index, total, tlog.inclusion_proof(item.leaf_index, total), root
        )
