"""Deadlines: how a rule (stores/deadline_rules.yaml) turns a request's dates into its deadline, and whether a
request is past it."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from domain.states import RequestState


class ClockStart(StrEnum):
    RECEIVED = "received"  # the day the request was received
    AUTHORITY_VERIFIED = "authority_verified"  # the day a guardian's authority was verified (UK GDPR Art. 12A)
    ORDER = "order"  # no period: the date written in the order is the deadline (a court's order, a retention policy)


@dataclass(frozen=True)
class Period:
    months: int = 0
    days: int = 0

    def after(self, start: date) -> date:
        """`start` plus the months (the same day of the month, or the month's last day) and then the days."""
        month = start.month - 1 + self.months
        year, month = start.year + month // 12, month % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return date(year, month, day) + timedelta(days=self.days)

    def plus(self, other: Period) -> Period:
        return Period(self.months + other.months, self.days + other.days)


@dataclass(frozen=True)
class DeadlineRule:
    regime: str
    kinds: tuple[str, ...]
    basis: str  # the provision, as the evidence cites it
    clock_starts: ClockStart
    respond_within: Period | None  # None only when the clock starts with the order's own date
    extendable: bool
    extension_up_to: Period | None  # None: no cap of its own (a court varies its own order)
    first_extension_within: Period | None  # a first extension (and its reasons) must be told within this


@dataclass(frozen=True)
class Extensions:
    """What the rule allows an operator's extension: none, up to a last deadline, and from a first-told date."""

    allowed: bool
    latest: date | None  # the furthest the deadline may move; None: no cap
    first_by: date | None  # the last day a first extension may be made; None: any day


class LaterThanRule(ValueError):
    def __init__(self, stated: date, ruled: date, rule: DeadlineRule) -> None:
        super().__init__(f"expected on or before {ruled.isoformat()} ({rule.basis}), got {stated.isoformat()}")


def clock_start(rule: DeadlineRule, *, received: date, authority_verified_on: date | None) -> date | None:
    """The day the rule's clock starts; None while it waits for a guardian's authority to be verified."""
    if rule.clock_starts is ClockStart.AUTHORITY_VERIFIED:
        return authority_verified_on
    return received


def deadline(rule: DeadlineRule, *, started: date | None, stated: date | None) -> date | None:
    """The deadline the rule gives, or the order's own if it is earlier (never later: LaterThanRule); None while the
    clock has not started and the order states none."""
    if rule.clock_starts is ClockStart.ORDER or rule.respond_within is None:
        if stated is None:
            raise ValueError(f"expected the date the order sets ({rule.basis}), got none")
        return stated
    if started is None:
        return stated
    ruled = rule.respond_within.after(started)
    if stated is not None and stated > ruled:
        raise LaterThanRule(stated, ruled, rule)
    return min(ruled, stated) if stated is not None else ruled


def extensions(rule: DeadlineRule, started: date | None) -> Extensions:
    if not rule.extendable:
        return Extensions(False, None, None)
    latest = first_by = None
    if started is not None and rule.respond_within is not None:
        if rule.extension_up_to is not None:
            latest = rule.respond_within.plus(rule.extension_up_to).after(started)
        if rule.first_extension_within is not None:
            first_by = rule.first_extension_within.after(started)
    return Extensions(True, latest, first_by)


def days_overdue(deadline: date | None, state: RequestState, today: date) -> int:
    """Days past the deadline of a request that has not ended; 0 when it is on time, has ended, or has no deadline
    yet (its clock has not started)."""
    if state.ended or deadline is None:
        return 0
    return max((today - deadline).days, 0)
