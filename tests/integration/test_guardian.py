"""A guardian's authority on the time-skipping server: a request whose authority is not verified waits durably
(nothing located, nothing erased) until `erasure verify-authority`, and then runs with the UK GDPR clock started at
the verification, its reminders POSTed to the webhook; one never verified is rejected at the limit with a signed
record in the transparency log."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.contracts import RequestResult
from domain.deadlines import Period
from erasure.config import Config
from evidence import notary
from evidence.dsse import Envelope, verify_envelope
from evidence.statement import parse_statement
from examples.estate import CHILD, NEIGHBOURS
from stores.vault import Vault
from tests.integration.conftest import Harness, Vendors, open_harness
from tests.integration.estate import catalogue, plant
from tests.integration.shredding import assert_shredded
from tests.integration.test_deadlines import NEVER_FINISHING
from tests.servers import skipped_to_the_end
from workflows.request import STATUS_QUERY

OPERATOR = "legal-officer-2"


def guardian_order(subject: dict[str, list[str]]) -> dict[str, Any]:
    """A parent's request under UK GDPR whose authority nobody has verified yet: no verified_by, no deadline."""
    received = datetime.now(UTC).date() - timedelta(days=2)
    return {
        "kind": "guardian_request",
        "regime": "uk_gdpr",
        "legal_basis": "Request of a parent to erase her child's personal data; UK GDPR Art. 17(1)(f) with Art. 8",
        "received": received.isoformat(),
        "guardian": {"name": "Morgan Day", "contact": "support ticket 48213", "relationship": "parent"},
        "subject": subject,
    }


class Webhook:
    """A local receiver of reminder POSTs: it answers 500 to the 7-day reminder, 204 to the others."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.received.append(body)
                self.send_response(500 if body.get("lead_days") == "7" else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/reminders"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    thread = threading.Thread(target=hook.server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


async def phase(handle: Any, wanted: str) -> None:
    for _ in range(300):
        if (await handle.query(STATUS_QUERY))["phase"] == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the request never reached {wanted}")


def untouched(h: Harness, vendors: Vendors, request_id: str) -> None:
    """Nothing located or erased: every task still planned, no deletion asked of the vendor, its data all there."""
    assert {t.state for t in h.services.ledger.tasks(request_id)} == {"planned"}
    assert vendors.segment.regulations == {}
    assert str(CHILD.user_id) in vendors.segment.profiles


def logged(h: Harness, request_id: str, action: str) -> dict[str, Any]:
    """The predicate of the request's signed record of `action`, its signature checked against the log's key."""
    entries = [r for r in h.services.tlog.receipts(request_id) if r.action == action]
    assert len(entries) == 1, f"expected one signed {action} record, got {len(entries)}"
    entry = entries[0]
    assert entry.leaf_index < h.services.tlog.size()
    signer = h.services.tlog.signer
    payload = verify_envelope(Envelope.from_json(entry.envelope), {signer.keyid: signer.public_key})
    predicate: dict[str, Any] = parse_statement(payload)["predicate"]
    return predicate


async def test_an_unverified_guardian_request_waits_durably_then_runs_on_the_uk_clock_from_its_verification(
    config: Config, time_skipping: WorkflowEnvironment, tmp_path: Path, vendors: Vendors, webhook: Webhook
) -> None:
    vendors.segment.profiles = {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}
    vendors.segment.outcome = "NEVER"  # the system fails at its own 35-day deadline: the reminders fall before
    async with open_harness(config.with_(reminder_webhook_url=webhook.url), time_skipping, tmp_path) as h:
        ledger = h.services.ledger
        env = {**h.process_env(), "ERASURE_OPERATOR": OPERATOR}
        async with h.worker():
            request_id = (await h.submit(guardian_order({"user_id": [str(CHILD.user_id)]}), NEVER_FINISHING)).request_id
            handle = h.client.get_workflow_handle(request_id, result_type=RequestResult)
            await phase(handle, "verifying authority")
            await h.env.sleep(timedelta(days=10))  # ten days pass on a durable timer: nothing is located or erased
            record = ledger.request(request_id)
            assert record is not None and record.state == "verifying_authority" and record.deadline is None
            untouched(h, vendors, request_id)

            args = ("verify-authority", request_id, "--relationship", "parent", "--method")
            refused = await h.cli(env, *args, "phone_call")
            assert refused.returncode == 2 and "--method" in refused.stderr, refused.stderr
            verified = await h.cli(env, *args, "document_check")
            assert verified.returncode == 0, verified.stderr
            again = await h.cli(env, *args, "document_check")
            assert again.returncode == 1 and "cannot verify authority" in again.stderr, again.stderr

            # UK GDPR Art. 12A: one month from the verification, extendable by two told within the first month
            event = next(e for e in ledger.events(request_id) if e.kind == "authority_verified")
            verified_on = event.at.astimezone(UTC).date()
            due = Period(months=1).after(verified_on)
            assert verified.stdout.split()[-1] == due.isoformat()
            record = ledger.request(request_id)
            assert record is not None and (record.clock_started_on, record.deadline) == (verified_on, due)
            await phase(handle, "executing")
            too_far = await h.cli(env, "extend", request_id, "--days", "70", "--reason", "vendor backlog")
            latest = Period(months=3).after(verified_on).isoformat()
            assert too_far.returncode == 1 and f"on or before {latest}" in too_far.stderr, too_far.stderr

            await h.env.sleep(timedelta(days=32))  # past the first month: a first extension is now refused
            late = await h.cli(env, "extend", request_id, "--days", "5", "--reason", "vendor backlog")
            assert late.returncode == 1 and "a first extension must be told by" in late.stderr, late.stderr
            async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                result = await skipped_to_the_end(handle)

        assert result.outcome == "incomplete"  # the vendor never finished: honest, not complete
        assert event.detail == {
            "relationship": "parent",
            "method": "document_check",
            "verifier": OPERATOR,
            "verified_at": event.at.astimezone(UTC).isoformat(),
            "at_intake": "no",
        }
        record_of_authority = logged(h, request_id, notary.AUTHORITY)
        assert (record_of_authority["decision"], record_of_authority["verifier"]) == ("verified", OPERATOR)
        certificate = logged(h, request_id, notary.CERTIFICATE)
        assert certificate["authority"] == event.detail
        assert certificate["deadline"] == due.isoformat()

        # a reminder at each lead time before the deadline: POSTed with no identifier; the refused one is an event
        events = ledger.events(request_id)
        assert [e.detail["lead_days"] for e in events if e.kind == "deadline_reminder"] == ["7", "1"]
        assert {tuple(sorted(body)) for body in webhook.received} == {("at", "deadline", "lead_days", "request_id")}
        assert [(b["lead_days"], b["deadline"], b["request_id"]) for b in webhook.received] == [
            ("7", due.isoformat(), request_id)
        ] * 3 + [("1", due.isoformat(), request_id)]  # three tries, then the failure is recorded
        assert [e.detail for e in events if e.kind == "reminder_webhook_failed"] == [
            {
                "deadline": due.isoformat(),
                "lead_days": "7",
                "reason": "reminder webhook: expected a 2xx answer, got 500",
            }
        ]


async def test_a_guardian_request_never_verified_is_rejected_at_the_limit_with_a_signed_record(
    config: Config, time_skipping: WorkflowEnvironment, tmp_path: Path, vendors: Vendors
) -> None:
    vendors.segment.profiles = {str(CHILD.user_id), *(str(p.user_id) for p in NEIGHBOURS)}
    async with open_harness(config.with_(authority_limit_days=3), time_skipping, tmp_path) as h:
        async with h.worker():
            request_id = (await h.submit(guardian_order({"user_id": [str(CHILD.user_id)]}), NEVER_FINISHING)).request_id
            handle = h.client.get_workflow_handle(request_id, result_type=RequestResult)
            async with h.env.time_skipping_unlocked():  # type: ignore[attr-defined]
                result = await skipped_to_the_end(handle)
            late = await h.cli(
                {**h.process_env(), "ERASURE_OPERATOR": OPERATOR},
                *("verify-authority", request_id, "--relationship", "parent", "--method", "document_check"),
            )
            assert late.returncode == 1 and "cannot verify authority" in late.stderr, late.stderr

        assert (result.outcome, result.systems) == ("rejected", [])
        record = h.services.ledger.request(request_id)
        assert record is not None and record.state == "rejected"
        reason = "the guardian's authority was not verified within 3 days"
        assert [e.detail for e in h.services.ledger.events(request_id) if e.kind == "rejected"] == [{"reason": reason}]
        untouched(h, vendors, request_id)
        rejection = logged(h, request_id, notary.AUTHORITY)
        assert (rejection["decision"], rejection["reason"], rejection["method"]) == ("rejected", reason, "")
        assert_shredded(h.services, request_id, Vault.SUBJECT, "rejected")


async def test_an_authority_verified_before_intake_is_recorded_as_such_and_nothing_waits(
    harness: Harness,
    database_url: str,
    moto_url: str,
    schema: str,
    s3_client: Any,
    bucket_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    monkeypatch.setenv("ERASURE_S3_ENDPOINT", moto_url)
    plant(database_url, schema, s3_client, bucket_name)
    order = guardian_order({"user_id": [str(CHILD.user_id)]})
    verified_on = datetime.now(UTC).date() - timedelta(days=1)
    order["guardian"] |= {
        "authority_check": "verified_parental_consent",
        "verified_by": "trust-and-safety duty officer",
        "verified_on": verified_on.isoformat(),
    }
    status = await harness.run(order, catalogue(schema, bucket_name))

    assert (status["state"], status["outcome"]) == ("certified", "complete")
    assert status["deadline"] == Period(months=1).after(verified_on).isoformat()  # the UK clock from the check
    at_intake = {
        "relationship": "parent",
        "method": "verified_parental_consent",
        "verifier": "trust-and-safety duty officer",
        "verified_at": f"{verified_on.isoformat()}T00:00:00+00:00",
        "at_intake": "yes",
    }
    request_id = status["request_id"]
    assert [e.detail for e in harness.services.ledger.events(request_id) if e.kind == "authority_verified"] == [
        at_intake
    ]
    assert logged(harness, request_id, notary.AUTHORITY)["reason"] == "verified at intake"
    assert logged(harness, request_id, notary.CERTIFICATE)["authority"] == at_intake
