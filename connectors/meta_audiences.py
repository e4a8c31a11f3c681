"""Meta custom audiences: removing the subject's hashed email and phone from each configured audience.

Meta matches audience members on SHA-256 digests of normalised identifiers and offers no way to ask whether someone
is in an audience, so `locate` can only count the rows we would send, and the strongest evidence is Meta's own
report that the removal session finished processing. Vendor contract: vendors.md, "Meta Marketing API — custom
audience users"; normalisation: connectors/hashing.py.

Rows: the payload uses the multi-key schema from the mapping (e.g. ["EMAIL", "PHONE"]) with one identifier per row
and the other columns empty. Meta matches a row on any of its keys, so pairing an email with a phone in one row
removes no more, while one identifier per row needs no guess about which email belongs with which phone, and makes
`num_received` count identifiers exactly. Keeping one schema for every call also keeps the data source an audience
was built from (Meta refuses single-key uploads to a multi-key audience, error 2650).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import httpx

from connectors import hashing, http
from connectors.base import Connector, secret_from_env
from domain.errors import ErasureError, TerminalError, Throttled, TransientError, VendorRefused
from domain.model import EvidenceLevel, Inventory, Outcome, Subject, Verification
from domain.settings.meta_audiences import IDENTIFIER_BY_KEY, KIND, MetaSettings, SchemaKey

MAX_ROWS = 10_000  # per call
# Graph error codes that mean "slow down": app (4), user (17) and ad-account (613) limits, business use case limits.
_THROTTLE_CODES = frozenset({4, 17, 613, *range(80000, 80015)})
_TRANSIENT_CODES = frozenset({1, 2})  # "unknown error" and "service temporarily unavailable": Meta says retry


class MetaAudiencesConnector(Connector):
    """Removes hashed identifiers from Meta custom audiences, in upload sessions of at most 10,000 rows per call.

    `verify` reports vendor_attested only when Meta shows the removal session finished processing (progress 100) in
    every audience, and accepted otherwise: Meta applies removals within about 24 hours and offers no membership
    lookup, so "Meta accepted the rows" is all that can be said before that.

    The session id is derived from the audience and the rows, not from the erase's idempotency key: `verify` is not
    given the key and must find the same session. A retried erase therefore resends into its own session, and so
    does a later erase of the same identifiers; removal is idempotent, so neither removes anything it should not.
    The id is a digest of identifier digests: it goes to Meta, which holds the digests already, and is never
    recorded by the connector.
    """

    kind = "meta_audiences"
    spec = KIND

    def __init__(self, system: str, settings: Any) -> None:
        parsed = MetaSettings.model_validate(settings)
        super().__init__(system, parsed)
        self._settings = parsed
        self._token = secret_from_env(parsed.connection.access_token_env)
        connection = parsed.connection
        self._client = http.client(f"{connection.base_url.rstrip('/')}/{connection.api_version}")

    def locate(self, subject: Subject) -> Inventory:
        rows = len(self._rows(subject))
        return Inventory(
            {f"audience:{audience_id}": rows for audience_id in self._settings.mapping.audience_ids},
            note="meta offers no membership lookup; counts are the rows erase sends to each audience",
        )

    def erase(self, subject: Subject, idempotency_key: str) -> Outcome:
        rows = self._rows_to_remove(subject)
        audience_ids = self._settings.mapping.audience_ids
        sent = received = invalid = 0
        for audience_id in audience_ids:
            session_id = _session_id(audience_id, rows)
            batches = [rows[start : start + MAX_ROWS] for start in range(0, len(rows), MAX_ROWS)]
            for batch_seq, batch in enumerate(batches, start=1):
                answer = self._call(
                    "DELETE",
                    f"/{audience_id}/users",
                    # in the body: 10,000 rows do not fit in a URL, and the token stays out of URLs and their logs
                    data={
                        "access_token": self._token,
                        "payload": json.dumps({"schema": self._settings.mapping.schema_keys, "data": batch}),
                        "session": json.dumps(
                            {
                                "session_id": session_id,
                                "batch_seq": batch_seq,
                                "last_batch_flag": batch_seq == len(batches),
                                "estimated_num_total": len(rows),
                            }
                        ),
                    },
                )
                sent += len(batch)
                received += _count(answer, "num_received")
                invalid += _count(answer, "num_invalid_entries")
        if received != sent or invalid:
            return Outcome(
                level=EvidenceLevel.FAILED,
                deleted=received - invalid,
                vendor_status=f"received {received}",
                detail=f"meta received {received} of {sent} rows and found {invalid} invalid",
            )
        return Outcome(
            level=EvidenceLevel.ACCEPTED,
            deleted=sent,
            vendor_status=f"received {received}",
            detail=f"{len(rows)} rows sent for removal from each of {len(audience_ids)} audience(s); "
            "meta applies removals within about 24 hours",
        )

    def verify(self, subject: Subject) -> Verification:
        rows = self._rows_to_remove(subject)
        audience_ids = self._settings.mapping.audience_ids
        unfinished = 0
        for audience_id in audience_ids:
            session_id = str(_session_id(audience_id, rows))
            answer = self._call(
                "GET", f"/{audience_id}/sessions", params={"session_id": session_id, "access_token": self._token}
            )
            if not any(_processed(session, session_id) for session in answer.get("data") or []):
                unfinished += 1
        if unfinished:
            return Verification(
                level=EvidenceLevel.ACCEPTED,
                remaining={},
                detail=f"meta has not finished the removal session in {unfinished} of {len(audience_ids)} audience(s); "
                "it offers no membership lookup",
            )
        return Verification(
            level=EvidenceLevel.VENDOR_ATTESTED,
            remaining={},
            detail=f"meta reports the removal session processed in all {len(audience_ids)} audience(s)",
        )

    def close(self) -> None:
        self._client.close()

    def _rows(self, subject: Subject) -> list[list[str]]:
        """One row per identifier, hashed, in the mapping's schema; identical digests are sent once."""
        keys = self._settings.mapping.schema_keys
        rows: dict[tuple[str, ...], None] = {}
        for column, key in enumerate(keys):
            values = subject.values(IDENTIFIER_BY_KEY[key])
            for position, value in enumerate(values, start=1):
                try:
                    digest = hashing.sha256_hex(self._normalise(key, value))
                except ValueError as exc:
                    raise TerminalError(f"{key.lower()} {position} of {len(values)} cannot be hashed: {exc}") from exc
                rows[tuple(digest if i == column else "" for i in range(len(keys)))] = None
        return [list(row) for row in rows]

    def _rows_to_remove(self, subject: Subject) -> list[list[str]]:
        rows = self._rows(subject)
        if not rows:
            raise TerminalError(f"subject has none of the identifier types {self._settings.mapping.schema_keys}")
        return rows

    def _normalise(self, key: SchemaKey, value: str) -> str:
        if key == "EMAIL":
            return hashing.meta_email(value)
        return hashing.meta_phone(value, self._settings.mapping.default_country_code)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with http.transport_errors("meta"):
            response = self._client.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not response.is_success or not isinstance(body, dict) or "error" in body:
            raise _error(response, body)
        return body


def _error(response: httpx.Response, body: Any) -> ErasureError:
    """The one place Meta's answers become project errors: HTTP status, Graph code and subcode, and nothing else."""
    status = response.status_code
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code, subcode = error.get("code"), error.get("error_subcode")
    codes = (
        ", ".join(f"{name} {value}" for name, value in (("code", code), ("subcode", subcode)) if isinstance(value, int))
        or "no graph error code"
    )
    if status == 429 or code in _THROTTLE_CODES:
        return Throttled(f"meta throttled the request (http {status}, {codes})", _regain_seconds(response))
    if status >= 500 or code in _TRANSIENT_CODES or error.get("is_transient") is True:
        return TransientError(f"meta failed (http {status}, {codes})")
    if response.is_success and not error:
        return TransientError(f"meta sent an answer that is not a JSON object (http {status})")
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


def _processed(session: Any, session_id: str) -> bool:
    """Meta does not document the values of `stage`; `progress` is a percentage, so 100 means processed."""
    return isinstance(session, dict) and session.get("session_id") == session_id and session.get("progress") == "100"


def _count(answer: dict[str, Any], name: str) -> int:
    try:
        return int(answer[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise TransientError(f"meta answer has no readable {name}") from exc


def _session_id(audience_id: str, rows: list[list[str]]) -> int:
    """A positive 63-bit integer, as Meta's session ids are, fixed by the audience and the rows."""
    material = "\n".join([audience_id, *sorted(",".join(row) for row in rows)])
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big") >> 1
