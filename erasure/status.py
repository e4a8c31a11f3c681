"""A request's status as the ledger records it: what `erasure status` prints and `--json` returns."""

from __future__ import annotations

from typing import Any

from erasure.errors import ErasureError
from erasure.ledger import Ledger, to_json

_TASK_FIELDS = ("system", "category", "connector", "state", "evidence_level", "records_before", "records_after",
                "deleted", "blocked", "vendor_job_id", "vendor_status", "detail", "started_at", "finished_at")  # fmt: skip


def request_status(ledger: Ledger, request_id: str) -> dict[str, Any]:
    record = ledger.request(request_id)
    if record is None:
        raise ErasureError(f"no request {request_id} in the ledger")
    data = to_json(record)
    return {
        "request_id": data["request_id"],
        "kind": data["kind"],
        "legal_basis": data["legal_basis"],
        "reference": data["reference"],
        "received_on": data["received_on"],
        "deadline": data["deadline"],
        "state": data["state"],
        "outcome": data["outcome"],
        "systems": [{k: v for k, v in to_json(t).items() if k in _TASK_FIELDS} for t in ledger.tasks(request_id)],
        "events": [to_json(e) for e in ledger.events(request_id)],
    }
