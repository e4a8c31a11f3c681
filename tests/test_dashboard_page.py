"""The dashboard's request page shows a class order's progress per system (what the page is given, rendered)."""

from __future__ import annotations

import re
from datetime import date

from domain.states import RequestState
from erasure.status import ClassProgress, StatusReport
from erasure.web.auth import Session
from erasure.web.dashboard import templates
from stores.operators import Operator, Role


def page(progress: list[ClassProgress]) -> str:
    report = StatusReport(
        request_id="0b6c0f5e-4d38-4a51-9d3e-6f1f2b1f0c11",
        kind="class_order",
        legal_basis="Order of the High Court",
        reference="claim KB-2026-000124",
        received_on=date(2026, 12, 1),
        deadline=date(2026, 12, 31),
        state=RequestState.EXECUTING,
        days_overdue=0,
        outcome=None,
        systems=[],
        events=[],
        timeline=[],
        progress=progress,
    )
    operator = Operator("op-1", "ada", frozenset({Role.APPROVER}))
    return templates.env.get_template("request.html").render(
        request=None,
        session=Session(operator, "csrf-token", 0.0),
        operator=operator,
        Role=Role,
        report=report,
        groups=[],
        error=None,
        settled=0,
        preview=None,
        own_request=False,
        cancellable=False,
        max_reason=300,
        refresh=True,
    )


def test_a_class_orders_page_shows_a_labelled_bar_per_system_with_rate_and_time_left() -> None:
    html = page(
        [
            ClassProgress("app_db", 12, 5, 1200, 500, 250.0, 2.8),
            ClassProgress("events", 1, 0, 1200, 0, None, None),
        ]
    )

    bars = re.findall(r'<progress id="class-progress-(\w+)" aria-label="([^"]+)" max="(\d+)" value="(\d+)"', html)
    assert bars == [
        ("app_db", "app_db: 500 of 1200 subjects", "1200", "500"),
        ("events", "events: 0 of 1200 subjects", "1200", "0"),
    ]
    assert "250.0 subjects/s" in html and "<td>3 s</td>" in html and "<td>5 of 12</td>" in html


def test_a_single_requests_page_has_no_class_progress() -> None:
    assert "class-progress" not in page([])
