"""The deadline rules (deadline_rules.yaml beside this module), validated with pydantic into domain.deadlines rules.

A court order always follows the `court` rule; every other kind follows the rule of the regime its order names.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.deadlines import ClockStart, DeadlineRule, Period
from domain.errors import InvalidInput
from stores.validation import describe, read_yaml

RULES_FILE = Path(__file__).with_name("deadline_rules.yaml")
Regime = Literal["gdpr", "uk_gdpr", "ccpa", "coppa", "court"]
Kind = Literal["court_order", "guardian_request", "subject_request", "regulator_direction"]
COURT = "court"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Period(_Strict):
    months: int = Field(default=0, ge=0, le=12)
    days: int = Field(default=0, ge=0, le=366)

    @model_validator(mode="after")
    def _not_empty(self) -> _Period:
        if not self.months and not self.days:
            raise ValueError("a period needs months or days")
        return self


class _Rule(_Strict):
    regime: Regime
    kinds: list[Kind] = Field(min_length=1)
    basis: str = Field(min_length=1, max_length=120)
    clock_starts: ClockStart
    respond_within: _Period | None = None
    extendable: bool
    extension_up_to: _Period | None = None
    first_extension_within: _Period | None = None

    @model_validator(mode="after")
    def _consistent(self) -> _Rule:
        if (self.clock_starts is ClockStart.ORDER) == (self.respond_within is not None):
            raise ValueError("respond_within is required, except when the clock starts with the order's date")
        if not self.extendable and (self.extension_up_to or self.first_extension_within):
            raise ValueError("a rule that is not extendable has no extension_up_to or first_extension_within")
        return self

    def to_rule(self) -> DeadlineRule:
        def period(p: _Period | None) -> Period | None:
            return Period(p.months, p.days) if p is not None else None

        return DeadlineRule(
            regime=self.regime,
            kinds=tuple(self.kinds),
            basis=self.basis,
            clock_starts=self.clock_starts,
            respond_within=period(self.respond_within),
            extendable=self.extendable,
            extension_up_to=period(self.extension_up_to),
            first_extension_within=period(self.first_extension_within),
        )


class _Rules(_Strict):
    rules: list[_Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rule_each(self) -> _Rules:
        seen: set[tuple[str, str]] = set()
        for rule in self.rules:
            for kind in rule.kinds:
                if (rule.regime, kind) in seen:
                    raise ValueError(f"regime {rule.regime} has two rules for {kind}")
                seen.add((rule.regime, kind))
        if not any(r.regime == COURT and "court_order" in r.kinds for r in self.rules):
            raise ValueError("expected a court rule for court_order")
        return self


class DeadlineRules:
    def __init__(self, rules: list[DeadlineRule]) -> None:
        self._rules = {(rule.regime, kind): rule for rule in rules for kind in rule.kinds}

    def regimes(self) -> set[str]:
        return {regime for regime, _ in self._rules}

    def find(self, regime: str | None, kind: str) -> DeadlineRule | None:
        """The rule of a request: the court's for a court order, else its regime's for its kind."""
        return self._rules.get((COURT if kind == "court_order" else regime or "", kind))


def load_rules(path: Path) -> DeadlineRules:
    data = read_yaml(path, allow_aliases=False)
    try:
        parsed = _Rules.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(str(path), *describe(exc, data)) from None
    return DeadlineRules([rule.to_rule() for rule in parsed.rules])


@cache
def deadline_rules() -> DeadlineRules:
    """The rules shipped with the code: a request is judged by the rules of the code that runs it."""
    return load_rules(RULES_FILE)
