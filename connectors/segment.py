"""Segment: deletion through the Public API's regulations, an asynchronous job that only Segment can see finish.

Segment offers no lookup of what it holds about a user, so `locate` counts the identifiers we submit and `verify`
can only repeat the vendor's word; the evidence is the regulation's final status, read by `poll`. A regulation fans
out to the workspace's destinations; it counts as done only when Segment reports FINISHED (PARTIAL_SUCCESS means some
destination still holds the data). Vendor contract: vendors.md, "Segment Public API — regulations".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from connectors import http
from connectors.base import Connector, secret_from_env
from domain.errors import ErasureError, TerminalError, Throttled, TransientError, VendorRefused
from domain.model import (
    EvidenceLevel,
    Inventory,
    JobHandle,
    JobState,
    JobStatus,
    Outcome,
    Subject,
    Verification,
)
from domain.settings.segment import KIND, SegmentSettings

MAX_SUBJECT_IDS = 5000  # per regulation request
_RESET_HEADER = "X-Regulation-RateLimit-Quota-Reset"
_RUNNING = frozenset({"INITIALIZED", "RUNNING"})
_NOT_DONE = frozenset({"FAILED", "PARTIAL_SUCCESS", "INVALID", "NOT_SUPPORTED"})
_ERROR_TYPE = re.compile(r"[A-Za-z0-9_-]{1,40}")
_T = TypeVar("_T")
_JOB_SEPARATOR = ","  # one job may span several regulations (more than 5,000 ids); Segment ids are alphanumeric


class SegmentConnector(Connector):
    kind = "segment"
    spec = KIND

    def __init__(self, system: str, settings: SegmentSettings) -> None:
        super().__init__(system, settings)
        self._settings = settings
        token = secret_from_env(settings.connection.token_env)
        self._client = http.client(settings.connection.base_url, headers={"Authorization": f"Bearer {token}"})

    def locate(self, subject: Subject) -> Inventory:
        return Inventory(
            {"subject_ids": len(self._subject_ids(subject))},
            note="vendor offers no lookup; counts are identifiers submitted",
        )

    def erase(self, subject: Subject, idempotency_key: str) -> Outcome:
        # Segment takes no idempotency key and cannot be searched by one, so nothing can stop a retry from creating a
        # second regulation when an earlier POST succeeded but its answer was lost (or when a later batch failed).
        # That is harmless: deleting the same ids twice deletes nothing more, and the activity records the job of the
        # attempt that returned. So the key is not sent anywhere.
        ids = self._subject_ids(subject)
        if not ids:
            raise TerminalError(f"subject has no {self._settings.mapping.identifier} identifiers for segment")
        source_id = self._settings.connection.source_id
        path = "/regulations" if source_id is None else f"/regulations/sources/{source_id}"
        regulate_ids = []
        for start in range(0, len(ids), MAX_SUBJECT_IDS):
            body = self._call(
                "POST",
                path,
                json={
                    "regulationType": self._settings.mapping.regulation_type,
                    "subjectType": self._settings.mapping.subject_type,
                    "subjectIds": ids[start : start + MAX_SUBJECT_IDS],
                },
            )
            regulate_ids.append(_field(body, "data", "regulateId", str))
        return Outcome(
            level=EvidenceLevel.ACCEPTED,
            job=JobHandle(_JOB_SEPARATOR.join(regulate_ids), submitted_at=datetime.now(UTC)),
            vendor_status="INITIALIZED",
            deleted=0,
            detail=f"{len(ids)} subject ids submitted in {len(regulate_ids)} regulation(s)",
        )

    def poll(self, job: JobHandle) -> JobState:
        regulations = [
            _field(self._call("GET", f"/regulations/{quote(regulate_id, safe='')}"), "data", "regulation", dict)
            for regulate_id in job.job_id.split(_JOB_SEPARATOR)
        ]
        statuses = [str(regulation.get("overallStatus")) for regulation in regulations]
        unknown = set(statuses) - _RUNNING - _NOT_DONE - {"FINISHED"}
        if unknown:
            raise TerminalError(f"segment reported an unknown regulation status: {sorted(unknown)}")
        failed = [regulation for regulation in regulations if regulation["overallStatus"] in _NOT_DONE]
        if failed:
            return JobState(
                JobStatus.FAILED,
                vendor_status=str(failed[0]["overallStatus"]),
                detail="; ".join(_failure_detail(regulation) for regulation in failed),
            )
        running = [status for status in statuses if status in _RUNNING]
        if running:
            return JobState(JobStatus.RUNNING, vendor_status=running[0])
        finished = [_timestamp(regulation.get("finishedAt")) for regulation in regulations]
        return JobState(
            JobStatus.SUCCEEDED,
            vendor_status="FINISHED",
            finished_at=max((moment for moment in finished if moment is not None), default=None),
        )

    def verify(self, subject: Subject) -> Verification:
        return Verification(
            level=EvidenceLevel.ACCEPTED,
            remaining={},
            detail="vendor offers no lookup; completion is the vendor's word",
        )

    def close(self) -> None:
        self._client.close()

    def _subject_ids(self, subject: Subject) -> list[str]:
        return list(dict.fromkeys(subject.values(self._settings.mapping.identifier)))  # unique, in order

    def _call(self, method: str, path: str, json: dict[str, Any] | None = None) -> dict[str, Any]:
        with http.transport_errors("segment"):
            response = self._client.request(method, path, json=json)
        if not response.is_success:
            raise _error(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientError(f"segment sent an answer that is not a JSON object (http {response.status_code})")
        return body


def _error(response: httpx.Response) -> ErasureError:
    """The one place Segment's answers become project errors: status codes and Segment's error type only."""
    status = response.status_code
    if status == 429:
        retry_after = _seconds_until(_timestamp(response.headers.get(_RESET_HEADER)))
        when = "at an unknown time" if retry_after is None else f"in {retry_after:.0f} s"
        return Throttled(f"segment throttled the request (http 429); its quota resets {when}", retry_after)
    if status >= 500:
        return TransientError(f"segment failed (http {status})")
    return VendorRefused("segment", _error_type(response), status)


def _error_type(response: httpx.Response) -> str:
    """Segment's machine-readable error type (e.g. "validation"); its message may quote the request, so never that."""
    try:
        kind = response.json()["errors"][0]["type"]
    except (ValueError, KeyError, IndexError, TypeError):
        return "no error type given"
    return kind if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else "unreadable error type"


def _failure_detail(regulation: dict[str, Any]) -> str:
    """Names the destinations that did not finish, by Segment's destination name and id: no subject identifiers."""
    failing = [
        f"{destination.get('name')} ({destination.get('id')}) {destination.get('status')}"
        for stream in regulation.get("streamStatus") or []
        for destination in stream.get("destinationStatus") or []
        if destination.get("status") != "FINISHED"
    ]
    return f"regulation {regulation['overallStatus']}: " + (", ".join(failing) or "no destination status given")


def _field(body: dict[str, Any], outer: str, inner: str, kind: type[_T]) -> _T:
    value = body.get(outer, {}).get(inner) if isinstance(body.get(outer), dict) else None
    if not isinstance(value, kind):
        raise TransientError(f"segment answer has no {outer}.{inner} of type {kind.__name__}")
    return value


def _timestamp(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _seconds_until(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())
