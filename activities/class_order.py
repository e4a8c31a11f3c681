"""The activities of a class order: plan its batches, erase one batch, sign its receipt, certify the class.

A batch is erased in one activity (locate, erase, verify on the system's bulk calls): the connectors search the batch's
identifier values with `= ANY` or their own bulk calls, so one call serves the whole batch. The journal of deleted keys
is kept per (system, batch), so a retry after a worker died mid-batch commits to what the dead attempt deleted, and the
baseline counts are those of the first attempt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from temporalio import activity

from activities.class_contracts import (
    CANCEL_CLASS,
    CLASS_PLAN,
    CLASS_PREVIEW,
    CLEAN_UP_SYSTEM,
    ERASE_BATCH,
    RECORD_BATCH_RECEIPT,
    RECORD_CLEAN_UP_RECEIPT,
    SEAL_CLASS,
    SET_PAUSED,
    BatchReceiptInput,
    BatchResult,
    BatchStep,
    CancelInput,
    ClassPlan,
    ClassScope,
    ClassSystem,
    CleanUpReceiptInput,
    CleanUpResult,
    CleanUpStep,
    PausedInput,
)
from activities.contracts import ReceiptResult, RequestInput, SealInput, SealResult
from activities.erasure import ErasureActivities, _LedgerJournal, _merkle_root, _notary_request, _now
from activities.hold import hold
from connectors.registry import build_connector
from domain.classes import batch_count, batch_slice, merged, subject_from_canonical
from domain.errors import TerminalError
from domain.model import IdentifierType, Subject
from domain.states import TaskState
from evidence import notary
from evidence.batch_receipt import (
    CANCELLATION,
    CLEAN_UP,
    BatchFacts,
    batch_path,
    batch_receipt_statement,
    class_cancellation_statement,
    class_certificate_statement,
    clean_up_path,
    weakest_level,
)
from evidence.dsse import Envelope
from evidence.merkle import MemoryTree
from evidence.statement import ReceiptFacts, outcome_for, receipt_statement
from stores.class_ledger import ClassLedger
from stores.pseudonyms import subject_pseudonym

SEALED_CLASS = "class_subjects"  # the vault item: the class's subjects in pseudonym order, canonical forms


def tlog_name(system: str, batch: int) -> str:
    """How the transparency log's receipts table names a batch's receipt."""
    return f"{system}#{batch:06d}"


def batch_of(name: str) -> tuple[str, int] | None:
    """The (system, batch) a receipt's name in the log stands for, or None for a system's own receipt."""
    system, sep, batch = name.rpartition("#")
    return (system, int(batch)) if sep and batch.isdigit() else None


def clean_up_name(system: str) -> str:
    """How the log's receipts table names a system's clean-up receipt (action `clean_up`)."""
    return f"{system}#clean-up"


def clean_up_of(name: str) -> str | None:
    """The system whose clean-up receipt a name in the log stands for, or None."""
    system, sep, rest = name.rpartition("#")
    return system if sep and rest == "clean-up" else None


class ClassOrderActivities(ErasureActivities):
    def __init__(self, *, classes: ClassLedger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._classes = classes
        self._sealed = lru_cache(maxsize=4)(self._load_sealed)

    def all(self) -> list[Callable[..., Any]]:
        return [
            *super().all(),
            self.class_preview,
            self.class_plan,
            self.erase_batch,
            self.record_batch_receipt,
            self.seal_class,
            self.set_paused,
            self.cancel_class,
            self.clean_up_system,
            self.record_clean_up_receipt,
        ]

    def _load_sealed(self, request_id: str) -> list[tuple[bytes, Subject]]:
        """The sealed subjects with their pseudonyms, checked to be in pseudonym order (the batches rest on it)."""
        stored = self._vault.open(request_id, SEALED_CLASS)["subjects"]
        with self._ledger.pool.connection() as conn:
            pseudonyms = self._vault.pseudonyms(conn, request_id)
        pairs = []
        for form in stored:
            subject = subject_from_canonical(form.encode("utf-8"))
            pairs.append((subject_pseudonym(pseudonyms, subject), subject))
        if any(a[0] >= b[0] for a, b in zip(pairs, pairs[1:], strict=False)):
            raise TerminalError(f"request {request_id}: the sealed class is not in pseudonym order")
        return pairs

    @activity.defn(name=CLASS_PREVIEW)
    async def class_preview(self, input: RequestInput) -> ClassScope:
        """The class counted per system (batches, subjects), nothing located: the order then awaits approval."""

        def work() -> ClassScope:
            plan = self._plan_class(input.request_id)
            subjects = len(self._sealed(input.request_id))
            counts = {s.plan.system: {"batches": s.batches, "subjects": subjects} for s in plan.systems}
            at = _now()
            detail = {"systems": counts, "awaiting_approval": True}
            self._ledger.record_event(input.request_id, None, "previewed", "previewed", at, detail)
            self._ledger.awaiting_approval(input.request_id)
            return ClassScope(self._request(input.request_id).submitted_by)

        return await self._run(input.request_id, None, work)

    @activity.defn(name=CLASS_PLAN)
    async def class_plan(self, input: RequestInput) -> ClassPlan:
        def work() -> ClassPlan:
            plan = self._plan_class(input.request_id)
            self._ledger.executing(input.request_id)
            return plan

        return await self._run(input.request_id, None, work)

    def _plan_class(self, request_id: str) -> ClassPlan:
        """The systems' batches, planned in the class ledger (again by a retry or after the preview, changing none)."""
        catalogue = self._catalogue(request_id)
        pairs = self._sealed(request_id)
        systems = []
        for task in self._ledger.tasks(request_id):
            if task.state == TaskState.NOT_APPLICABLE:
                continue
            spec = catalogue.system(task.system)
            size = spec.batches_of
            count = batch_count(len(pairs), size)
            roots = [_root([p for p, _ in pairs[batch_slice(n, size)]]) for n in range(count)]
            self._classes.plan_batches(
                request_id, spec.name, [(len(pairs[batch_slice(n, size)]), r) for n, r in enumerate(roots)]
            )
            systems.append(ClassSystem(self._system_plan(spec), count, spec.kind.capabilities.clean_up_per_system))
        return ClassPlan(systems, catalogue.max_concurrency, self._grace_s)

    @activity.defn(name=ERASE_BATCH)
    async def erase_batch(self, input: BatchStep) -> BatchResult:
        def work() -> BatchResult:
            spec = self._catalogue(input.request_id).system(input.system)
            chunk = self._sealed(input.request_id)[batch_slice(input.batch, spec.batches_of)]
            subject = merged((s for _, s in chunk), spec.identifiers)
            if not subject.kinds():
                raise TerminalError(
                    f"{input.system} batch {input.batch}: no subject of it has an identifier of a type the system is "
                    "keyed by: nothing would be searched"
                )
            journal = _LedgerJournal(
                self._ledger,
                input.request_id,
                tlog_name(input.system, input.batch),
                self._vault.commitment_key(input.request_id),
            )
            with build_connector(spec.connector, spec.name, spec.connector_settings()) as connector:
                inventory = connector.locate(subject)
                self._classes.located(input.request_id, input.system, input.batch, inventory.counts, _now())
                outcome = connector.erase_batch(subject, f"{input.request_id}/{input.system}/{input.batch}", journal)
                hold(self._hold_dir, f"erased.{input.system}.{input.batch}")  # a test may kill the worker here
                journal.intend(outcome.deleted_keys)
                verified = connector.verify_batch(subject)
            leaves = self._ledger.journaled(input.request_id, tlog_name(input.system, input.batch))
            level, detail = verified.level, verified.detail or outcome.detail
            self._classes.erased(
                input.request_id,
                input.system,
                input.batch,
                deleted=len(leaves),
                blocked=outcome.blocked,
                key_commitment=_merkle_root(leaves),
                remaining=verified.remaining,
                level=level,
                detail=detail,
            )
            return BatchResult(level, detail)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=RECORD_BATCH_RECEIPT)
    async def record_batch_receipt(self, input: BatchReceiptInput) -> ReceiptResult:
        def work() -> ReceiptResult:
            spec = self._catalogue(input.request_id).system(input.system)
            batch = self._classes.batch(input.request_id, input.system, input.batch)
            facts = BatchFacts(
                request_id=input.request_id,
                system=input.system,
                category=spec.category.value,
                connector=spec.connector,
                batch=input.batch,
                subjects=batch.subjects,
                batch_root=batch.batch_root.hex(),
                evidence_level=input.level,
                records_before=batch.records_before,
                records_after=batch.records_after,
                locations=notary._locations(batch.counts_before, batch.counts_after),
                blocked=batch.blocked,
                key_commitment=batch.key_commitment,
                key_count=batch.key_count,
                detail=input.detail,
                workflow_id=input.workflow_id,
                run_id=input.run_id,
                activity_id=activity.info().activity_id,
                code_version=self._code_version,
                started_at=input.started_at,
                finished_at=input.finished_at,
            )

            def statement() -> bytes:
                made = batch_receipt_statement(facts)
                hold(self._hold_dir, f"signing.{input.system}.{input.batch}")  # inside the log's transaction
                return made

            logged = self._tlog.notarise(
                input.request_id, tlog_name(input.system, input.batch), notary.ERASE, statement
            )
            self._classes.done(input.request_id, input.system, input.batch, input.level, input.detail, _now())
            return ReceiptResult(hashlib.sha256(logged.envelope).hexdigest(), logged.leaf_index)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=CLEAN_UP_SYSTEM)
    async def clean_up_system(self, input: CleanUpStep) -> CleanUpResult:
        def work() -> CleanUpResult:
            spec = self._catalogue(input.request_id).system(input.system)
            sealed = self._sealed(input.request_id)
            # the done batches' children only: a cancelled order's others keep their rows, which are not traces
            done = [
                b.batch
                for b in self._classes.batches(input.request_id)
                if b.system == input.system and b.state == "done"
            ]
            chunks = [s for n in sorted(done) for _, s in sealed[batch_slice(n, spec.batches_of)]]
            subject = merged(chunks, spec.identifiers)
            with build_connector(spec.connector, spec.name, spec.connector_settings()) as connector:
                verified = connector.clean_up(subject)
            facts = self._keyed(input.request_id, verified.facts)  # typed facts; any opaque one keyed
            return CleanUpResult(str(verified.level), verified.detail, dict(verified.remaining), dict(facts))

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=RECORD_CLEAN_UP_RECEIPT)
    async def record_clean_up_receipt(self, input: CleanUpReceiptInput) -> ReceiptResult:
        def work() -> ReceiptResult:
            spec = self._catalogue(input.request_id).system(input.system)
            result = input.result
            facts = ReceiptFacts(
                request_id=input.request_id,
                system=input.system,
                category=spec.category.value,
                connector=spec.connector,
                action=CLEAN_UP,
                evidence_level=result.level,
                records_before=None,  # the batch receipts count the rows; this step removes files and history
                records_after=sum(result.remaining.values()),
                blocked=0,
                locations={name: (None, n) for name, n in result.remaining.items()},
                key_commitment=None,
                key_count=0,
                vendor_job_id=None,
                vendor_status=None,
                detail=result.detail,
                notes=(),
                workflow_id=input.workflow_id,
                run_id=input.run_id,
                activity_id=activity.info().activity_id,
                code_version=self._code_version,
                started_at=input.started_at,
                finished_at=input.finished_at,
                vendor_facts=result.facts,
            )
            logged = self._tlog.notarise(
                input.request_id, clean_up_name(input.system), CLEAN_UP, lambda: receipt_statement(facts)
            )
            return ReceiptResult(hashlib.sha256(logged.envelope).hexdigest(), logged.leaf_index)

        return await self._run(input.request_id, input.system, work)

    @activity.defn(name=SET_PAUSED)
    async def set_paused(self, input: PausedInput) -> None:
        await self._run(input.request_id, None, lambda: self._classes.set_paused(input.request_id, input.paused))

    @activity.defn(name=CANCEL_CLASS)
    async def cancel_class(self, input: CancelInput) -> None:
        await self._run(input.request_id, None, lambda: self._cancel_class(input))

    def _cancel_class(self, input: CancelInput) -> None:
        """End a cancelled class order: a signed statement over the batch receipts logged so far, then the request
        `cancelled` with the reason and that count. A batch counts as done when its receipt is in the log."""
        logged = {r.system: r.envelope for r in self._tlog.receipts(input.request_id) if r.action == notary.ERASE}
        batches = self._classes.batches(input.request_id)
        receipts = {
            batch_path(b.system, b.batch): logged[tlog_name(b.system, b.batch)]
            for b in batches
            if tlog_name(b.system, b.batch) in logged
        }
        cleaned = self._clean_up_receipts(input.request_id)
        facts = {
            "batches_done": len(receipts),
            "batches": len(batches),
            "log_origin": self._tlog.origin,
            "code_version": self._code_version,
            "cancelled_at": input.at,
        }
        statement = class_cancellation_statement(input.request_id, input.reason, receipts | cleaned, facts)
        self._tlog.notarise(input.request_id, notary.REQUEST_SYSTEM, CANCELLATION, lambda: statement)
        self._ledger.class_cancelled(
            input.request_id,
            input.reason,
            datetime.fromisoformat(input.at),
            batches_done=len(receipts),
            batches=len(batches),
        )

    @activity.defn(name=SEAL_CLASS)
    async def seal_class(self, input: SealInput) -> SealResult:
        return await self._run(input.request_id, None, lambda: self._seal_class(input.request_id))

    def _seal_class(self, request_id: str) -> SealResult:
        """Certify the class from the ledger and the log: every batch of every system in scope has its receipt."""
        request = self._ledger.request(request_id)
        record = self._classes.record(request_id)
        if request is None or record is None:
            raise TerminalError(f"request {request_id} is not a class order in the ledger")
        logged = {r.system: r.envelope for r in self._tlog.receipts(request_id) if r.action == notary.ERASE}
        batches = self._classes.batches(request_id)
        missing = [tlog_name(b.system, b.batch) for b in batches if tlog_name(b.system, b.batch) not in logged]
        if missing:
            raise TerminalError(f"expected a receipt of every batch, none for {len(missing)} of {len(batches)}")
        catalogue = self._catalogue(request_id)
        systems = sorted({b.system for b in batches})
        cleaning = [s for s in systems if catalogue.system(s).kind.capabilities.clean_up_per_system]
        cleaned = self._clean_up_receipts(request_id)
        if any(clean_up_path(s) not in cleaned for s in cleaning):
            raise TerminalError(f"expected a clean-up receipt of each of {len(cleaning)} systems, got {len(cleaned)}")
        tasks = {t.system: t for t in self._ledger.tasks(request_id)}
        finished = []
        for system in systems:
            mine = [b for b in batches if b.system == system]
            # a system cleaned up after its batches is done as far as its weakest step: its clean-up counts too
            levels = {b.evidence_level for b in mine} | (
                {_level_in(cleaned[clean_up_path(system)])} if system in cleaning else set()
            )
            finished.append(
                notary.FinishedSystem(
                    system=system,
                    category=tasks[system].category,
                    evidence_level=weakest_level(str(lv) for lv in levels),
                    records_before=sum(b.records_before or 0 for b in mine),
                    records_after=sum(b.records_after or 0 for b in mine),
                )
            )
        issued_at = _now()
        facts = notary.certificate_facts(
            _notary_request(request),
            finished,
            not_searched={t.system: t.detail for t in tasks.values() if t.state == TaskState.NOT_APPLICABLE},
            log_origin=self._tlog.origin,
            code_version=self._code_version,
            issued_at=issued_at.isoformat(),
            shredding_by=(issued_at + timedelta(seconds=self._grace_s)).isoformat(),
            backups=self._backups,
        )
        facts = dataclasses.replace(
            facts, systems=tuple(dataclasses.replace(s, receipt=f"receipts/{s.system}/") for s in facts.systems)
        )
        receipts = {batch_path(b.system, b.batch): logged[tlog_name(b.system, b.batch)] for b in batches} | cleaned
        class_facts = {
            "subject_count": record.subject_count,
            "merkle_root": record.merkle_root.hex(),
            "source": record.source,
            "cutoff": record.cutoff.isoformat() if record.cutoff else None,
            "snapshot_at": record.snapshot_at.isoformat(),
            "batches": {s.system: sum(1 for b in batches if b.system == s.system) for s in finished},
            "clean_up": cleaning,
        }
        statement = class_certificate_statement(facts, receipts, class_facts)
        certified = self._tlog.notarise(request_id, notary.REQUEST_SYSTEM, notary.CERTIFICATE, lambda: statement)
        self._suppression.add(merged((s for _, s in self._sealed(request_id)), set(IdentifierType)))
        for line in finished:
            self._ledger.done(
                request_id,
                line.system,
                evidence_level=line.evidence_level,
                detail=f"{len([b for b in batches if b.system == line.system])} batches",
                started_at=min(
                    (b.started_at for b in batches if b.system == line.system and b.started_at), default=issued_at
                ),
                finished_at=max(
                    (b.finished_at for b in batches if b.system == line.system and b.finished_at), default=issued_at
                ),
            )
        outcome = outcome_for(s.evidence_level for s in finished)
        self._ledger.certified(request_id, outcome)
        return SealResult(outcome, hashlib.sha256(certified.envelope).hexdigest())

    def _clean_up_receipts(self, request_id: str) -> dict[str, bytes]:
        """The systems' clean-up receipts logged so far, by their path in a bundle."""
        return {
            clean_up_path(system): r.envelope
            for r in self._tlog.receipts(request_id)
            if r.action == CLEAN_UP and (system := clean_up_of(r.system)) is not None
        }


def _level_in(envelope: bytes) -> str:
    """The evidence level a receipt this orchestrator signed states."""
    return str(json.loads(Envelope.from_json(envelope).payload)["predicate"]["evidence_level"])


def _root(pseudonyms: list[bytes]) -> bytes:
    """The RFC 9162 root over the pseudonyms as given (already in order): leaves are the raw 32 bytes."""
    tree = MemoryTree()
    for pseudonym in pseudonyms:
        tree.append(pseudonym)
    return tree.root()
