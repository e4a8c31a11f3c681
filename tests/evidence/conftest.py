"""Evidence as the orchestrator seals it, and known-bad variants of it named after their defect.

`make_bundle(defect)` writes `bundle_<defect>.zip` and returns it with the checkpoint an auditor kept from before
the request (the log then held 5 unrelated entries). The good bundle: 3 receipts and a certificate appended to
that log, one more unrelated entry after them, a checkpoint at size 10, inclusion proofs and a consistency proof
from size 5.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from evidence import notary
from evidence.bundle import CERTIFICATE, Bundle, InclusionProof, receipt_path, superseded_path
from evidence.checkpoint import Checkpoint, sign_checkpoint
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae, sign_envelope
from evidence.keys import Ed25519Signer, public_key_pem
from evidence.merkle import MemoryTree, consistency_proof, inclusion_proof
from evidence.report import render_report, verify_instructions
from evidence.statement import CertificateFacts, ReceiptFacts, parse_statement, receipt_statement

ORIGIN = "erasure-orchestrator.test/log"
REQUEST_ID = "0b7e4a52-8f1c-4d6e-9a3b-5c2d1e0f9a87"
OTHER_REQUEST_ID = "6f1d2c3b-4a59-4e8f-8d7c-6b5a49382716"
EARLIER_SIZE = 5
RECEIPT = "receipts/app_db.dsse.json"

# (system, category, evidence level, records before, records after)
SYSTEMS = (
    ("app_db", "storage", "verified_absent", 12, 0),
    ("media_bucket", "storage", "blocked", 40, 40),
    ("segment", "analytics", "vendor_attested", 3, None),
)


@dataclass
class Sealed:
    """What the orchestrator holds after sealing a request: its log, the bundle and an earlier checkpoint."""

    log: MemoryTree
    bundle: Bundle
    earlier_checkpoint: str


@dataclass
class Case:
    path: Path
    previous_checkpoint: str


MakeBundle = Callable[..., Case]


def receipt_facts(system: str, category: str, level: str, before: int | None, after: int | None) -> ReceiptFacts:
    return ReceiptFacts(
        request_id=REQUEST_ID,
        system=system,
        category=category,
        connector=f"{system}-connector",
        action="erase",
        evidence_level=level,
        records_before=before,
        records_after=after,
        blocked=(before or 0) if level == "blocked" else 0,
        locations={f"{system}.main": (before, after)},
        key_commitment="ab" * 32,
        key_count=before or 0,
        vendor_job_id="job-17" if level == "vendor_attested" else None,
        vendor_status="FINISHED" if level == "vendor_attested" else None,
        detail="",
        notes=("legal hold: litigation 2024-117",) if level == "blocked" else (),
        workflow_id=f"{REQUEST_ID}/{system}",
        run_id="run-1",
        activity_id="4",
        code_version="0.1.0+test",
        started_at="2025-03-01T10:00:00Z",
        finished_at="2025-03-01T10:05:00Z",
    )


REQUEST = notary.Request(
    request_id=REQUEST_ID,
    kind="court_order",
    legal_basis="GDPR Art. 17 with Art. 8",
    reference="High Court, claim QB-2025-000123",
    received_on=date(2025, 2, 27),
    deadline=date(2025, 3, 27),
)
NOT_SEARCHED = {"crm": "the request has no identifier of a type it is keyed by (device_id)"}
CODE_VERSION = "0.1.0+test"
ISSUED_AT = "2025-03-01T10:10:00Z"
SHREDDING_BY = "2025-03-31T10:10:00Z"
BACKUPS = notary.Backups(retention_days=35)
HOLD_CASE = "litigation 2024-117"


def certificate_facts(systems: tuple[notary.FinishedSystem, ...]) -> CertificateFacts:
    """What the notary certifies for these systems of the fixture's request."""
    return notary.certificate_facts(
        REQUEST,
        systems,
        not_searched=NOT_SEARCHED,
        log_origin=ORIGIN,
        code_version=CODE_VERSION,
        issued_at=ISSUED_AT,
        shredding_by=SHREDDING_BY,
        backups=BACKUPS,
    )


def certificate(
    systems: tuple[notary.FinishedSystem, ...],
    envelopes: dict[str, bytes],
    request: notary.Request = REQUEST,
    *,
    held: dict[str, list[str]] | None = None,
    supersedes: str = "",
) -> bytes:
    """The certificate Statement the notary makes for these systems' receipt envelopes (system -> envelope)."""
    return notary.certificate(
        request,
        systems,
        envelopes,
        not_searched=NOT_SEARCHED,
        log_origin=ORIGIN,
        code_version=CODE_VERSION,
        issued_at=ISSUED_AT,
        shredding_by=SHREDDING_BY,
        backups=BACKUPS,
        held=held,
        supersedes=supersedes,
    )


def seal(
    signer: Ed25519Signer,
    *,
    levels: dict[str, str] | None = None,
    foreign_signer: Ed25519Signer | None = None,
    foreign_request: bool = False,
    extra_receipt: bool = False,
    superseded: int = 0,
) -> Sealed:
    """Seal the request the way the orchestrator does; the options plant defects that must be built in.
    `superseded` earlier certificates (partial: a legal hold stopped media_bucket) are logged before the current one,
    each naming the one before, as releases of holds make them."""
    log = MemoryTree()
    for i in range(EARLIER_SIZE):
        log.append(b"unrelated entry %d" % i)
    earlier = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer, ORIGIN)

    envelopes: dict[str, bytes] = {}
    finished = []
    for system, category, level, before, after in SYSTEMS:
        level = (levels or {}).get(system, level)
        facts = receipt_facts(system, category, level, before, after)
        if foreign_request and system == "segment":
            facts = dataclasses.replace(facts, request_id=OTHER_REQUEST_ID)
        by = foreign_signer if foreign_signer and system == "segment" else signer
        envelopes[system] = sign_envelope(receipt_statement(facts), IN_TOTO_PAYLOAD_TYPE, by).to_json()
        finished.append(notary.FinishedSystem(system, category, level, before, after))
    receipts = {receipt_path(system): envelope for system, envelope in envelopes.items()}
    indexes = {path: log.append(data) for path, data in receipts.items()}
    earlier_certificates: dict[str, bytes] = {}
    supersedes = ""
    for number in range(1, superseded + 1):
        partial = certificate(tuple(finished), envelopes, held={"media_bucket": [HOLD_CASE]}, supersedes=supersedes)
        signed = sign_envelope(partial, IN_TOTO_PAYLOAD_TYPE, signer).to_json()
        earlier_certificates[superseded_path(number)] = signed
        indexes[superseded_path(number)] = log.append(signed)
        supersedes = hashlib.sha256(signed).hexdigest()
    certificate_payload = certificate(tuple(finished), envelopes, supersedes=supersedes)
    signed_certificate = sign_envelope(certificate_payload, IN_TOTO_PAYLOAD_TYPE, signer).to_json()
    if extra_receipt:  # signed and logged, but made after the certificate, which does not list it
        extra = receipt_facts("warehouse", "analytics", "verified_absent", 1, 0)
        receipts[receipt_path("warehouse")] = sign_envelope(
            receipt_statement(extra), IN_TOTO_PAYLOAD_TYPE, signer
        ).to_json()
        indexes[receipt_path("warehouse")] = log.append(receipts[receipt_path("warehouse")])

    indexes[CERTIFICATE] = log.append(signed_certificate)
    log.append(b"unrelated later entry")
    checkpoint = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), signer, ORIGIN)
    signers = [signer, *([foreign_signer] if foreign_signer else [])]
    keys = {s.keyid: public_key_pem(s.public_key) for s in signers}
    bundle = Bundle(
        certificate=signed_certificate,
        receipts=receipts,
        checkpoint=checkpoint,
        proofs={p: InclusionProof(i, log.size, tuple(inclusion_proof(i, log.size, log))) for p, i in indexes.items()},
        consistency={EARLIER_SIZE: tuple(consistency_proof(EARLIER_SIZE, log.size, log))},
        public_keys=keys,
        report_html=render_report(
            parse_statement(certificate_payload),
            [
                (number, hashlib.sha256(signed).hexdigest(), parse_statement(Envelope.from_json(signed).payload))
                for number, signed in enumerate(earlier_certificates.values(), start=1)
            ],
        ),
        verify_txt=verify_instructions(sorted(keys), ORIGIN),
        superseded=earlier_certificates,
    )
    return Sealed(log=log, bundle=bundle, earlier_checkpoint=earlier)


def change_base64_char(envelope: bytes, field: str) -> bytes:
    """The envelope with one character of a base64 field replaced: a one-byte change in the file."""
    start = envelope.index(f'"{field}":"'.encode()) + len(field) + 4 + 10
    replacement = b"B" if envelope[start : start + 1] == b"A" else b"A"
    return envelope[:start] + replacement + envelope[start + 1 :]


def _receipt_byte_changed(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    s.bundle.receipts[RECEIPT] = change_base64_char(s.bundle.receipts[RECEIPT], "payload")
    return s.earlier_checkpoint


def _certificate_byte_changed(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    s.bundle.certificate = change_base64_char(s.bundle.certificate, "payload")
    return s.earlier_checkpoint


def _swapped_payload_type(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    envelope = Envelope.from_json(s.bundle.receipts[RECEIPT])
    s.bundle.receipts[RECEIPT] = dataclasses.replace(envelope, payload_type="application/json").to_json()
    return s.earlier_checkpoint


def _receipt_missing(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    del s.bundle.receipts["receipts/media_bucket.dsse.json"], s.bundle.proofs["receipts/media_bucket.dsse.json"]
    return s.earlier_checkpoint


def _receipt_reformatted(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    # Same payload and a valid signature, but not the bytes the certificate and the log committed to.
    s.bundle.receipts[RECEIPT] = json.dumps(json.loads(s.bundle.receipts[RECEIPT]), indent=2).encode()
    return s.earlier_checkpoint


def _proof_not_to_root(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    proof = s.bundle.proofs[RECEIPT]
    broken = (bytes([proof.hashes[0][0] ^ 1]) + proof.hashes[0][1:], *proof.hashes[1:])
    s.bundle.proofs[RECEIPT] = dataclasses.replace(proof, hashes=broken)
    return s.earlier_checkpoint


def _proof_for_other_size(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    index, size = s.bundle.proofs[RECEIPT].leaf_index, s.log.size - 1  # a true proof, for an older tree
    s.bundle.proofs[RECEIPT] = InclusionProof(index, size, tuple(inclusion_proof(index, size, s.log)))
    return s.earlier_checkpoint


def _checkpoint_signature_bad(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    body, _, line = s.bundle.checkpoint.rpartition("\n\u2014 ")
    name, encoded = line.split(" ")
    position = 20  # inside the Ed25519 signature, past the 4-byte key id
    flipped = encoded[:position] + ("B" if encoded[position] == "A" else "A") + encoded[position + 1 :]
    s.bundle.checkpoint = f"{body}\n\u2014 {name} {flipped}"
    return s.earlier_checkpoint


def _checkpoint_size_changed(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    s.bundle.checkpoint = s.bundle.checkpoint.replace(f"\n{s.log.size}\n", f"\n{s.log.size + 1}\n", 1)
    return s.earlier_checkpoint


def _envelope_signature_bad(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    envelope = Envelope.from_json(s.bundle.receipts[RECEIPT])
    forged = Signature(signer.keyid, attacker.sign(pae(envelope.payload_type, envelope.payload)))
    s.bundle.receipts[RECEIPT] = dataclasses.replace(envelope, signatures=(forged,)).to_json()
    return s.earlier_checkpoint


def _key_file_misnamed(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    s.bundle.public_keys = {attacker.keyid: s.bundle.public_keys[signer.keyid]}
    return s.earlier_checkpoint


def _consistency_proof_missing(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    s.bundle.consistency = {}
    return s.earlier_checkpoint


def _previous_checkpoint_forked(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    fork = MemoryTree()
    for i in range(EARLIER_SIZE):
        fork.append(b"rewritten entry %d" % i)
    return sign_checkpoint(Checkpoint(ORIGIN, fork.size, fork.root()), signer, ORIGIN)


def _previous_checkpoint_larger(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    for i in range(3):
        s.log.append(b"entry the bundle's checkpoint rolled back %d" % i)
    return sign_checkpoint(Checkpoint(ORIGIN, s.log.size, s.log.root()), signer, ORIGIN)


def _previous_checkpoint_untrusted(s: Sealed, signer: Ed25519Signer, attacker: Ed25519Signer) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, EARLIER_SIZE, s.log.root()), attacker, ORIGIN)


Mutation = Callable[[Sealed, Ed25519Signer, Ed25519Signer], str]

# Defects applied to the sealed evidence afterwards, as someone who got hold of the bundle (or the log) could.
MUTATIONS: dict[str, Mutation] = {
    "receipt_byte_changed": _receipt_byte_changed,
    "certificate_byte_changed": _certificate_byte_changed,
    "swapped_payload_type": _swapped_payload_type,
    "receipt_missing": _receipt_missing,
    "receipt_reformatted": _receipt_reformatted,
    "proof_not_to_root": _proof_not_to_root,
    "proof_for_other_size": _proof_for_other_size,
    "checkpoint_signature_bad": _checkpoint_signature_bad,
    "checkpoint_size_changed": _checkpoint_size_changed,
    "envelope_signature_bad": _envelope_signature_bad,
    "key_file_misnamed": _key_file_misnamed,
    "consistency_proof_missing": _consistency_proof_missing,
    "previous_checkpoint_forked": _previous_checkpoint_forked,
    "previous_checkpoint_larger": _previous_checkpoint_larger,
    "previous_checkpoint_untrusted": _previous_checkpoint_untrusted,
}


@pytest.fixture(scope="session")
def signer() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture(scope="session")
def attacker() -> Ed25519Signer:
    return Ed25519Signer.generate()


@pytest.fixture
def make_bundle(tmp_path: Path, signer: Ed25519Signer, attacker: Ed25519Signer) -> MakeBundle:
    """Factory: make_bundle("good") or a defect name; defects built into the sealing are options of seal()."""

    def make(defect: str = "good", **options: object) -> Case:
        if defect == "untrusted_key":
            options["foreign_signer"] = attacker
        elif defect == "extra_receipt":
            options["extra_receipt"] = True
        elif defect == "receipt_from_other_request":
            options["foreign_request"] = True
        sealed = seal(signer, **options)  # type: ignore[arg-type]
        previous = MUTATIONS[defect](sealed, signer, attacker) if defect in MUTATIONS else sealed.earlier_checkpoint
        sealed.bundle.sign(signer)  # after the defect: the manifest (step 3) alone would catch every one of them
        path = tmp_path / f"bundle_{defect}.zip"
        sealed.bundle.write(path)
        return Case(path=path, previous_checkpoint=previous)

    return make
