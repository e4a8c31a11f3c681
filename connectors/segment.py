"""Segment: deletion through the Public API's regulations, an asynchronous job that only Segment can see finish.

Segment offers no lookup of what it holds about a user, so `locate` counts the identifiers we submit and `verify`
can only repeat the vendor's word, strengthened for suppressing types by finding the ids on Segment's suppression
list; the evidence is the regulation's final status, read by `poll`. A regulation fans out to the workspace's
destinations; Segment reports FAILED when only an unsupported destination failed, so that case is recorded as
Segment done with those destinations named as residual copies needing their own connector.
Vendor contract: vendors.md, "Segment Public API — regulations", and the Public API SDKs.

Every answer is reduced here to typed fields: statuses from the documented enum (else "unknown" and the value held
opaque, which the activity keys per request), ids of Segment's shape (else opaque), destination names only when the
catalogue declares them, counts. No unkeyed digest of a vendor value is kept: an echoed identifier would be reversible. A vendor
string never reaches an Outcome, a JobState or an error message as it came; an answer holding invalid Unicode is a
terminal failure (it could never be stored, so retrying it would loop).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from connectors import http
from connectors.base import UNRECORDED, Connector, secret_from_env
from domain.errors import ErasureError, TerminalError, Throttled, TransientError, VendorRefused
from domain.model import (
    DestinationStatus,
    EvidenceLevel,
    Inventory,
    JobHandle,
    JobState,
    JobStatus,
    Journal,
    Opaque,
    Outcome,
    Subject,
    VendorFacts,
    Verification,
)
from domain.settings.segment import KIND, SUPPRESSING_TYPES, SegmentSettings

MAX_SUBJECT_IDS = 5000  # per regulation request
PAGE_SIZE = 200  # the Public API's largest `pagination.count`
MAX_PAGES = 50  # lists are read this far and no further: 10,000 regulations or suppressed ids
# A monthly quota resets within a calendar month: a longer wait is not Segment's to ask, so it is cut to this.
MAX_WAIT = timedelta(days=32)
STATUSES = frozenset({"INITIALIZED", "RUNNING", "FINISHED", "PARTIAL_SUCCESS", "FAILED", "INVALID", "NOT_SUPPORTED"})
_RUNNING = frozenset({"INITIALIZED", "RUNNING"})
_DESTINATION_DONE = frozenset({"FINISHED", "NOT_SUPPORTED"})
ERROR_TYPES = frozenset({"input-validation", "RequestError"})  # the error types Segment documents
_REQUEST_FIELDS = frozenset({"regulationType", "subjectType", "subjectIds", "pagination.count", "pagination.cursor"})
# Segment's ids are base62 KSUID-like strings (the reference's examples have 22 and 27 characters)
_SEGMENT_ID = re.compile(r"[0-9A-Za-z]{20,32}")
_JOB_SEPARATOR = ","  # one job may span several regulations (more than 5,000 ids); ids never hold a comma


class SegmentConnector(Connector):
    kind = "segment"
    spec = KIND

    def __init__(self, system: str, settings: SegmentSettings) -> None:
        super().__init__(system, settings)
        self._settings = settings
        self._declared = frozenset(settings.mapping.destinations)
        connection = settings.connection
        token = secret_from_env(connection.token_env)
        base_url = secret_from_env(connection.base_url_env) if connection.base_url_env else connection.base_url
        self._client = http.client(str(base_url), headers={"Authorization": f"Bearer {token}"})

    def locate(self, subject: Subject) -> Inventory:
        return Inventory(
            {"subject_ids": len(self._subject_ids(subject))},
            note="vendor offers no lookup; counts are identifiers submitted",
        )

    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        # Segment takes no idempotency key. A POST whose answer was lost (or a later batch that failed) is found
        # again in the list of regulations before anything is created: a pending regulation of our type for exactly
        # the same subject ids is the one we sent. So the key itself is sent nowhere.
        ids = self._subject_ids(subject)
        if not ids:
            raise TerminalError(f"subject has no {self._settings.mapping.identifier} identifiers for segment")
        mapping = self._settings.mapping
        batches = [ids[start : start + MAX_SUBJECT_IDS] for start in range(0, len(ids), MAX_SUBJECT_IDS)]
        earlier = self._pending_regulations({frozenset(batch) for batch in batches})
        regulate_ids, created = [], 0
        for batch in batches:
            regulate_id = earlier.get(frozenset(batch))
            if regulate_id is None:
                body = self._call(
                    "POST",
                    self._regulations_path(),
                    json={
                        "regulationType": mapping.regulation_type,
                        "subjectType": mapping.subject_type,
                        "subjectIds": batch,
                    },
                )
                regulate_id = _regulate_id(body)
                created += 1
            regulate_ids.append(regulate_id)
        facts: VendorFacts = {
            "regulation_type": mapping.regulation_type,
            "subject_type": mapping.subject_type,
            "scope": mapping.scope,
            "subject_ids": len(ids),
            "regulations": len(regulate_ids),
            "regulations_found_pending": len(regulate_ids) - created,
        }
        return Outcome(
            level=EvidenceLevel.ACCEPTED,
            job=JobHandle(_JOB_SEPARATOR.join(regulate_ids), submitted_at=datetime.now(UTC)),
            vendor_status="INITIALIZED",
            deleted=0,
            detail=f"{len(ids)} subject ids in {len(regulate_ids)} regulation(s), {created} created now "
            f"(scope {mapping.scope})",
            facts=facts,
        )

    def poll(self, job: JobHandle) -> JobState:
        regulations = [self._regulation(regulate_id) for regulate_id in job.job_id.split(_JOB_SEPARATOR)]
        destinations = tuple(d for regulation in regulations for d in regulation.destinations)
        unknown = [r for r in regulations if r.status == "unknown"]
        if unknown:
            return JobState(
                JobStatus.FAILED,
                vendor_status="unknown",
                detail="segment reported an undocumented regulation status",
                facts={"regulation_status": unknown[0].status_opaque or "unknown"},
                destinations=destinations,
            )
        running = [r.status for r in regulations if r.status in _RUNNING]
        if running:
            return JobState(JobStatus.RUNNING, vendor_status=running[0], destinations=destinations)
        residual = sorted({self._label(d) for r in regulations if _only_unsupported(r) for d in r.unsupported()})
        failed = [r for r in regulations if r.status != "FINISHED" and not _only_unsupported(r)]
        if failed:
            return JobState(
                JobStatus.FAILED,
                vendor_status=failed[0].status,
                detail="; ".join(self._failure_detail(r) for r in failed),
                destinations=destinations,
            )
        finished = [r.finished_at for r in regulations if r.finished_at is not None]
        detail = (
            f"segment's own systems finished; {len(residual)} destination(s) cannot delete and need their own "
            f"connector: {', '.join(residual)}"
            if residual
            else ""
        )
        return JobState(
            JobStatus.SUCCEEDED,
            vendor_status="FAILED" if residual else "FINISHED",
            finished_at=max(finished, default=None),
            detail=detail,
            destinations=destinations,
            residual=tuple(residual),
        )

    def verify(self, subject: Subject) -> Verification:
        if self._settings.mapping.regulation_type not in SUPPRESSING_TYPES:
            return Verification(
                level=EvidenceLevel.ACCEPTED,
                remaining={},
                detail="vendor offers no lookup; completion is the vendor's word",
            )
        ids = set(self._subject_ids(subject))
        suppressed, complete = self._suppressed(ids)
        if not complete:
            detail = f"segment's suppression list is longer than {MAX_PAGES * PAGE_SIZE} entries: not checked"
        else:
            detail = f"{len(suppressed)} of {len(ids)} subject ids are on segment's suppression list"
        return Verification(
            level=EvidenceLevel.ACCEPTED,
            remaining={},
            detail=detail,
            facts={
                "suppression_checked": "yes" if complete else "no",
                "suppressed": len(suppressed),
                "submitted": len(ids),
            },
        )

    def close(self) -> None:
        self._client.close()

    # -- reading Segment ----------------------------------------------------------------------------------------

    def _subject_ids(self, subject: Subject) -> list[str]:
        return list(dict.fromkeys(subject.values(self._settings.mapping.identifier)))  # unique, in order

    def _regulations_path(self) -> str:
        source_id = self._settings.connection.source_id
        return "/regulations" if source_id is None else f"/regulations/sources/{source_id}"

    def _pending_regulations(self, wanted: set[frozenset[str]]) -> dict[frozenset[str], str]:
        """Regulations of our type still pending for exactly one of the wanted sets of ids: matched in memory."""
        mapping = self._settings.mapping
        found: dict[frozenset[str], str] = {}
        for entry in self._pages(self._regulations_path(), "regulations", {"regulationTypes": mapping.regulation_type}):
            subjects = entry.get("subjects")
            if (
                entry.get("status") in _RUNNING
                and entry.get("regulationType") == mapping.regulation_type
                and entry.get("subjectType") == mapping.subject_type
                and isinstance(subjects, list)
                and frozenset(subjects) in wanted
                and _is_segment_id(entry.get("id"))
            ):
                found.setdefault(frozenset(subjects), entry["id"])
        return found

    def _suppressed(self, ids: set[str]) -> tuple[set[str], bool]:
        """Which of `ids` Segment lists as suppressed, and whether the whole list was read."""
        found: set[str] = set()
        entries = self._pages("/suppressions", "suppressed", {})
        for entry in entries:
            listed = entry.get("subjectIds")
            if entry.get("subjectType") == self._settings.mapping.subject_type and isinstance(listed, list):
                found.update(ids.intersection(i for i in listed if isinstance(i, str)))
        return found, entries.complete

    def _pages(self, path: str, key: str, params: dict[str, str]) -> _Pages:
        return _Pages(self, path, key, params)

    def _regulation(self, regulate_id: str) -> _Regulation:
        body = self._call("GET", f"/regulations/{quote(regulate_id, safe='')}")
        data = body.get("data")
        regulation = data.get("regulation") if isinstance(data, dict) else None
        if not isinstance(regulation, dict):
            raise TransientError("segment answer has no data.regulation object")
        status, status_opaque = _enum(regulation.get("overallStatus"), STATUSES)
        destinations = tuple(
            self._destination(destination)
            for stream in _objects(regulation.get("streamStatus"))
            for destination in _objects(stream.get("destinationStatus"))
        )
        return _Regulation(status, status_opaque, _timestamp(regulation.get("finishedAt")), destinations)

    def _destination(self, raw: Mapping[str, Any]) -> DestinationStatus:
        opaque: dict[str, Opaque] = {}
        name = raw.get("name")
        kept_name = name if isinstance(name, str) and name in self._declared else None
        if kept_name is None and name not in (None, ""):
            opaque["name"] = _opaque(name)
        destination_id = raw.get("id") if _is_segment_id(raw.get("id")) else None
        if destination_id is None and raw.get("id") not in (None, ""):
            opaque["id"] = _opaque(raw.get("id"))
        status, status_opaque = _enum(raw.get("status"), STATUSES)
        if status_opaque is not None:
            opaque["status"] = status_opaque
        if raw.get("errString") not in (None, ""):
            opaque["error"] = _opaque(raw.get("errString"))  # free text: kept only to match Segment's console
        return DestinationStatus(kept_name, destination_id, status, _timestamp(raw.get("finishedAt")), opaque)

    def _label(self, destination: DestinationStatus) -> str:
        name = destination.name or "an undeclared destination"
        return f"{name} ({destination.id})" if destination.id else name

    def _failure_detail(self, regulation: _Regulation) -> str:
        failing = [
            f"{self._label(d)} {d.status}" for d in regulation.destinations if d.status not in ("FINISHED", "unknown")
        ] + [f"{self._label(d)} unknown status" for d in regulation.destinations if d.status == "unknown"]
        return f"regulation {regulation.status}: " + (", ".join(failing) or "no destination status given")

    def _call(
        self, method: str, path: str, json: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        with http.transport_errors("segment"):
            response = self._client.request(method, path, json=json, params=params)
        body = _decode(response)
        if not response.is_success:
            raise _error(response, body)
        if not isinstance(body, dict):
            raise TransientError(f"segment sent an answer that is not a JSON object (http {response.status_code})")
        return body


class _Regulation:
    """One regulation as read, reduced to typed fields."""

    def __init__(
        self,
        status: str,
        status_opaque: Opaque | None,
        finished_at: datetime | None,
        destinations: tuple[DestinationStatus, ...],
    ) -> None:
        self.status = status
        self.status_opaque = status_opaque
        self.finished_at = finished_at
        self.destinations = destinations

    def unsupported(self) -> list[DestinationStatus]:
        return [d for d in self.destinations if d.status == "NOT_SUPPORTED"]


class _Pages:
    """The entries of a paginated list, page by page up to MAX_PAGES; `complete` says whether the end was reached."""

    def __init__(self, connector: SegmentConnector, path: str, key: str, params: dict[str, str]) -> None:
        self._connector, self._path, self._key, self._params = connector, path, key, params
        self.complete = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            params = {**self._params, "pagination.count": str(PAGE_SIZE)}
            if cursor is not None:
                params["pagination.cursor"] = cursor
            data = self._connector._call("GET", self._path, params=params).get("data")
            if not isinstance(data, dict) or not isinstance(data.get(self._key), list):
                raise TransientError(f"segment answer has no data.{self._key} list")
            yield from _objects(data[self._key])
            pagination = data.get("pagination")
            following = pagination.get("next") if isinstance(pagination, dict) else None
            if not isinstance(following, str) or not following or len(following) > 200:
                self.complete = True
                return
            cursor = following


def _only_unsupported(regulation: _Regulation) -> bool:
    """FAILED only because destinations cannot delete: Segment's own systems and the others finished (vendors.md)."""
    return (
        regulation.status == "FAILED"
        and bool(regulation.unsupported())
        and all(d.status in _DESTINATION_DONE for d in regulation.destinations)
    )


def _decode(response: httpx.Response) -> Any:
    """The JSON body, or None when it is not JSON. Invalid Unicode is terminal: it could never be stored."""
    return http.json_body("segment", response)


def _error(response: httpx.Response, body: Any) -> ErasureError:
    """The one place Segment's errors become project errors: the status code and documented fields only."""
    status = response.status_code
    if status == 429:
        wait = _wait(response, body)
        when = "an unknown time" if wait is None else f"{wait:.0f} s"
        return Throttled(f"segment throttled the request (http 429); it asks to wait {when}", wait)
    if status >= 500:
        return TransientError(f"segment failed (http {status})")
    return VendorRefused("segment", _reason(body), status)


def _wait(response: httpx.Response, body: Any) -> float | None:
    """How long Segment asks us to wait: `Retry-After` (seconds), else `msBeforeNext`, else `X-RateLimit-Reset`."""
    retry_after = response.headers.get("Retry-After", "").strip()
    if retry_after.isdigit():
        return _bounded(float(retry_after))
    ms_before_next = _first_error(body).get("data", {})
    ms_before_next = ms_before_next.get("msBeforeNext") if isinstance(ms_before_next, dict) else None
    if isinstance(ms_before_next, int) and not isinstance(ms_before_next, bool) and ms_before_next >= 0:
        return _bounded(ms_before_next / 1000)
    try:
        reset = parsedate_to_datetime(response.headers.get("X-RateLimit-Reset", ""))
    except (TypeError, ValueError):
        return None
    if reset.tzinfo is None:
        return None
    return _bounded((reset - datetime.now(UTC)).total_seconds())


def _bounded(seconds: float) -> float:
    return min(max(math.ceil(seconds), 0), MAX_WAIT.total_seconds())


def _reason(body: Any) -> str:
    """Segment's documented error type (and the field, for validation); anything else is not repeated."""
    error = _first_error(body)
    kind = error.get("type")
    if kind is None:
        return "no error type given"
    if kind not in ERROR_TYPES:
        return "undocumented error type"
    field = error.get("field")
    if kind == "input-validation" and field in _REQUEST_FIELDS:
        return f"{kind} on {field}"
    return str(kind)


def _first_error(body: Any) -> dict[str, Any]:
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    return first if isinstance(first, dict) else {}


def _regulate_id(body: dict[str, Any]) -> str:
    data = body.get("data")
    regulate_id = data.get("regulateId") if isinstance(data, dict) else None
    if regulate_id is None:
        raise TransientError("segment answer has no data.regulateId")
    if not _is_segment_id(regulate_id):
        # the regulation may exist, but an id of the wrong shape cannot be kept or polled: a person must look
        raise TerminalError("segment answered a regulateId of an undocumented shape")
    return str(regulate_id)


def _is_segment_id(value: Any) -> bool:
    return isinstance(value, str) and _SEGMENT_ID.fullmatch(value) is not None


def _enum(value: Any, documented: frozenset[str]) -> tuple[str, Opaque | None]:
    """A documented value as it is, anything else as "unknown" with the value held opaque."""
    if isinstance(value, str) and value in documented:
        return value, None
    return "unknown", _opaque(value)


def _opaque(value: Any) -> Opaque:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=True)
    return Opaque(text.encode("utf-8", "surrogatepass"))


def _objects(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _timestamp(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
