"""Telling the recipients of the data (GDPR Art. 19), as the activities run it; outcomes are events in the ledger.

to_tell   the recipients of every system whose erasure is done; those of a system not done are recorded as not
          notified, with the reason; the request enters `notifying_recipients` when there is anyone to tell
send      one webhook notice, recorded as notified once the recipient accepts it
notices   who was told, how and when, as the certificate states it
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from activities.contracts import MANUAL, NOTICE_EVENTS, WEBHOOK, Recipient, notice_key
from connectors.base import secret_from_env
from connectors.webhook import post_notice
from domain.errors import TerminalError
from domain.states import TaskState
from evidence import notary
from evidence.statement import DONE_LEVELS
from stores.catalogue import Catalogue, RecipientSpec
from stores.ledger import EventRecord, Ledger


def to_tell(ledger: Ledger, catalogue: Catalogue, request_id: str, at: datetime) -> list[Recipient]:
    told: list[Recipient] = []
    # a system the request's catalogue does not define has no recipients in it; without a receipt, the seal refuses it
    recipients = {system.name: system.recipients for system in catalogue.systems}
    for task in ledger.tasks(request_id):
        if task.state == TaskState.NOT_APPLICABLE:
            continue
        for spec in recipients.get(task.system, ()):
            if task.evidence_level in DONE_LEVELS:
                told.append(Recipient(task.system, spec.name, spec.notify))
                continue
            detail = {
                "recipient": spec.name,
                "method": spec.notify,
                "reason": f"the system's erasure is not done ({task.evidence_level or 'no outcome'})",
            }
            key = notice_key(task.system, spec.name)
            ledger.record_event(request_id, task.system, "recipient_not_notified", key, at, detail)
    if told:
        ledger.notifying_recipients(request_id, len(told))
    return told


def send(ledger: Ledger, catalogue: Catalogue, request_id: str, recipient: Recipient, at: datetime) -> None:
    spec = catalogue.system(recipient.system)
    target = _recipient(catalogue, recipient)
    if target.url_env is None:
        raise TerminalError(f"recipient {recipient.name}: expected a webhook recipient, got a manual one")
    notice = {
        "request_id": request_id,
        "system": spec.name,
        "categories": [spec.category.value],
        "recipient": target.name,
        "role": target.role,
        "action": "erased",
    }
    key = notice_key(recipient.system, recipient.name)
    status = post_notice(secret_from_env(target.url_env), target.name, notice, f"{request_id}/{key}")
    detail = {"recipient": target.name, "method": WEBHOOK, "http_status": str(status)}
    ledger.record_event(request_id, recipient.system, "recipient_notified", key, at, detail)


def notices(catalogue: Catalogue, events: Sequence[EventRecord]) -> list[notary.Notice]:
    found = []
    for event in events:
        if event.kind not in NOTICE_EVENTS or event.system is None:
            continue
        name = str(event.detail.get("recipient", ""))
        target = _recipient(catalogue, Recipient(event.system, name, MANUAL))
        found.append(
            notary.Notice(
                system=event.system,
                recipient=name,
                role=target.role,
                method=target.notify,
                outcome=NOTICE_EVENTS[event.kind],
                at=event.at,
                actor=str(event.detail.get("actor", "")),
                reason=str(event.detail.get("reason", "")),
            )
        )
    return found


def _recipient(catalogue: Catalogue, recipient: Recipient) -> RecipientSpec:
    for spec in catalogue.system(recipient.system).recipients:
        if spec.name == recipient.name:
            return spec
    raise TerminalError(f"system {recipient.system} has no recipient {recipient.name} in the request's catalogue")
