"""Deadlines as rules (stores/deadline_rules.yaml): what each regime gives each kind of request, what an order may
state instead (only earlier), what an extension may do, and a rules file that does not hold together."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from domain.deadlines import extensions
from domain.errors import InvalidInput
from erasure.intake import Deadline, deadline_of
from stores.deadline_rules import RULES_FILE, deadline_rules, load_rules
from stores.orders import Order
from tests.test_cli_input import GOOD_CATALOGUE, run_submit

RECEIVED = date(2026, 1, 31)  # a month's end: one month later is the last day of February


def order(kind: str, regime: str | None, **extra: Any) -> Order:
    data: dict[str, Any] = {
        "kind": kind,
        "legal_basis": "Art. 17(1)",
        "received": RECEIVED.isoformat(),
        "subject": {"user_id": ["1"]},
        **extra,
    }
    if regime is not None:
        data["regime"] = regime
    if kind == "guardian_request":
        data.setdefault("guardian", {"name": "Morgan Day", "relationship": "parent"})
    if kind == "regulator_direction":
        data["regulator"] = "ICO"
    if kind == "court_order":
        data["court_order"] = {
            "court": "High Court",
            "claim_number": "KB-2026-000123",
            "made_on": "2026-01-30",
            "party_reference": "SMO",
        }
    return Order.model_validate(data)


VERIFIED = {"name": "Morgan Day", "relationship": "parent", "authority_check": "document_check"}
VERIFIED |= {"verified_by": "trust-and-safety duty officer", "verified_on": "2026-02-10"}


@pytest.mark.parametrize(
    ("kind", "regime", "extra", "expected"),
    [
        # GDPR Art. 12(3): one month from receipt
        ("subject_request", "gdpr", {}, Deadline(date(2026, 2, 28), RECEIVED)),
        ("guardian_request", "gdpr", {}, Deadline(date(2026, 2, 28), RECEIVED)),
        # UK GDPR Art. 12A: a guardian's clock starts when the authority is verified, not before
        ("guardian_request", "uk_gdpr", {}, Deadline(None, None)),
        ("guardian_request", "uk_gdpr", {"guardian": VERIFIED}, Deadline(date(2026, 3, 10), date(2026, 2, 10))),
        ("subject_request", "uk_gdpr", {}, Deadline(date(2026, 2, 28), RECEIVED)),
        # CCPA: 45 days
        ("subject_request", "ccpa", {}, Deadline(date(2026, 3, 17), RECEIVED)),
        # COPPA sets no period: the date the written retention policy gives, as the order states it
        ("guardian_request", "coppa", {"deadline": "2026-02-07"}, Deadline(date(2026, 2, 7), RECEIVED)),
        # a court order: the order's own date, whatever the regime
        ("court_order", None, {"deadline": "2026-04-01"}, Deadline(date(2026, 4, 1), RECEIVED)),
        # an order may state a deadline earlier than the rule's, and that is the one kept
        ("subject_request", "gdpr", {"deadline": "2026-02-14"}, Deadline(date(2026, 2, 14), RECEIVED)),
        ("subject_request", "ccpa", {"deadline": "2026-03-01"}, Deadline(date(2026, 3, 1), RECEIVED)),
    ],
)
def test_each_regime_gives_its_deadline(kind: str, regime: str | None, extra: dict[str, Any], expected: Any) -> None:
    assert deadline_of(order(kind, regime, **extra)) == expected


@pytest.mark.parametrize(
    ("kind", "regime", "extra", "message"),
    [
        ("subject_request", "gdpr", {"deadline": "2026-03-01"}, "expected on or before 2026-02-28 (GDPR Art. 12(3))"),
        ("subject_request", "ccpa", {"deadline": "2026-03-18"}, "expected on or before 2026-03-17"),
        ("guardian_request", "coppa", {}, "expected the date the order sets"),
        ("court_order", None, {}, "expected the date the order sets (the date in the court's order)"),
    ],
)
def test_an_order_may_not_state_a_later_deadline_than_its_rule(
    kind: str, regime: str | None, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        deadline_of(order(kind, regime, **extra), "order.yaml")
    assert str(refused.value).startswith(f"order.yaml: deadline: {message}")


def test_extensions_follow_the_rule() -> None:
    rules = deadline_rules()
    gdpr = extensions(rules.find("gdpr", "subject_request"), RECEIVED)  # type: ignore[arg-type]
    # two more months, and a first extension told within the first month
    assert (gdpr.allowed, gdpr.latest, gdpr.first_by) == (True, date(2026, 4, 30), date(2026, 2, 28))
    ccpa = extensions(rules.find("ccpa", "guardian_request"), RECEIVED)  # type: ignore[arg-type]
    assert (ccpa.latest, ccpa.first_by) == (date(2026, 5, 1), date(2026, 3, 17))
    assert not extensions(rules.find("coppa", "guardian_request"), RECEIVED).allowed  # type: ignore[arg-type]
    court = extensions(rules.find(None, "court_order"), RECEIVED)  # type: ignore[arg-type]
    assert (court.allowed, court.latest, court.first_by) == (True, None, None)  # the court varies its own order


def test_a_later_deadline_is_refused_by_submit_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    today = date.today()
    late = {
        "kind": "subject_request",
        "regime": "ccpa",
        "legal_basis": "CCPA 1798.105",
        "received": today.isoformat(),
        "deadline": date.fromordinal(today.toordinal() + 60).isoformat(),
        "subject": {"user_id": ["1"]},
    }
    result = run_submit(tmp_path, late, GOOD_CATALOGUE, monkeypatch)
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'order.yaml'}: deadline: expected on or before" in result.stderr
    without_regime = {k: v for k, v in late.items() if k != "regime"}
    result = run_submit(tmp_path, without_regime, GOOD_CATALOGUE, monkeypatch)
    assert result.exit_code == 2 and "needs the regime" in result.stderr, result.output


def test_a_guardian_verified_in_part_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partly = {k: v for k, v in VERIFIED.items() if k != "verified_on"}
    data = {
        "kind": "guardian_request",
        "regime": "gdpr",
        "legal_basis": "Art. 17",
        "received": date.today().isoformat(),
        "guardian": partly,
        "subject": {"user_id": ["1"]},
    }
    result = run_submit(tmp_path, data, GOOD_CATALOGUE, monkeypatch)
    assert result.exit_code == 2 and "go together" in result.stderr, result.output


def test_the_shipped_rules_cover_every_kind_of_every_regime_they_name() -> None:
    rules = load_rules(RULES_FILE)
    assert rules.regimes() == {"gdpr", "uk_gdpr", "ccpa", "coppa", "court"}
    for regime in ("gdpr", "uk_gdpr", "ccpa"):
        for kind in ("subject_request", "guardian_request", "regulator_direction"):
            assert rules.find(regime, kind) is not None, (regime, kind)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (("  - regime: gdpr\n    kinds: [subject_request]\n", 1), "(top level)", "gdpr has two rules"),
        (("    respond_within: {months: 1}\n", 0), "rules[0]", "respond_within is required"),
        (("    extension_up_to: {months: 2}\n", 0), None, None),
    ],
)
def test_a_rules_file_that_does_not_hold_together_is_refused(
    tmp_path: Path, change: tuple[str, int], field: str | None, message: str | None
) -> None:
    text = RULES_FILE.read_text()
    snippet, add = change
    if add:  # a second gdpr rule for subject requests
        text += snippet + '    basis: "again"\n    clock_starts: received\n    respond_within: {days: 9}\n'
        text += "    extendable: false\n"
    else:
        text = text.replace(snippet, "", 1)
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    if field is None:  # an extendable rule without a cap is allowed: no limit of its own
        assert load_rules(path).find("gdpr", "subject_request") is not None
        return
    with pytest.raises(InvalidInput) as refused:
        load_rules(path)
    assert str(refused.value).startswith(f"{path}: {field}")
    assert message in str(refused.value)
