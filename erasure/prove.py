"""One child's proofs of a class order, one per system: found by an identifier, made from the sealed class and the log.

The child is found in the sealed class (the vault item `class_subjects`, in pseudonym order) by an identifier matched
exactly, as intake takes it; its position there gives its batch on each system (position // that system's batch
size). Each proof is evidence.child_proof's document over that batch's pseudonyms, its receipt in the log, the
receipt's inclusion proof and the log's checkpoint. Only the operator can make one: the pseudonyms need the request's
data key, so once the request is shredded no proof of a child can be made any more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from activities.class_order import SEALED_CLASS, tlog_name
from domain.classes import batch_slice, subject_from_canonical
from domain.errors import ErasureError
from domain.model import IdentifierType
from erasure.services import Services
from evidence import notary
from evidence.child_proof import LogInclusion, child_proof
from stores.catalogue import catalogue_from_snapshot
from stores.pseudonyms import subject_pseudonym
from stores.vault import VaultSealed


@dataclass(frozen=True)
class ChildProofs:
    pseudonym: bytes
    proofs: dict[str, bytes]  # system -> the proof document (canonical JSON)


def prove_child(services: Services, request_id: str, kind: IdentifierType, value: str) -> ChildProofs:
    """The proofs of the child holding `value` (of type `kind`), one per system of the class order."""
    if services.classes.record(request_id) is None:
        raise ErasureError(f"request {request_id} is not a class order in the ledger")
    if services.vault.is_destroyed(request_id):
        raise _shredded(request_id)
    try:
        forms: list[str] = services.vault.open(request_id, SEALED_CLASS)["subjects"]
        with services.pool.connection() as conn:
            pseudonyms = services.vault.pseudonyms(conn, request_id)
    except VaultSealed:
        raise _shredded(request_id) from None
    position = _position(forms, kind, value)
    if position is None:
        raise ErasureError(f"the identifier is not a subject of class order {request_id}: there is nothing to prove")

    catalogue = catalogue_from_snapshot(services.ledger.catalogue_snapshot(request_id))
    tlog = services.tlog
    systems = sorted({b.system for b in services.classes.batches(request_id)})
    logged = {}
    for system in systems:
        size = catalogue.system(system).batches_of
        batch = position // size
        receipt = tlog.receipt(request_id, tlog_name(system, batch), notary.ERASE)
        if receipt is None:
            raise ErasureError(
                f"{system} batch {batch} has no receipt yet: its proof can be made once the batch is done "
                "(see `erasure status`)"
            )
        logged[system] = (size, batch, receipt)
    checkpoint, note = tlog.checkpoint()  # after the receipts: every one of them is inside it

    child = None
    proofs = {}
    for system, (size, batch, receipt) in logged.items():
        members = [
            subject_pseudonym(pseudonyms, subject_from_canonical(f.encode())) for f in forms[batch_slice(batch, size)]
        ]
        child = members[position - batch * size]
        inclusion = LogInclusion(
            receipt.leaf_index, checkpoint.size, tuple(tlog.inclusion_proof(receipt.leaf_index, checkpoint.size))
        )
        proofs[system] = child_proof(child, members, receipt.envelope, inclusion, note)
    if child is None:
        raise ErasureError(f"class order {request_id} has no batch planned yet: there is no receipt to prove with")
    return ChildProofs(child, proofs)


def _position(forms: list[str], kind: IdentifierType, value: str) -> int | None:
    """Where the subject holding `value` is in the sealed class: values match exactly, as the systems match them."""
    for index, form in enumerate(forms):
        if value in json.loads(form).get(kind.value, ()):
            return index
    return None


def _shredded(request_id: str) -> ErasureError:
    return ErasureError(
        f"request {request_id} was shredded: its key is gone, so no proof of a child can be made any more"
    )
