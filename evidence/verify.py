"""Offline verification of an evidence bundle: one public entry, `verify_bundle`, which fails closed.

The plan; each block of `verify_bundle` is tagged with its number, and docs/evidence.md lists the same steps.

 (1) The bundle is read strictly, as one reading of a canonical zip: no entry outside the layout, no duplicate
     or case-folded names, no extra field (such as a Unicode path that names another file), comment, link,
     encryption or byte outside the entries; at most 2,000 entries and 32 MiB uncompressed, counted on the bytes
     read; and log/proofs.json and log/consistency.json in canonical form.
 (2) Every key file is an Ed25519 public key named after its key id. The trusted keys are the ones given, or the
     bundle's key files whose key ids are given; with neither, verification fails and names the bundle's key
     ids, unless the caller explicitly trusts the bundle's own keys, which checks integrity only.
 (3) The manifest has payload type application/vnd.in-toto+json, a valid signature by a trusted key over the
     DSSE PAE, the manifest predicate type, and its subjects are exactly every other entry of the bundle, each
     with the SHA-256 of its bytes.
 (4) The checkpoint is a C2SP signed note, signed by a trusted key under a key name equal to its origin.
 (5) The certificate envelope likewise: an in-toto Statement v1 with the certificate predicate type, naming this
     checkpoint's log.
 (6) Each receipt envelope likewise, with the receipt predicate type and the certificate's request id; a class
     order's certificate (its predicate holds `class`) has batch receipts instead (evidence/batch_receipt.py),
     and a receipt of action `clean_up` of each system its `clean_up` names.
 (7) The shredding receipt, if the bundle holds one: likewise, for the certificate's request, with action shred.
 (8) The receipts are exactly the certificate's subjects, each with the SHA-256 of its bytes, and every system
     of the certificate points at one of them; for a class order, at the folder of its batch receipts, which hold
     batches 0..n-1 (n the certificate's count for the system), each at its own path, of the class's subjects in all,
     and `clean-up.dsse.json`, the system's clean-up receipt, when the class's `clean_up` names it.
 (9) The certificate, every receipt, the shredding receipt and every superseded certificate have an inclusion proof at the checkpoint's tree
     size that leads from the leaf hash of their exact bytes to the checkpoint's root (RFC 9162 section
     2.1.3.2), and no other path has one.
(10) The certificate claims no more than its receipts: each system's evidence level is its receipt's (for a class
     order, the weakest of its batches' and its clean-up's), and the
     outcome is the one the receipts' levels and residual copies give (a certificate re-signed with the trusted key
     that says `complete` over a `failed` receipt fails).
(11) With a previous checkpoint: it is signed by a trusted key for the same log; it is not larger than this one
     (a rollback); at equal size the roots are equal (else a fork); otherwise log/consistency.json holds a valid
     consistency proof from its size (RFC 9162 section 2.1.4.2); a missing proof is a failure.
(12) The superseded certificates, if the certificate supersedes one: certificates 1 to n-1 of the request are all in
     the bundle, each an in-toto statement with the certificate predicate type signed by a trusted key, for this
     request and this log; the first supersedes none, each later one (the current one last) names the SHA-256 of the
     one before, and each was logged before the one that supersedes it. The current certificate is the last.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence._json import typed
from evidence.batch_receipt import (
    BATCH_RECEIPT_PREDICATE_TYPE,
    CLEAN_UP,
    CLEAN_UP_FILE,
    batch_path,
    clean_up_path,
    weakest_level,
)
from evidence.bundle import CERTIFICATE, CHECKPOINT, MANIFEST, SHRED, SUPERSEDED_PATH, Bundle, superseded_path
from evidence.checkpoint import Checkpoint, open_checkpoint
from evidence.dsse import Envelope, verify_envelope
from evidence.errors import VerificationError
from evidence.keys import keyid_of, load_public_key_pem
from evidence.manifest import MANIFEST_PREDICATE_TYPE, check_manifest
from evidence.merkle import leaf_hash, verify_consistency, verify_inclusion
from evidence.statement import (
    CERTIFICATE_PREDICATE_TYPE,
    RECEIPT_PREDICATE_TYPE,
    outcome_for,
    parse_statement,
    request_subject,
)


@dataclass(frozen=True)
class Superseded:
    """An earlier certificate of the request that a later one replaced."""

    number: int
    sha256: str
    outcome: str
    issued_at: str


@dataclass
class VerificationReport:
    checks: list[str]  # one line per passed check, in order
    request_id: str
    outcome: str
    tree_size: int
    keys_from_bundle: bool  # the caller trusted the bundle's own keys: integrity only, not who signed
    shredded: bool  # the bundle carries the receipt for the destroyed request key
    supersedes: str = ""  # the SHA-256 of the earlier certificate (issued under a legal hold) this one replaces
    superseded: tuple[Superseded, ...] = ()  # every earlier certificate, oldest first; the bundle's is the current one


def verify_bundle(
    path: Path,
    *,
    trusted_keys: Sequence[Ed25519PublicKey] = (),
    trusted_keyids: Sequence[str] = (),
    unsafe_trust_bundled_keys: bool = False,
    previous_checkpoint: str | None = None,
) -> VerificationReport:
    """Verify the bundle at `path`; VerificationError at the first failed check.

    Trust comes from outside the bundle: `trusted_keys`, or `trusted_keyids` of key files in the bundle (a key id
    is the SHA-256 of the key, so it pins the key as well). `unsafe_trust_bundled_keys` trusts whatever keys the
    bundle brings, which proves only that the bundle is intact, not who made it.
    """
    # (1)
    bundle = Bundle.read(path)
    checks = [f"bundle layout is exact: a certificate, {len(bundle.receipts)} receipts, the log files and keys"]

    # (2)
    bundle_keys = {keyid: _key_file(keyid, pem) for keyid, pem in sorted(bundle.public_keys.items())}
    trusted = _trusted(bundle_keys, trusted_keys, trusted_keyids, unsafe_trust_bundled_keys)
    checks.append(f"{len(bundle_keys)} key files are ed25519 public keys named after their key ids")

    # (3)
    manifest = _open_statement(MANIFEST, bundle.manifest, trusted, MANIFEST_PREDICATE_TYPE)
    check_manifest(manifest, bundle.contents())
    checks.append("manifest is signed by a trusted key and lists every other entry, byte for byte (sha256)")

    # (4)
    checkpoint = _open_note(CHECKPOINT, bundle.checkpoint, _note_origin(bundle.checkpoint), trusted)
    checks.append(f"checkpoint of log {checkpoint.origin} at size {checkpoint.size} is signed by a trusted key")

    # (5)
    certificate = _open_statement(CERTIFICATE, bundle.certificate, trusted, CERTIFICATE_PREDICATE_TYPE)
    predicate = certificate["predicate"]
    request_id = typed(predicate, "request_id", str, "certificate predicate")
    outcome = typed(predicate, "outcome", str, "certificate predicate")
    if predicate.get("log_origin") != checkpoint.origin:
        raise VerificationError(
            f"certificate names another log: expected {checkpoint.origin!r}, got {predicate.get('log_origin')!r}"
        )
    class_facts = predicate.get("class")  # a class order's certificate: its receipts are batch receipts
    receipt_type = RECEIPT_PREDICATE_TYPE if class_facts is None else BATCH_RECEIPT_PREDICATE_TYPE
    checks.append("certificate is an in-toto statement signed by a trusted key, naming this log")

    # (6)
    receipts = {
        name: _open_receipt(name, data, trusted, request_id, _receipt_type(name, receipt_type))
        for name, data in sorted(bundle.receipts.items())
    }
    checks.append(f"{len(bundle.receipts)} receipts are in-toto statements signed by a trusted key, for this request")

    # (7)
    if bundle.shred_receipt is not None:
        shred = _open_receipt(SHRED, bundle.shred_receipt, trusted, request_id, RECEIPT_PREDICATE_TYPE)
        if shred.get("action") != "shred":
            raise VerificationError(f"{SHRED}: receipt has wrong action: expected 'shred', got {shred.get('action')!r}")
        checks.append("shredding receipt is signed by a trusted key: this request's data key was destroyed")

    # (8)
    _check_subjects(certificate, bundle.receipts)
    if class_facts is not None:
        _check_batches(predicate, class_facts, receipts)
    checks.append("receipts are exactly the certificate's subjects, byte for byte (sha256)")

    # (9)
    _check_inclusion(bundle, checkpoint)
    checks.append(f"certificate and every receipt are entries of the log at size {checkpoint.size}")

    # (10)
    _check_outcome(predicate, receipts)
    checks.append(f"outcome {outcome} is the one the receipts' evidence levels give")

    # (11)
    if previous_checkpoint is not None:
        previous = _open_note("previous checkpoint", previous_checkpoint, checkpoint.origin, trusted)
        _check_consistency(previous, checkpoint, bundle.consistency)
        checks.append(
            f"log at size {checkpoint.size} is consistent with the previous checkpoint at size {previous.size}"
        )

    # (12)
    supersedes = predicate.get("supersedes", "")
    if not isinstance(supersedes, str):
        raise VerificationError(f"certificate supersedes has wrong type: expected str, got {type(supersedes).__name__}")
    superseded = _check_superseded(bundle, trusted, request_id, checkpoint.origin, supersedes)
    if superseded:
        earlier = ", ".join(f"{s.number} ({s.outcome}, issued {s.issued_at})" for s in superseded)
        checks.append(
            f"certificate {len(superseded) + 1} is current: it supersedes certificate {earlier}, each signed by a "
            "trusted key, in the log before the one that supersedes it and named by it (sha256)"
        )

    shredded = bundle.shred_receipt is not None
    return VerificationReport(
        checks,
        request_id,
        outcome,
        checkpoint.size,
        unsafe_trust_bundled_keys,
        shredded,
        supersedes,
        tuple(superseded),
    )


def _trusted(
    bundle_keys: Mapping[str, Ed25519PublicKey],
    keys: Sequence[Ed25519PublicKey],
    keyids: Sequence[str],
    unsafe_trust_bundled_keys: bool,
) -> dict[str, Ed25519PublicKey]:
    if unsafe_trust_bundled_keys:
        return dict(bundle_keys)
    if not keys and not keyids:
        raise VerificationError(
            "no trusted key given: expected the operator's key or key id, obtained separately (the bundle's own "
            f"keys prove nothing about who signed it); this bundle's keys have key ids {sorted(bundle_keys)}"
        )
    trusted = {keyid_of(key): key for key in keys}
    trusted.update({keyid: bundle_keys[keyid] for keyid in keyids if keyid in bundle_keys})
    return trusted


def _key_file(keyid: str, pem: bytes) -> Ed25519PublicKey:
    try:
        key = load_public_key_pem(pem)
    except VerificationError as exc:
        raise VerificationError(f"keys/{keyid}.pem: {exc}") from exc
    if keyid_of(key) != keyid:
        raise VerificationError(f"key file name does not match its key id: expected {keyid_of(key)}, got {keyid}")
    return key


def _note_origin(note: str) -> str:
    # The key name must equal the origin; the signature, checked next, covers the origin line this reads.
    return note.split("\n", 1)[0]


def _receipt_type(name: str, class_receipt_type: str) -> str:
    """A class order's receipts are batch receipts, but for a system's clean-up receipt, an ordinary one."""
    return RECEIPT_PREDICATE_TYPE if name.endswith("/" + CLEAN_UP_FILE) else class_receipt_type


def _open_note(what: str, note: str, key_name: str, trusted: Mapping[str, Ed25519PublicKey]) -> Checkpoint:
    try:
        return open_checkpoint(note, [(key_name, key) for key in trusted.values()])
    except VerificationError as exc:
        raise VerificationError(f"{what}: {exc}") from exc


def _open_statement(
    name: str, data: bytes, trusted: Mapping[str, Ed25519PublicKey], predicate_type: str
) -> dict[str, Any]:
    try:
        statement = parse_statement(verify_envelope(Envelope.from_json(data), trusted))
        if statement["predicateType"] != predicate_type:
            raise VerificationError(
                f"statement has wrong predicate type: expected {predicate_type!r}, got {statement['predicateType']!r}"
            )
    except VerificationError as exc:
        raise VerificationError(f"{name}: {exc}") from exc
    return statement


def _open_receipt(
    name: str, data: bytes, trusted: Mapping[str, Ed25519PublicKey], request_id: str, predicate_type: str
) -> dict[str, Any]:
    receipt: dict[str, Any] = _open_statement(name, data, trusted, predicate_type)["predicate"]
    if receipt.get("request_id") != request_id:
        raise VerificationError(
            f"{name}: receipt is for another request: expected {request_id}, got {receipt.get('request_id')}"
        )
    return receipt


def _check_subjects(certificate: Mapping[str, Any], receipts: Mapping[str, bytes]) -> None:
    request_id = certificate["predicate"].get("request_id")
    if not receipts and not certificate["predicate"].get("systems") and isinstance(request_id, str):
        if certificate["subject"] != [request_subject(request_id)]:
            raise VerificationError("certificate of a request where no system applied must name only the request")
        return
    names = [subject["name"] for subject in certificate["subject"]]
    if len(set(names)) != len(names):
        raise VerificationError("certificate lists a receipt more than once")
    missing, extra = sorted(set(names) - set(receipts)), sorted(set(receipts) - set(names))
    if missing or extra:
        raise VerificationError(
            f"receipts do not match the certificate's subjects: missing {missing}, not in the certificate {extra}"
        )
    for subject in certificate["subject"]:
        actual = hashlib.sha256(receipts[subject["name"]]).hexdigest()
        if subject["digest"].get("sha256") != actual:
            raise VerificationError(
                f"{subject['name']}: receipt digest does not match the certificate: "
                f"expected {subject['digest'].get('sha256')}, got {actual}"
            )
    if "class" in certificate["predicate"]:
        return  # a class order's systems name folders of batch receipts: _check_batches
    for system in certificate["predicate"].get("systems", []):
        if not isinstance(system, dict) or system.get("receipt") not in names:
            raise VerificationError("certificate has a system whose receipt is not among its subjects")


def _check_batches(certificate: Mapping[str, Any], class_facts: Any, receipts: Mapping[str, Mapping[str, Any]]) -> None:
    """(8) for a class order: each system's folder holds its batches 0..n-1, each at its own path, and each
    system's batches together hold the class's subjects."""
    if not isinstance(class_facts, dict):
        raise VerificationError("certificate's class is malformed: expected an object")
    counts = typed(class_facts, "batches", dict, "certificate class")
    subject_count = typed(class_facts, "subject_count", int, "certificate class")
    cleaned = class_facts.get("clean_up", [])
    if not isinstance(cleaned, list):
        raise VerificationError("certificate class clean_up has wrong type: expected a list of systems")
    claimed: set[str] = set()
    for system in certificate.get("systems", []):
        name = system.get("system") if isinstance(system, dict) else None
        if not isinstance(name, str) or system.get("receipt") != f"receipts/{name}/":
            raise VerificationError("certificate has a system whose receipt is not the folder of its batches")
        mine = {path: r for path, r in receipts.items() if path.startswith(f"receipts/{name}/")}
        count = counts.get(name)
        expected = {batch_path(name, n) for n in range(count)} if isinstance(count, int) else set()
        clean_up = {clean_up_path(name)} if name in cleaned else set()
        if not expected or set(mine) != expected | clean_up:
            raise VerificationError(
                f"{name}: expected batch receipts 0 to {count} - 1{' and its clean-up' if clean_up else ''}, "
                f"got {len(mine)} receipts"
            )
        for path in clean_up:
            receipt = mine.pop(path)
            if receipt.get("action") != CLEAN_UP or receipt.get("system") != name:
                raise VerificationError(f"{path}: receipt is not {name}'s clean-up")
        for path, receipt in mine.items():
            batch = receipt.get("batch")
            if not isinstance(batch, int) or batch_path(str(receipt.get("system")), batch) != path:
                raise VerificationError(f"{path}: receipt is of another batch")
        subjects = sum(r.get("subjects", 0) if isinstance(r.get("subjects"), int) else 0 for r in mine.values())
        if subjects != subject_count:
            raise VerificationError(
                f"{name}: batches hold another number of subjects: expected {subject_count}, got {subjects}"
            )
        claimed.update(mine, clean_up)
    if claimed != set(receipts):
        raise VerificationError(f"batch receipts of no system of the certificate: {sorted(set(receipts) - claimed)}")


def _check_outcome(certificate: Mapping[str, Any], receipts: Mapping[str, Mapping[str, Any]]) -> None:
    """(10) Re-derive the outcome from the receipts, which (8) proved are exactly the certificate's subjects."""
    levels = {name: receipt.get("evidence_level") for name, receipt in receipts.items()}
    for system in certificate.get("systems", []):
        claimed, actual = system.get("evidence_level"), _level_of(system["receipt"], levels)
        if claimed != actual:
            raise VerificationError(
                f"certificate claims more than {system['receipt']}: expected level {actual!r}, got {claimed!r}"
            )
    residual = any(receipt.get("residual") for receipt in receipts.values())
    try:
        expected = outcome_for((str(level) for level in levels.values()), residual=residual)
    except ValueError as exc:
        raise VerificationError(f"a receipt has an unknown evidence level: {exc}") from None
    if certificate.get("outcome") != expected:
        raise VerificationError(
            f"certificate claims more than its receipts: expected outcome {expected!r}, "
            f"got {certificate.get('outcome')!r}"
        )


def _level_of(receipt: str, levels: Mapping[str, Any]) -> str:
    """A system's evidence level: its receipt's, or for a folder of batch receipts, the weakest batch's."""
    if not receipt.endswith("/"):
        return str(levels[receipt])
    try:
        return weakest_level(str(level) for name, level in levels.items() if name.startswith(receipt))
    except ValueError as exc:
        raise VerificationError(f"{receipt}: {exc}") from None


def _check_inclusion(bundle: Bundle, checkpoint: Checkpoint) -> None:
    envelopes = {CERTIFICATE: bundle.certificate, **bundle.receipts, **bundle.superseded}
    if bundle.shred_receipt is not None:
        envelopes[SHRED] = bundle.shred_receipt
    missing, extra = sorted(set(envelopes) - set(bundle.proofs)), sorted(set(bundle.proofs) - set(envelopes))
    if missing or extra:
        raise VerificationError(f"inclusion proofs do not match the envelopes: missing {missing}, extra {extra}")
    for name, data in sorted(envelopes.items()):
        proof = bundle.proofs[name]
        if proof.tree_size != checkpoint.size:
            raise VerificationError(
                f"{name}: inclusion proof is for another tree size: expected {checkpoint.size}, got {proof.tree_size}"
            )
        try:
            verify_inclusion(leaf_hash(data), proof.leaf_index, proof.tree_size, proof.hashes, checkpoint.root_hash)
        except VerificationError as exc:
            raise VerificationError(f"{name}: {exc}") from exc


def _check_superseded(
    bundle: Bundle, trusted: Mapping[str, Ed25519PublicKey], request_id: str, origin: str, supersedes: str
) -> list[Superseded]:
    """(12) The chain of certificates: 1 .. n-1 superseded, in log order, each naming the one before; n current."""
    numbers = sorted(int(m[1]) for name in bundle.superseded if (m := SUPERSEDED_PATH.fullmatch(name)))
    if numbers != list(range(1, len(numbers) + 1)):
        raise VerificationError(f"superseded certificates are not 1 to {len(numbers)}: got numbers {numbers}")
    if bool(supersedes) != bool(numbers):
        raise VerificationError(
            f"certificate supersedes {'one' if supersedes else 'none'}, but the bundle holds "
            f"{len(numbers)} superseded certificates"
        )
    chain: list[Superseded] = []
    named_before = ""  # what the next certificate must name: the SHA-256 of the one before it
    for number in numbers:
        name = superseded_path(number)
        data = bundle.superseded[name]
        facts = _open_statement(name, data, trusted, CERTIFICATE_PREDICATE_TYPE)["predicate"]
        if facts.get("request_id") != request_id or facts.get("log_origin") != origin:
            raise VerificationError(f"{name}: certificate is of another request or log")
        if facts.get("supersedes", "") != named_before:
            raise VerificationError(f"{name}: expected it to supersede {named_before or 'none'}, it names another")
        later = superseded_path(number + 1) if number < len(numbers) else CERTIFICATE
        if bundle.proofs[name].leaf_index >= bundle.proofs[later].leaf_index:
            raise VerificationError(f"{name}: logged after {later}, which supersedes it")
        named_before = hashlib.sha256(data).hexdigest()
        outcome, issued_at = typed(facts, "outcome", str, name), typed(facts, "issued_at", str, name)
        chain.append(Superseded(number, named_before, outcome, issued_at))
    if supersedes != named_before:
        raise VerificationError(
            f"certificate supersedes sha256:{supersedes}, expected the last superseded certificate's {named_before}"
        )
    return chain


def _check_consistency(previous: Checkpoint, current: Checkpoint, proofs: Mapping[int, Sequence[bytes]]) -> None:
    if previous.origin != current.origin:
        raise VerificationError(
            f"previous checkpoint is of another log: expected {current.origin!r}, got {previous.origin!r}"
        )
    if previous.size > current.size:
        raise VerificationError(
            f"log was rolled back: previous checkpoint has size {previous.size}, greater than this one's {current.size}"
        )
    proof = () if previous.size in (0, current.size) else proofs.get(previous.size)  # those need no proof
    if proof is None:
        raise VerificationError(
            f"no consistency proof from the previous size {previous.size} to {current.size}: ask for a bundle "
            "exported with that checkpoint (erasure evidence export --since)"
        )
    try:
        verify_consistency(previous.size, current.size, previous.root_hash, current.root_hash, proof)
    except VerificationError as exc:
        raise VerificationError(f"log is not consistent with the previous checkpoint (forked?): {exc}") from exc
