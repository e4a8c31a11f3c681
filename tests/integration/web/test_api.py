"""The HTTP API against the real stack: `erasure serve` in its own process, Temporal, Postgres, moto, a worker."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import httpx
import yaml

from examples.estate import CHILD
from tests.integration.conftest import court_order
from tests.integration.web.conftest import Served

PROBLEM = "application/problem+json"


def order_json(**subject: list[str]) -> str:
    return json.dumps(court_order(subject or {"user_id": ["1"], "email": [CHILD.email]}))


def assert_edge_headers(response: httpx.Response) -> None:
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "script-src" not in response.headers["content-security-policy"]


def assert_nothing_stored(served: Served) -> None:
    assert served.harness.services.ledger.requests() == []
    with served.harness.services.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM vault_items").fetchone() == (0,)


async def test_each_role_and_a_forged_form_are_refused_and_nothing_changes(served: Served) -> None:
    async with served.client() as anonymous:
        health = await anonymous.get("/api/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert_edge_headers(health)
        refused = await anonymous.get("/api/requests")
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
        assert refused.json()["status"] == 401
        assert_edge_headers(refused)

    headers = {"content-type": "application/json"}
    async with served.client("aud") as auditor, served.client("rey") as reviewer, served.client("sam") as submitter:
        assert (await auditor.post("/api/requests", content=order_json(), headers=headers)).status_code == 403
        assert (await reviewer.post("/api/requests", content=order_json(), headers=headers)).status_code == 403
        assert_nothing_stored(served)
        someone = "00000000-0000-4000-8000-000000000000"
        extension = {"days": 5, "reason": "the vendor needs longer"}
        assert (await reviewer.post(f"/api/requests/{someone}/extend", json=extension)).status_code == 403
        assert (await submitter.post(f"/api/requests/{someone}/extend", json=extension)).status_code == 403
        decision = {"group": "near-1", "decision": "exclude", "reason": "another pupil"}
        assert (await submitter.post(f"/api/requests/{someone}/review", json=decision)).status_code == 403
        assert (await submitter.get(f"/api/requests/{someone}/review")).status_code == 403
        assert (await reviewer.get(f"/api/requests/{someone}/bundle")).status_code == 403
        assert (await submitter.post(f"/api/requests/{someone}/recipients/partner/ack")).status_code == 403
        files = {"bundle": ("b.zip", b"x"), "trusted_key": ("k.pem", b"x")}
        assert (await submitter.post("/api/verify", files=files)).status_code == 403
        missing = await auditor.get(f"/api/requests/{someone}")
        assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
        assert (await auditor.get("/api/requests/not-a-uuid")).status_code == 404
    assert_nothing_stored(served)

    # the dashboard: an HTTP-only, same-site session cookie; a form without its CSRF token changes nothing
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as browser:
        signed_in = await browser.post("/sign-in", data={"token": served.tokens["sam"]})
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        forged = await browser.post("/requests/new", data={"order": order_json(), "csrf": "forged"})
        assert forged.status_code == 403
        page = await browser.get("/requests/new")
        assert page.status_code == 200 and 'name="csrf"' in page.text
    assert_nothing_stored(served)

    # guessing tokens: after ten failures the address must wait, whatever it presents next
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as guesser:
        codes = [
            (await guesser.get("/api/requests", headers={"authorization": f"Bearer eop_guess{i}"})).status_code
            for i in range(11)
        ]
        assert codes == [401] * 10 + [429]
        blocked = await guesser.get("/api/requests", headers={"authorization": f"Bearer {served.tokens['root']}"})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


async def test_bad_bodies_are_422_naming_the_field_and_store_nothing(served: Served) -> None:
    good = court_order({"user_id": ["1"]})
    no_deadline = {k: v for k, v in good.items() if k != "deadline"}
    bad_email = court_order({"email": ["not-an-address"]})
    past = court_order({"user_id": ["1"]})
    past["received"], past["deadline"] = "2020-01-01", "2020-02-01"
    past["court_order"]["made_on"] = "2019-12-31"
    unknown_system = court_order({"user_id": ["1"]}, scope=["app_db", "nowhere"])
    cases: list[tuple[str, str, str]] = [
        ("application/json", json.dumps(no_deadline), "deadline"),
        ("application/json", json.dumps(bad_email), "subject.email[0]"),
        ("application/json", json.dumps(past), "deadline"),
        ("application/json", json.dumps(unknown_system), "scope"),
        ("application/yaml", yaml.safe_dump(good) + "subject: {user_id: ['2']}\n", "line"),
        ("application/json", "{not json", "line"),
    ]
    async with served.client("sam") as submitter:
        for media, body, field in cases:
            answer = await submitter.post("/api/requests", content=body, headers={"content-type": media})
            assert answer.status_code == 422, (field, answer.text)
            assert answer.headers["content-type"] == PROBLEM
            assert answer.json()["field"].startswith(field), answer.json()
            assert "not-an-address" not in answer.text  # a bad value is named by its field, never echoed
        wrong_type = await submitter.post(
            "/api/requests", content=json.dumps(good), headers={"content-type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        huge = await submitter.post(
            "/api/requests", content=b"x" * 1_100_000, headers={"content-type": "application/yaml"}
        )
        assert huge.status_code == 413 and huge.headers["content-type"] == PROBLEM
        bad_extension = await submitter.get("/api/requests", params={"state": "nonsense"})
        assert bad_extension.status_code == 422 and bad_extension.json()["field"] == "state"
    assert_nothing_stored(served)


async def test_an_order_through_the_api_reaches_its_certificate_and_its_bundle_verifies(served: Served) -> None:
    harness = served.harness
    body, json_type = order_json(), {"content-type": "application/json"}
    texts: list[str] = []
    async with (
        harness.worker(),
        served.client("sam") as submitter,
        served.client("ada") as approver,
        served.client("aud") as auditor,
    ):
        submitted = await submitter.post("/api/requests", content=body, headers=json_type)
        assert submitted.status_code == 201, submitted.text
        request_id = submitted.json()["request_id"]
        again = await submitter.post("/api/requests", content=body, headers=json_type)
        assert (again.status_code, again.json()["request_id"], again.json()["existing"]) == (200, request_id, True)

        await _wait_state(auditor, request_id, "awaiting_approval")
        approved = await approver.post(f"/api/requests/{request_id}/approve", json={})
        assert approved.status_code == 200, approved.text
        status = await _wait_certified(auditor, request_id)
        assert (status["state"], status["outcome"]) == ("certified", "complete")
        levels = {s["system"]: s["evidence_level"] for s in status["systems"]}
        assert levels == {"app_db": "verified_absent", "uploads": "verified_absent"}
        assert status["timeline"][0]["actor"] == "sam"  # the submission is attributed to its operator

        listed = (await auditor.get("/api/requests", params={"kind": "court_order"})).json()
        assert [row["request_id"] for row in listed] == [request_id]
        late = await approver.post(f"/api/requests/{request_id}/extend", json={"days": 5, "reason": "vendor delay"})
        assert late.status_code == 409  # a certified request is not extended
        unknown = await approver.post(f"/api/requests/{request_id}/recipients/nobody/ack")
        assert unknown.status_code == 409 and unknown.headers["content-type"] == PROBLEM

        bundle = await auditor.get(f"/api/requests/{request_id}/bundle")
        assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
        key = (await auditor.get("/api/signing-key")).json()["public_key_pem"].encode()
        verified = await auditor.post(
            "/api/verify", files={"bundle": ("b.zip", bundle.content), "trusted_key": ("k.pem", key)}
        )
        assert verified.json()["verified"] is True and verified.json()["outcome"] == "complete"
        assert len(verified.json()["steps"]) >= 8

        tampered = _tampered(bundle.content)
        refused = await auditor.post(
            "/api/verify", files={"bundle": ("b.zip", tampered), "trusted_key": ("k.pem", key)}
        )
        assert refused.json()["verified"] is False and refused.json()["failure"]
        not_a_key = await auditor.post(
            "/api/verify", files={"bundle": ("b.zip", bundle.content), "trusted_key": ("k.pem", b"x")}
        )
        assert not_a_key.status_code == 422 and not_a_key.json()["field"] == "trusted_key"
        texts += [status.__repr__(), json.dumps(listed), verified.text, refused.text]
    for text in texts:  # nothing but the submitter's own answer may hold the child's identifiers: none does here
        assert CHILD.email not in text and (CHILD.phone or "@@") not in text


async def test_a_submitter_approving_their_own_request_gets_403_and_nothing_changes(served: Served) -> None:
    harness = served.harness
    async with (
        harness.worker(),
        served.client("sal") as submitter,
        served.client("ada") as approver,
        served.client("rey") as reviewer,
    ):
        submitted = await submitter.post(
            "/api/requests", content=order_json(), headers={"content-type": "application/json"}
        )
        request_id = submitted.json()["request_id"]
        await _wait_state(approver, request_id, "awaiting_approval")
        own = await submitter.post(f"/api/requests/{request_id}/approve", json={})
        assert own.status_code == 403 and own.headers["content-type"] == PROBLEM
        assert "four eyes" in own.json()["detail"]
        assert (await reviewer.post(f"/api/requests/{request_id}/approve", json={})).status_code == 403
        assert (await reviewer.post(f"/api/requests/{request_id}/cancel", json={"reason": "x"})).status_code == 403
        no_reason = await approver.post(f"/api/requests/{request_id}/reject", json={"reason": "  "})
        assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
        who = await approver.post(f"/api/requests/{request_id}/reject", json={"reason": f"see {CHILD.email}"})
        assert who.status_code == 422 and CHILD.email not in who.text
        preview = (await approver.get(f"/api/requests/{request_id}/preview")).json()
        assert (preview["state"], preview["submitted_by"], preview["decisions"]) == ("awaiting_approval", "sal", [])
        located = {s["system"]: s["located"] for s in preview["systems"]}
        assert set(located) == {"app_db", "uploads"} and all(n > 0 for n in located.values())
        events = [e.kind for e in harness.services.ledger.events(request_id)]
        assert "approved" not in events and "rejected" not in events

        rejected = await approver.post(f"/api/requests/{request_id}/reject", json={"reason": "order not served"})
        assert rejected.status_code == 200, rejected.text
        status = await _wait_state(approver, request_id, "rejected")
        assert status["outcome"] is None
        again = await approver.post(f"/api/requests/{request_id}/approve", json={})
        assert again.status_code == 409  # decided: nothing awaits approval any more


async def test_holds_are_placed_and_released_by_an_approver_and_never_echo_the_subject(served: Served) -> None:
    subject = yaml.safe_dump({"email": [CHILD.email], "user_id": ["1"]}).encode()
    async with served.client("ada") as approver, served.client("sam") as submitter:
        form = {"case": "claim 4 of 2026", "systems": "app_db"}
        files = {"subject_file": ("subject.yaml", subject, "application/yaml")}
        refused = await submitter.post("/api/holds", data=form, files=files)
        assert refused.status_code == 403
        bad = await approver.post("/api/holds", data={**form, "case": "<script>"}, files=files)
        assert bad.status_code == 422 and bad.json()["field"] == "case"
        bad_subject = {"subject_file": ("subject.yaml", b"email: [not-an-address]\n", "application/yaml")}
        wrong = await approver.post("/api/holds", data=form, files=bad_subject)
        assert wrong.status_code == 422 and wrong.json()["field"] == "subject_file.email[0]", wrong.text
        assert "not-an-address" not in wrong.text
        assert served.harness.services.holds.hold("00000000-0000-4000-8000-000000000000") is None

        placed = await approver.post("/api/holds", data=form, files=files)
        assert placed.status_code == 201, placed.text
        hold_id = placed.json()["hold_id"]
        assert CHILD.email not in placed.text
        record = served.harness.services.holds.hold(hold_id)
        assert record is not None and (record.placed_by, record.systems) == ("ada", ["app_db"])

        assert (await submitter.post(f"/api/holds/{hold_id}/release")).status_code == 403
        released = await approver.post(f"/api/holds/{hold_id}/release")
        assert released.status_code == 200 and released.json() == {"resumed": 0}
        record = served.harness.services.holds.hold(hold_id)
        assert record is not None and record.released_by == "ada"
        unknown = await approver.post("/api/holds/not-a-hold/release")
        assert unknown.status_code == 404


async def _wait_state(client: httpx.AsyncClient, request_id: str, state: str) -> dict[str, Any]:
    for _ in range(1200):
        status: dict[str, Any] = (await client.get(f"/api/requests/{request_id}")).json()
        if status.get("state") == state:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {state}: {status}")


async def _wait_certified(client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
    for _ in range(600):
        status: dict[str, Any] = (await client.get(f"/api/requests/{request_id}")).json()
        if status["state"] in ("certified", "failed", "closed"):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"not certified: {status}")


def _tampered(bundle: bytes) -> bytes:
    """The same bundle with the first receipt's bytes changed."""
    source, target = zipfile.ZipFile(io.BytesIO(bundle)), io.BytesIO()
    receipts = [info.filename for info in source.infolist() if info.filename.startswith("receipts/")]
    with zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            out.writestr(info, data + b" " if info.filename == receipts[0] else data)
    return target.getvalue()
