"""The recipients of the data (GDPR Art. 19), on the time-skipping server: once the systems are done the request is
`notifying_recipients`; a webhook recipient gets one POST without an identifier, a refusing one is recorded with its
reason, a failing one is asked a bounded number of times; a manual recipient waits for `erasure recipients ack`, and
one never acknowledged is listed as not confirmed after the limit. The certificate, report.html and `erasure status`
show who was told, how and when, and the request's timeline of states."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from activities.contracts import RequestResult
from evidence.dsse import Envelope
from evidence.report import render_report
from evidence.statement import parse_statement
from examples.estate import APP_MAPPING, CHILD, NEIGHBOURS, count_rows, create_app_schema, seed_people
from tests.integration.approval import approve
from tests.integration.conftest import Harness, court_order
from tests.servers import skipped_to_the_end
from workflows.request import STATUS_QUERY

ANSWERS = {"/ads": 200, "/refusing": 403, "/down": 503}


class Webhooks:
    """Recipients' webhooks on loopback: each path answers with its status and keeps every body it was sent."""

    def __init__(self) -> None:
        self.received: dict[str, list[dict[str, Any]]] = {path: [] for path in ANSWERS}
        webhooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhooks.received[self.path].append(json.loads(body))
                self.send_response(ANSWERS[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def webhooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhooks]:
    hooks = Webhooks()
    thread = threading.Thread(target=hooks.server.serve_forever, daemon=True)
    thread.start()
    for path in ANSWERS:
        monkeypatch.setenv(f"RECIPIENT_{path[1:].upper()}_URL", f"{hooks.url}{path}")
    yield hooks
    hooks.server.shutdown()
    hooks.server.server_close()


def recipients_catalogue(schema: str) -> dict[str, Any]:
    return {
        "systems": [
            {
                "name": "app_db",
                "connector": "postgres",
                "category": "storage",
                "identifiers": ["user_id", "email", "phone"],
                "connection": {"dsn_env": "APP_DATABASE_URL"},
                "mapping": {"schema": schema, **APP_MAPPING},
                "retry": {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S"},
                "recipients": [
                    {"name": "ads_partner", "role": "third_party", "notify": "webhook", "url_env": "RECIPIENT_ADS_URL"},
                    {
                        "name": "refusing_partner",
                        "role": "third_party",
                        "notify": "webhook",
                        "url_env": "RECIPIENT_REFUSING_URL",
                    },
                    {"name": "down_partner", "role": "processor", "notify": "webhook", "url_env": "RECIPIENT_DOWN_URL"},
                    {"name": "analytics_vendor", "role": "processor", "notify": "manual"},
                    {"name": "school_portal", "role": "third_party", "notify": "manual"},
                ],
            }
        ]
    }


def plant_app(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])


async def notifying(handle: Any) -> None:
    for _ in range(600):
        if (await handle.query(STATUS_QUERY))["phase"] == "notifying recipients":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the request never started notifying its recipients")


async def test_recipients_are_told_by_webhook_or_acknowledged_by_hand_and_the_certificate_lists_them(
    skipping_harness: Harness, webhooks: Webhooks, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_DATABASE_URL", database_url)
    plant_app(database_url, schema)
    harness = skipping_harness
    ledger = harness.services.ledger
    env = {**harness.process_env(), "ERASURE_OPERATOR": "dpo-two"}
    async with harness.worker():
        submission = await harness.submit(court_order({"user_id": ["1"]}), recipients_catalogue(schema))
        request_id = submission.request_id
        handle = harness.client.get_workflow_handle(request_id, result_type=RequestResult)
        await approve(harness.client, request_id)
        await notifying(handle)
        record = ledger.request(request_id)
        assert record is not None and record.state == "notifying_recipients"

        unknown = await harness.cli(env, "recipients", "ack", request_id, "--recipient", "ads_partner")
        assert unknown.returncode == 2 and "--recipient" in unknown.stderr, unknown.stderr
        acked = await harness.cli(env, "recipients", "ack", request_id, "--recipient", "analytics_vendor")
        assert acked.returncode == 0, acked.stderr
        again = await harness.cli(env, "recipients", "ack", request_id, "--recipient", "analytics_vendor")
        assert again.returncode == 2, again.stderr

        async with harness.env.time_skipping_unlocked():  # type: ignore[attr-defined]
            await skipped_to_the_end(handle)
        shown = await harness.cli(env, "status", request_id)

    with psycopg.connect(database_url) as conn:  # the erasure itself, neighbours spared
        assert count_rows(conn, schema)["users"] == len(NEIGHBOURS)

    # one POST to the accepting webhook, five (bounded) to the failing one, one to the refusing one; no identifier
    assert [len(webhooks.received[p]) for p in ("/ads", "/down", "/refusing")] == [1, 5, 1]
    notice = webhooks.received["/ads"][0]
    assert notice == {
        "request_id": request_id,
        "system": "app_db",
        "categories": ["storage"],
        "recipient": "ads_partner",
        "role": "third_party",
        "action": "erased",
    }
    sent = json.dumps(webhooks.received)
    for identifier in (CHILD.email, CHILD.phone, CHILD.username, '"1"'):
        assert identifier and identifier not in sent

    certificate = _certificate(harness, request_id)
    told = {n["recipient"]: n for n in certificate["recipients"]}
    assert {name: n["outcome"] for name, n in told.items()} == {
        "ads_partner": "notified",
        "analytics_vendor": "acknowledged",
        "down_partner": "failed",
        "refusing_partner": "failed",
        "school_portal": "not_confirmed",
    }
    assert told["analytics_vendor"]["actor"] == "dpo-two"
    assert told["refusing_partner"]["reason"] == "recipient refusing_partner refused the notice: http 403"
    assert told["down_partner"]["reason"] == "recipient down_partner did not take the notice: http 503"
    assert told["school_portal"]["reason"] == "no acknowledgement within 14 days"
    assert (told["ads_partner"]["method"], told["ads_partner"]["role"]) == ("webhook", "third_party")
    assert all(n["at"].endswith("Z") for n in told.values())

    # the timeline: every state with its actor and reason, in the ledger, the certificate, the report and status
    timeline = [(s.state, s.actor) for s in ledger.timeline(request_id)]
    assert timeline == [
        ("received", "submitter-one"),
        ("awaiting_approval", "orchestrator"),
        ("scoped", "approver-two"),
        ("executing", "orchestrator"),
        ("notifying_recipients", "orchestrator"),
        ("verifying", "orchestrator"),
        ("certified", "orchestrator"),
        ("closed", "orchestrator"),
    ]
    assert [s["state"] for s in certificate["timeline"]] == [
        "received",
        "awaiting_approval",
        "scoped",
        "executing",
        "notifying_recipients",
        "verifying",
    ]
    page = render_report({"predicate": certificate})
    timeline_html = page[page.index("<h2>Timeline</h2>") :]
    positions = [
        timeline_html.index(f"<td>{state}</td>") for state in ("received", "executing", "notifying recipients")
    ]
    assert positions == sorted(positions) and timeline_html.index("<td>certified</td>") > positions[-1]
    assert "Recipients told of the erasure" in page and "dpo-two" in page
    assert shown.returncode == 0, shown.stderr
    assert "notifying_recipients by orchestrator: 5 to tell" in shown.stdout
    assert "closed by orchestrator" in shown.stdout


def _certificate(harness: Harness, request_id: str) -> dict[str, Any]:
    for logged in harness.services.tlog.receipts(request_id):
        if logged.action == "certificate":
            predicate: dict[str, Any] = parse_statement(Envelope.from_json(logged.envelope).payload)["predicate"]
            return predicate
    raise AssertionError("no certificate was logged")
