"""Whether a request is past its deadline, and by how many days."""

from __future__ import annotations

from datetime import date

from domain.states import RequestState


def days_overdue(deadline: date, state: RequestState, today: date) -> int:
    """Days past the deadline of a request that has not ended; 0 when it is on time or has ended."""
    if state.ended:
        return 0
    return max((today - deadline).days, 0)
