"""Meta custom audiences: removing the subject from each configured audience, as removal sessions Meta applies later.

Meta matches audience members on SHA-256 digests of normalised emails and phones (and on unhashed advertising and
external ids) and offers no way to ask whether someone is in an audience, so `locate` can only count the rows we would
send. Removal is asynchronous ("usually within 24 hours"): `erase` uploads one removal session per audience and
returns them as the job; `poll` reads each session's documented fields until Meta reports it processed, which is the
strongest evidence there is. Vendor contract: vendors.md, "Meta Marketing API — custom audience users";
normalisation: connectors/hashing.py.

Rows: an audience accepts only the schema kind it was built with (#2650), so each audience names its schema. A
multi-key schema gets one identifier per row with the other columns empty: Meta matches a row on any of its keys, so
pairing an email with a phone in one row removes no more, while one identifier per row needs no guess about which email
belongs with which phone, and makes `num_received` count identifiers exactly.

Meta's answers are vendor words: they reach the job state and the receipt only as typed facts (counts, the session's
times, `stage` as a plain status word or else "unknown" with the value held opaque for the activity to key, `progress` as a percentage), and an answer
that is not valid Unicode fails the system at once, since reading it again gives the same answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors import hashing, http
from connectors.base import UNRECORDED, Connector, secret_from_env
from domain.errors import ErasureError, TerminalError, Throttled, TransientError, VendorRefused
from domain.model import (
    EvidenceLevel,
    Inventory,
    JobHandle,
    JobState,
    JobStatus,
    Journal,
    Opaque,
    Outcome,
    Subject,
    Verification,
)
from domain.settings.meta_audiences import (
    IDENTIFIER_BY_KEY,
    KIND,
    MetaAudience,
    MetaSettings,
    SchemaKey,
    SingleSchema,
)

MAX_ROWS = 10_000  # per call
SESSION_FIELDS = "session_id,stage,progress,start_time,end_time,num_received,num_matched,num_invalid_entries"
# Graph error codes that mean "slow down": app (4), user (17) and ad-account (613) limits, business use case limits.
_THROTTLE_CODES = frozenset({4, 17, 613, *range(80000, 80015)})
_TRANSIENT_CODES = frozenset({1, 2})  # "unknown error" and "service temporarily unavailable": Meta says retry
# Refusals whose cause an operator can act on, by (code, subcode); the reason is ours, never Meta's message.
_REASONS: dict[tuple[int, int | None], str] = {
    (100, 1713230): "the audience is flagged for integrity restrictions: resolve them in Audience Manager",
    (2650, None): "the audience was built from another data source: set its schema to the kind it was built with",
    (2635, None): "the api version has expired: set connection.api_version to a current version",
    (190, None): "the access token is invalid or expired",
}
_JOB_PART = re.compile(r"(\d+):(\d+):(\d+)")  # audience id, session id, rows sent
_JOB_SEPARATOR = ","
_NUMERIC = re.compile(r"-?\d{1,19}")
# Meta does not document the values of `stage`: a plain status word is kept as it came, anything else is hashed.
_STATUS_WORD = re.compile(r"[a-z]{1,20}(?:_[a-z]{1,20}){0,3}")
_UNKNOWN = "unknown"


class MetaAudiencesConnector(Connector):
    """Removes the subject from Meta custom audiences in upload sessions of at most 10,000 rows per call.

    The session id is derived from the erase's idempotency key and the audience: a retried erase resends the same
    batches into the same session (a resent batch replaces itself), so it never opens a second removal; a later
    request for the same child gets sessions of its own. The id is a digest of our request's own id: no identifier.
    """

    kind = "meta_audiences"
    spec = KIND

    def __init__(self, system: str, settings: MetaSettings) -> None:
        super().__init__(system, settings)
        self._settings = settings
        connection = settings.connection
        token = secret_from_env(connection.access_token_env)
        # Meta: appsecret_proof is the HMAC-SHA256 of the access token under the app secret, as lower-case hex
        self._proof = (
            {}
            if connection.app_secret_env is None
            else {
                "appsecret_proof": hmac.new(
                    secret_from_env(connection.app_secret_env).encode(), token.encode(), hashlib.sha256
                ).hexdigest()
            }
        )
        base_url = secret_from_env(connection.base_url_env) if connection.base_url_env else connection.base_url
        self._client = http.client(
            f"{base_url.rstrip('/')}/{connection.api_version}",
            headers={"Authorization": f"Bearer {token}"},  # never in a URL, where proxies and logs keep it
        )

    def locate(self, subject: Subject) -> Inventory:
        return Inventory(
            {f"audience:{a.id}": len(self._rows(a, subject)) for a in self._settings.mapping.audiences},
            note="meta offers no membership lookup; counts are the rows erase sends to each audience",
        )

    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        planned = [(audience, self._rows(audience, subject)) for audience in self._settings.mapping.audiences]
        planned = [(audience, rows) for audience, rows in planned if rows]
        if not planned:
            kinds = sorted({IDENTIFIER_BY_KEY[key].value for a in self._settings.mapping.audiences for key in _keys(a)})
            raise TerminalError(f"subject has none of the identifier types the audiences match on: {kinds}")
        jobs, sent, received, invalid = [], 0, 0, 0
        for audience, rows in planned:
            session_id = _session_id(idempotency_key, audience.id)
            batches = [rows[start : start + MAX_ROWS] for start in range(0, len(rows), MAX_ROWS)]
            for batch_seq, batch in enumerate(batches, start=1):
                answer = self._call(
                    "DELETE",
                    f"/{audience.id}/users",
                    # in the body: 10,000 rows do not fit in a URL
                    data={
                        "payload": json.dumps({"schema": audience.schema_keys, "data": batch}),
                        "session": json.dumps(
                            {
                                "session_id": session_id,
                                "batch_seq": batch_seq,
                                "last_batch_flag": batch_seq == len(batches),
                                "estimated_num_total": len(rows),
                            }
                        ),
                        **self._proof,
                    },
                )
                _expect_ids(answer, audience.id, session_id)
                sent += len(batch)
                received += _count(answer, "num_received")
                invalid += _count(answer, "num_invalid_entries")
            jobs.append(f"{audience.id}:{session_id}:{len(rows)}")
        facts: dict[str, str | int] = {
            "api_version": self._settings.connection.api_version,
            "audiences": len(planned),
            "rows_sent": sent,
            "num_received": received,
            "num_invalid_entries": invalid,
        }
        if received != sent or invalid:
            return Outcome(
                level=EvidenceLevel.FAILED,
                vendor_status="rejected_rows",
                detail=f"meta received {received} of {sent} rows and found {invalid} invalid",
                facts=facts,
            )
        return Outcome(
            level=EvidenceLevel.ACCEPTED,
            job=JobHandle(_JOB_SEPARATOR.join(jobs), submitted_at=datetime.now(UTC)),
            vendor_status="received",
            detail=f"{sent} rows sent for removal in {len(planned)} audience session(s); "
            "meta applies removals within about 24 hours",
            facts=facts,
        )

    def poll(self, job: JobHandle) -> JobState:
        facts: dict[str, str | int | Opaque] = {"api_version": self._settings.connection.api_version}
        readings = []
        for audience_id, session_id, rows in _job_parts(job.job_id):
            answer = self._call(
                "GET",
                f"/{audience_id}/sessions",
                params={"session_id": str(session_id), "fields": SESSION_FIELDS, **self._proof},
            )
            reading = _reading(answer, audience_id, session_id, rows)
            facts.update(reading.facts())
            readings.append(reading)
        failed = [reading.failure for reading in readings if reading.failure]
        if failed:
            return JobState(JobStatus.FAILED, vendor_status="failed", detail="; ".join(failed), facts=facts)
        running = [reading for reading in readings if not reading.processed]
        if running:
            return JobState(JobStatus.RUNNING, vendor_status=running[0].stage, facts=facts)
        return JobState(
            JobStatus.SUCCEEDED,
            vendor_status="processed",
            finished_at=max(reading.finished_at for reading in readings if reading.finished_at is not None),
            detail=f"meta reports the removal session processed in all {len(readings)} audience(s)",
            facts=facts,
        )

    def verify(self, subject: Subject) -> Verification:
        return Verification(
            level=EvidenceLevel.ACCEPTED,
            remaining={},
            detail="meta offers no membership lookup; completion is meta's report on the removal sessions",
        )

    def close(self) -> None:
        self._client.close()

    def _rows(self, audience: MetaAudience, subject: Subject) -> list[Any]:
        """The audience's rows for the subject: flat values for a single-key schema, else one identifier per row."""
        schema = audience.schema_keys
        if isinstance(schema, str):
            return list(dict.fromkeys(self._values(schema, subject)))
        rows: dict[tuple[str, ...], None] = {}
        for column, key in enumerate(schema):
            for value in self._values(key, subject):
                rows[tuple(value if i == column else "" for i in range(len(schema)))] = None
        return [list(row) for row in rows]

    def _values(self, key: SchemaKey | SingleSchema, subject: Subject) -> Iterable[str]:
        values = subject.values(IDENTIFIER_BY_KEY[key])
        for position, value in enumerate(values, start=1):
            try:
                yield self._normalise(key, value)
            except ValueError as exc:
                raise TerminalError(f"{key.lower()} {position} of {len(values)} cannot be normalised: {exc}") from exc

    def _normalise(self, key: SchemaKey | SingleSchema, value: str) -> str:
        if key in ("EMAIL", "EMAIL_SHA256"):
            return hashing.sha256_hex(hashing.meta_email(value))
        if key in ("PHONE", "PHONE_SHA256"):
            return hashing.sha256_hex(hashing.meta_phone(value, self._settings.mapping.default_country_code))
        if key in ("MADID", "MOBILE_ADVERTISER_ID"):
            return hashing.meta_madid(value)
        if not value:
            raise ValueError("external id is empty")
        return value  # EXTERN_ID: the advertiser's own id, matched exactly as it was uploaded

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with http.transport_errors("meta"):
            response = self._client.request(method, path, **kwargs)
        body = _decode(response)
        if not response.is_success or not isinstance(body, dict) or "error" in body:
            raise _error(response, body)
        return body


@dataclass(frozen=True)
class _Reading:
    """One removal session as Meta reported it, reduced to typed values."""

    audience_id: str
    stage: str
    values: dict[str, str | int | Opaque]
    processed: bool
    finished_at: datetime | None
    failure: str

    def facts(self) -> dict[str, str | int | Opaque]:
        return {f"{self.audience_id}.{name}": value for name, value in self.values.items()}


def _reading(answer: dict[str, Any], audience_id: str, session_id: int, rows: int) -> _Reading:
    """Completion is judged conservatively from documented fields: upload ended, progress at 100, every row read."""
    data = answer.get("data")
    listed = (
        [s for s in data if isinstance(s, dict) and s.get("session_id") == str(session_id)]
        if isinstance(data, list)
        else []
    )
    if not listed:
        return _Reading(audience_id, "not_listed", {"stage": "not_listed"}, False, None, "")
    session = listed[0]
    values: dict[str, str | int | Opaque] = {}
    stage = _word(session.get("stage"), "stage", values)
    numbers = {
        name: _number(session.get(name), name, values)
        for name in ("progress", "start_time", "end_time", "num_received", "num_matched", "num_invalid_entries")
    }
    end_time, invalid, received = numbers["end_time"], numbers["num_invalid_entries"], numbers["num_received"]
    processed = numbers["progress"] == 100 and isinstance(end_time, int) and end_time > 0
    failure = ""
    if isinstance(invalid, int) and invalid > 0:
        failure = f"meta found {invalid} invalid entries in the removal session of audience {audience_id}"
    elif processed and received != rows:
        failure = f"meta processed {received} of {rows} rows in the removal session of audience {audience_id}"
    elif processed and any(isinstance(value, Opaque) for value in values.values()):
        # a session whose other fields are garbage (an echo, say) is no attestation of anything
        failure = (
            f"meta reported fields outside their documented shape for the removal session of audience {audience_id}"
        )
    finished_at = datetime.fromtimestamp(end_time, UTC) if processed and isinstance(end_time, int) else None
    return _Reading(audience_id, stage, values, processed and not failure, finished_at, failure)


def _word(raw: Any, name: str, facts: dict[str, str | int | Opaque]) -> str:
    if isinstance(raw, str) and _STATUS_WORD.fullmatch(raw):
        facts[name] = raw
        return raw
    return _unknown(raw, name, facts)


def _number(raw: Any, name: str, facts: dict[str, str | int | Opaque]) -> int | str:
    """Meta sends these fields as numeric strings; -1 stands for "not counted yet"; a percentage stays in 0-100."""
    if isinstance(raw, str) and _NUMERIC.fullmatch(raw):
        value = int(raw)
        if value >= -1 and (name != "progress" or value <= 100):
            facts[name] = value
            return value
    return _unknown(raw, name, facts)


def _unknown(raw: Any, name: str, facts: dict[str, str | int | Opaque]) -> str:
    """An answer outside the documented shape: "unknown", with what came held opaque (the activity keys it), never as
    is nor as a plain digest."""
    facts[name] = _UNKNOWN if raw is None else Opaque(json.dumps(raw, sort_keys=True).encode())
    return _UNKNOWN


def _decode(response: httpx.Response) -> Any:
    """The answer's JSON; invalid UTF-8 or a lone surrogate anywhere is terminal: reading it again cannot help."""
    return http.json_body("meta", response)


def _error(response: httpx.Response, body: Any) -> ErasureError:
    """The one place Meta's answers become project errors: HTTP status, Graph code and subcode, and nothing else."""
    status = response.status_code
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = (value if type(value) is int else None for value in (error.get("code"), error.get("error_subcode")))
    codes = (
        ", ".join(f"{name} {value}" for name, value in (("code", code), ("subcode", subcode)) if value is not None)
        or "no graph error code"
    )
    if status == 429 or code in _THROTTLE_CODES:
        return Throttled(f"meta throttled the request (http {status}, {codes})", _regain_seconds(response))
    if status >= 500 or code in _TRANSIENT_CODES or error.get("is_transient") is True:
        return TransientError(f"meta failed (http {status}, {codes})")
    if response.is_success and not error:
        return TransientError(f"meta sent an answer that is not a JSON object (http {status})")
    if code is not None:
        reason = _REASONS.get((code, subcode)) or _REASONS.get((code, None))
        if reason:
            codes = f"{codes}: {reason}"
    return VendorRefused("meta", codes, status)


def _regain_seconds(response: httpx.Response) -> float | None:
    """The longest `estimated_time_to_regain_access` (minutes) in X-Business-Use-Case-Usage, in seconds."""
    try:
        usage = json.loads(response.headers.get("X-Business-Use-Case-Usage", ""))
        minutes = max(
            (
                entry.get("estimated_time_to_regain_access", 0)
                for entries in usage.values()
                for entry in entries
                if isinstance(entry, dict)
            ),
            default=0,
        )
    except (ValueError, AttributeError, TypeError):
        return None
    return float(minutes) * 60 if isinstance(minutes, int | float) and minutes > 0 else None


def _expect_ids(answer: dict[str, Any], audience_id: str, session_id: int) -> None:
    """Meta's answer must be about the audience and session we sent: anything else is not evidence of our removal."""
    if answer.get("audience_id") != audience_id or answer.get("session_id") != str(session_id):
        raise TerminalError("meta answered about another audience or session: expected the ids sent")


def _count(answer: dict[str, Any], name: str) -> int:
    value = answer.get(name)
    if type(value) is not int or value < 0:
        raise TerminalError(f"meta answer has an unreadable {name}: expected a count")
    return value


def _keys(audience: MetaAudience) -> list[SchemaKey | SingleSchema]:
    schema = audience.schema_keys
    return [schema] if isinstance(schema, str) else list(schema)


def _job_parts(job_id: str) -> list[tuple[str, int, int]]:
    parts = [_JOB_PART.fullmatch(part) for part in job_id.split(_JOB_SEPARATOR)]
    if not all(parts):
        raise TerminalError("meta job id is malformed: expected audience:session:rows entries")
    return [(match[1], int(match[2]), int(match[3])) for match in parts if match]


def _session_id(idempotency_key: str, audience_id: str) -> int:
    """A positive 63-bit integer, as Meta's session ids are, fixed by the erase's idempotency key and the audience."""
    digest = hashlib.sha256(f"{idempotency_key}\n{audience_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
