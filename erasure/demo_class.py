"""The demo's class order: every child under 13 on the cutoff, a few hundred fictional Clipstream accounts.

It plants the class and its neighbours just outside it (examples/estate.py), resolves the class at a snapshot,
submits it, has a second operator approve it once it is counted, shows a progress bar per system until it is certified, checks the children are gone and the neighbours
are not, then makes one child's proof as `erasure evidence prove` does, prints it and verifies it offline (and sees a
tampered copy rejected, and a neighbour get no proof).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from activities.contracts import OperatorDecision
from domain.errors import ErasureError
from domain.model import IdentifierType
from erasure import devstack
from erasure.class_intake import resolve_class, submit_class
from erasure.config import Config
from erasure.export import public_key_file
from erasure.prove import prove_child
from erasure.services import Services, connect_temporal
from erasure.status import StatusReport, print_status, request_status
from evidence.child_proof import verify_child_proof
from evidence.errors import VerificationError
from examples.estate import CLASS_CHILDREN, class_email, class_remaining, seed_class
from stores.catalogue import Catalogue
from stores.class_orders import ClassOrder, SubjectClass
from workflows.request import APPROVE_UPDATE

CLASS_SCHEMA = "app_class"  # examples/class-systems.yaml's
PROVEN_CHILD = 41  # which child of the class the demo proves (by its place in the planted list)


def run_class_order(
    config: Config,
    services: Services,
    console: Console,
    demo_dir: Path,
    stack: devstack.Stack,
    order_path: Path,
    order: ClassOrder,
    catalogue: Catalogue,
    approver: str,
) -> dict[str, Any]:
    app_url = stack.process_env()["APP_DATABASE_URL"]
    os.environ["APP_DATABASE_URL"] = app_url  # the class is resolved here, from the app's database, as the CLI does
    assert isinstance(order.subjects, SubjectClass)  # examples/class-order.yaml names the catalogue's class
    cutoff = order.subjects.cutoff
    console.print(f"planting {CLASS_CHILDREN} children under 13 on {cutoff} and their neighbours just outside ...")
    with psycopg.connect(app_url, autocommit=True) as conn:
        groups = seed_class(conn, CLASS_SCHEMA, cutoff)
    resolved = resolve_class(order_path, order, catalogue)

    async def submitted_and_approved() -> Any:
        client = await connect_temporal(config)
        submission = await submit_class(services, client, order, catalogue, resolved)
        console.print(
            f"submitted {order_path.name} as request [bold]{submission.request_id}[/bold]: {submission.subjects} "
            "subjects of the class at its snapshot, erased in batches once a second operator approves"
        )
        if _waits_for_approval(services, submission.request_id):
            answer = await client.get_workflow_handle(submission.request_id).execute_update(
                APPROVE_UPDATE, OperatorDecision(actor=approver), result_type=str
            )
            console.print(f"  {answer}", highlight=False)
        return submission

    submission = asyncio.run(submitted_and_approved())
    request_id = submission.request_id
    status = _progress(services, console, request_id)
    print_status(console, status)

    checks: dict[str, bool] = {}
    events = {e.kind: e.detail for e in status.events}
    approved = events.get("approved", {})
    checks["it waited after counting its class and a second operator approved it"] = (
        "previewed" in events and approved.get("actor") == approver and approved.get("submitted_by") != approver
    )
    checks["the class order is certified complete"] = status.outcome == "complete"
    with psycopg.connect(app_url) as conn:
        checks[f"the class resolved to its {CLASS_CHILDREN} children, all erased"] = (
            submission.subjects == CLASS_CHILDREN and class_remaining(conn, CLASS_SCHEMA, groups["child"]) == 0
        )
        checks["the neighbours just outside the class survive (13 on the cutoff, other tenant, older)"] = all(
            class_remaining(conn, CLASS_SCHEMA, groups[g]) == len(groups[g])
            for g in ("birthday_on_cutoff", "other_tenant", "older")
        )
    checks.update(_prove(services, console, demo_dir, request_id, groups))
    for check, ok in checks.items():
        console.print(f"  [{'green' if ok else 'red'}]{'ok  ' if ok else 'FAIL'}[/] {check}")
    return {
        "order": order_path.name,
        "request_id": request_id,
        "outcome": status.outcome,
        "subjects": submission.subjects,
        "checks": checks,
        "proof": str(demo_dir / "child-proof-app_db.json"),
        "passed": all(checks.values()),
    }


def _waits_for_approval(services: Services, request_id: str) -> bool:
    """Whether the order, counted, awaits a second operator's decision (False: it stopped or never waited)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = request_status(services.ledger, request_id).state
        if state == "awaiting_approval":
            return True
        if state.stopped or state.ended:
            return False
        time.sleep(0.2)
    return False


def _progress(services: Services, console: Console, request_id: str) -> StatusReport:
    """A bar per system, subjects done of the class, until the order is certified (or stops)."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"))
    deadline = time.monotonic() + 300
    bars: dict[str, Any] = {}
    with Progress(*columns, console=console) as progress:
        while True:
            status = request_status(services.ledger, request_id)
            for p in status.progress:
                rate = "" if p.subjects_per_s is None else f"{p.subjects_per_s:g} subjects/s"
                if p.system not in bars:
                    bars[p.system] = progress.add_task(p.system, total=p.subjects, rate=rate)
                progress.update(bars[p.system], completed=p.subjects_done, rate=rate)
            if status.state.stopped or time.monotonic() > deadline:
                return status
            time.sleep(0.3)


def _prove(
    services: Services, console: Console, demo_dir: Path, request_id: str, groups: dict[str, list[int]]
) -> dict[str, bool]:
    """One child's proof, printed and verified offline with the operator's public key; a tampered copy and a
    neighbour's identifier fail."""
    made = prove_child(services, request_id, IdentifierType.EMAIL, class_email(groups["child"][PROVEN_CHILD]))
    document = made.proofs["app_db"]
    path = demo_dir / "child-proof-app_db.json"
    path.write_bytes(document)
    key = [services.tlog.signer.public_key]
    key_path = public_key_file(services, demo_dir / "signing-key.pem")
    console.print(f"one child's proof on app_db (erasure evidence prove {request_id} --email < address):")
    console.print_json(document.decode("utf-8"))
    report = verify_child_proof(document, key, pseudonym=made.pseudonym)
    for line in report.checks:
        console.print(f"  [green]ok[/green] {line}", highlight=False)
    console.print(f"verify it yourself: erasure evidence verify-proof {path} --trusted-key {key_path}")

    tampered = json.loads(document)
    tampered["batch_path"]["position"] ^= 1
    try:
        verify_child_proof(json.dumps(tampered).encode(), key)
        rejected = False
    except VerificationError:
        rejected = True
    neighbour = f"pupil{groups['child'][0]}@example.org.uk"  # a 13th birthday on the cutoff: not in the class
    try:
        prove_child(services, request_id, IdentifierType.EMAIL, neighbour)
        refused = False
    except ErasureError:
        refused = True
    return {
        "one child's proof verifies offline with the operator's key": report.evidence_level == "verified_absent",
        "a tampered proof is rejected": rejected,
        "a neighbour outside the class gets no proof": refused,
    }
