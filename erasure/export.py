"""Assemble a request's evidence bundle from the transparency log: its statements, proofs and checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from activities.class_order import batch_of, clean_up_of
from domain.errors import ErasureError, InvalidInput
from erasure.services import Services
from evidence import notary
from evidence.batch_receipt import CLEAN_UP, batch_path, clean_up_path
from evidence.bundle import CERTIFICATE as CERTIFICATE_PATH
from evidence.bundle import SHRED as SHRED_PATH
from evidence.bundle import Bundle, InclusionProof, receipt_path, superseded_path
from evidence.checkpoint import open_checkpoint
from evidence.dsse import Envelope
from evidence.errors import VerificationError
from evidence.keys import keyid_of, public_key_pem
from evidence.report import render_report, verify_instructions
from evidence.statement import parse_statement

# Consistency proofs from this many of the most recent published checkpoints travel in every bundle; an auditor
# holding an older checkpoint asks for a proof from it with `since`.
RECENT_CHECKPOINTS = 100


def export_bundle(services: Services, request_id: str, path: Path, since: Sequence[str] = ()) -> Bundle:
    """Write the request's bundle; `since` are checkpoints (signed notes) an auditor already holds."""
    logged = {(r.system, r.action): (r.envelope, r.leaf_index) for r in services.tlog.receipts(request_id)}
    certificates = sorted(
        (number, entry)
        for (system, action), entry in logged.items()
        if system == notary.REQUEST_SYSTEM and (number := notary.certificate_number(action)) is not None
    )
    if not certificates:
        raise ErasureError(f"request {request_id} has no certificate yet: wait until `erasure status` says certified")
    certificate, certificate_index = certificates[-1][1]  # the current one: each later certificate supersedes
    named = {
        s["name"]: s["digest"]["sha256"] for s in parse_statement(Envelope.from_json(certificate).payload)["subject"]
    }
    receipts = {  # the receipts the certificate names: a held system's hold receipt, or its erasure's
        _bundle_path(system): entry
        for (system, action), entry in logged.items()
        if action in (notary.ERASE, notary.HOLD, CLEAN_UP)
        and system != notary.REQUEST_SYSTEM
        and named.get(_bundle_path(system)) == hashlib.sha256(entry[0]).hexdigest()
    }
    tlog = services.tlog
    checkpoint, note = tlog.checkpoint()  # signing it publishes it: later bundles prove consistency with it
    shred = logged.get((notary.REQUEST_SYSTEM, notary.SHRED))  # logged after the certificate: not its subject
    proofs = {CERTIFICATE_PATH: _proof(services, certificate_index, checkpoint.size)}
    # every earlier certificate (issued while a legal hold stopped systems) travels too, so each can be checked
    superseded = {superseded_path(number): entry for number, entry in certificates[:-1]}
    for name, (_, index) in [*receipts.items(), *superseded.items(), *([(SHRED_PATH, shred)] if shred else [])]:
        proofs[name] = _proof(services, index, checkpoint.size)
    sizes = set(tlog.earlier_checkpoint_sizes(checkpoint.size, RECENT_CHECKPOINTS))
    sizes.update(_held_size(services, held, checkpoint.size) for held in since)
    consistency = {size: tuple(tlog.consistency_proof(size, checkpoint.size)) for size in sorted(sizes)}
    signer = tlog.signer
    statement = parse_statement(Envelope.from_json(certificate).payload)
    bundle = Bundle(
        certificate=certificate,
        receipts={name: envelope for name, (envelope, _) in receipts.items()},
        checkpoint=note,
        proofs=proofs,
        consistency=consistency,
        public_keys={keyid_of(signer.public_key): public_key_pem(signer.public_key)},
        report_html=render_report(
            statement,
            [
                (number, hashlib.sha256(envelope).hexdigest(), parse_statement(Envelope.from_json(envelope).payload))
                for number, (envelope, _) in certificates[:-1]
            ],
        ),
        verify_txt=verify_instructions([keyid_of(signer.public_key)], tlog.origin),
        shred_receipt=shred[0] if shred else None,
        superseded={name: envelope for name, (envelope, _) in superseded.items()},
    )
    bundle.sign(signer)
    try:
        bundle.write(path)
    except OSError as exc:
        raise ErasureError(f"cannot write the bundle to {path}: {exc.strerror or type(exc).__name__}") from None
    return bundle


def _bundle_path(name: str) -> str:
    """A receipt's path in the bundle: a system's, or one batch's of a class order (log name `<system>#<batch>`), or
    a class order's system's clean-up (`<system>#clean-up`)."""
    if (cleaned := clean_up_of(name)) is not None:
        return clean_up_path(cleaned)
    batch = batch_of(name)
    return receipt_path(name) if batch is None else batch_path(*batch)


def _held_size(services: Services, note: str, current_size: int) -> int:
    """The size of a checkpoint an auditor holds, once it is shown to be one of this log's own."""
    tlog = services.tlog
    try:
        held = open_checkpoint(note, [(tlog.origin, tlog.signer.public_key)])
    except VerificationError as exc:
        raise InvalidInput("--since", "checkpoint", f"is not a checkpoint of this log: {exc}") from None
    if held.size > current_size:
        raise InvalidInput("--since", "checkpoint", f"is larger than the log ({held.size} > {current_size})")
    if held.size and tlog.root(held.size) != held.root_hash:
        raise ErasureError(f"the checkpoint at size {held.size} does not match this log's root at that size")
    return held.size


def _proof(services: Services, leaf_index: int, size: int) -> InclusionProof:
    return InclusionProof(
        leaf_index=leaf_index, tree_size=size, hashes=tuple(services.tlog.inclusion_proof(leaf_index, size))
    )


def public_key_file(services: Services, path: Path) -> Path:
    """Write the signing key's public half, for `--trusted-key` on another machine."""
    path.write_bytes(public_key_pem(services.tlog.signer.public_key))
    return path
