"""Objects in versioned S3 buckets, found by key templates such as `uploads/{user_id}/`.

Erasure removes every version and every delete marker: a delete without a version id only hides the object.
A template ending in `/` is a prefix; any other template is one exact key. Identifier values are placed into a
template only if they form a single safe path segment, so no value can reach another subject's keys
(`1` never reaches `10/`, `a/b` never reaches `a/`, an empty value never lists the whole prefix).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connectors.base import Connector
from domain.errors import TerminalError, TransientError
from domain.model import EvidenceLevel, Inventory, Outcome, Subject, Verification
from domain.settings.s3 import KIND, BucketMapping, KeyTemplate, S3Settings, parse_template

_MAX_DELETE = 1000  # S3 DeleteObjects accepts at most 1,000 objects per request
_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling", "503", "500"}


_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")


def _usable_segment(value: str) -> bool:
    """A value may be placed in a key only as one whole, non-empty path segment."""
    return bool(value) and value not in (".", "..") and not _UNSAFE.search(value) and len(value.encode()) <= 512


@dataclass(frozen=True)
class _Version:
    key: str
    version_id: str
    is_delete_marker: bool


class S3Connector(Connector):
    kind = "s3"
    spec = KIND
    settings: S3Settings

    def __init__(self, system: str, settings: S3Settings) -> None:
        super().__init__(system, settings)
        endpoint_env = settings.connection.endpoint_url_env
        endpoint = os.environ.get(endpoint_env) if endpoint_env else None
        if endpoint_env and not endpoint:
            raise TerminalError(f"environment variable {endpoint_env} is not set")
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=settings.connection.region,
            config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=60),
        )

    def close(self) -> None:
        self._client.close()

    # -- protocol --------------------------------------------------------------------------------------------

    def locate(self, subject: Subject) -> Inventory:
        counts: dict[str, int] = {}
        for bucket, template, versions in self._scan(subject):
            location = _location(bucket, template)
            counts[location] = counts.get(location, 0) + len(versions)
        unusable = self._unusable(subject)
        note = f"{unusable} identifier value(s) cannot be used in key templates" if unusable else ""
        if not note and not sum(counts.values()):
            note = "nothing of the subject found"
        return Inventory(counts=counts, note=note)

    def erase(self, subject: Subject, idempotency_key: str) -> Outcome:
        # Idempotent: deleting a version that is already gone is not an error, and a rerun lists what is left.
        deleted: list[str] = []
        blocked = 0
        for bucket, versions in self._by_bucket(subject):
            for batch in _chunks(versions, _MAX_DELETE):
                done, refused = self._delete_batch(bucket, batch)
                deleted.extend(f"{bucket}/{v.key}@{v.version_id}" for v in done)
                blocked += refused
        for mapping in self.settings.mapping.buckets:  # a bucket may hold an unfinished upload and no object
            self._abort_uploads(mapping, subject)
        level = EvidenceLevel.BLOCKED if blocked else EvidenceLevel.VERIFIED_ABSENT
        detail = f"{blocked} object version(s) under legal hold or retention" if blocked else ""
        return Outcome(level=level, deleted=len(deleted), blocked=blocked, deleted_keys=tuple(deleted), detail=detail)

    def verify(self, subject: Subject) -> Verification:
        remaining: dict[str, int] = {}
        listed: set[tuple[str, str]] = set()
        locked = 0
        for bucket, template, versions in self._scan(subject):
            location = _location(bucket, template)
            remaining[location] = remaining.get(location, 0) + len(versions)
            listed.update((bucket, v.key) for v in versions)
            locked += sum(1 for v in versions if self._is_locked(bucket, v))
        uploads = sum(len(self._uploads(mapping, subject)) for mapping in self.settings.mapping.buckets)
        if uploads:
            remaining["multipart_uploads"] = uploads
        # an exact key the listing did not show must also answer 404 to HEAD (a listing is not a read)
        for mapping in self.settings.mapping.buckets:
            for template in map(parse_template, mapping.keys):
                if template.is_prefix:
                    continue
                for value in self._values(subject, template):
                    key = template.render(value)
                    if (mapping.bucket, key) not in listed and self._head_exists(mapping.bucket, key):
                        location = _location(mapping.bucket, template)
                        remaining[location] = remaining.get(location, 0) + 1
        total = sum(remaining.values())
        unusable = self._unusable(subject)
        if unusable:
            return Verification(
                level=EvidenceLevel.FAILED,
                remaining=remaining,
                detail=f"{unusable} identifier value(s) cannot be used in key templates: a person must check",
            )
        if total == 0:
            return Verification(level=EvidenceLevel.VERIFIED_ABSENT, remaining=remaining)
        if locked == total:
            return Verification(
                level=EvidenceLevel.BLOCKED,
                remaining=remaining,
                detail=f"{locked} object version(s) under legal hold or retention",
            )
        return Verification(level=EvidenceLevel.FAILED, remaining=remaining, detail=f"{total} object(s) remain")

    # -- listing ---------------------------------------------------------------------------------------------

    def _values(self, subject: Subject, template: KeyTemplate) -> list[str]:
        return [v for v in subject.values(template.identifier) if _usable_segment(v)]

    def _unusable(self, subject: Subject) -> int:
        kinds = {parse_template(t).identifier for b in self.settings.mapping.buckets for t in b.keys}
        return sum(1 for kind in kinds for v in subject.values(kind) if not _usable_segment(v))

    def _scan(self, subject: Subject) -> Iterator[tuple[str, KeyTemplate, list[_Version]]]:
        """Every version and delete marker of the subject, per bucket and key template."""
        for mapping in self.settings.mapping.buckets:
            for template in map(parse_template, mapping.keys):
                for value in self._values(subject, template):
                    key = template.render(value)
                    versions = self._list_versions(mapping.bucket, key)
                    if not template.is_prefix:
                        versions = [v for v in versions if v.key == key]
                    yield mapping.bucket, template, versions

    def _by_bucket(self, subject: Subject) -> Iterator[tuple[str, list[_Version]]]:
        """The subject's versions per bucket, each once even if two templates reach it."""
        seen: dict[str, dict[tuple[str, str], _Version]] = {}
        for bucket, _, versions in self._scan(subject):
            for v in versions:
                seen.setdefault(bucket, {})[(v.key, v.version_id)] = v
        for bucket, unique in seen.items():
            yield bucket, list(unique.values())

    def _list_versions(self, bucket: str, prefix: str) -> list[_Version]:
        out: list[_Version] = []
        try:
            for page in self._client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Versions", []):
                    if item["Key"].startswith(prefix):
                        out.append(_Version(item["Key"], item["VersionId"], False))
                for item in page.get("DeleteMarkers", []):
                    if item["Key"].startswith(prefix):
                        out.append(_Version(item["Key"], item["VersionId"], True))
        except (ClientError, BotoCoreError) as exc:
            raise _map_error(self.system, "list object versions", exc) from exc
        return out

    def _uploads(self, mapping: BucketMapping, subject: Subject) -> list[tuple[str, str]]:
        """Unfinished multipart uploads of the subject's keys: (key, upload id)."""
        found: list[tuple[str, str]] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        for template in map(parse_template, mapping.keys):
            for value in self._values(subject, template):
                key = template.render(value)
                try:
                    for page in paginator.paginate(Bucket=mapping.bucket, Prefix=key):
                        for upload in page.get("Uploads", []):
                            if upload["Key"] == key or (template.is_prefix and upload["Key"].startswith(key)):
                                found.append((upload["Key"], upload["UploadId"]))
                except (ClientError, BotoCoreError) as exc:
                    raise _map_error(self.system, "list multipart uploads", exc) from exc
        return found

    # -- deletion --------------------------------------------------------------------------------------------

    def _delete_batch(self, bucket: str, batch: list[_Version]) -> tuple[list[_Version], int]:
        """Delete one batch by version id; returns what was deleted and how many versions are locked."""
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Delete": {"Objects": [{"Key": v.key, "VersionId": v.version_id} for v in batch], "Quiet": False},
        }
        if self.settings.mapping.bypass_governance_retention:
            request["BypassGovernanceRetention"] = True
        try:
            response = self._client.delete_objects(**request)
        except (ClientError, BotoCoreError) as exc:
            raise _map_error(self.system, "delete objects", exc) from exc
        # HTTP 200 even when keys failed: each key is under Deleted or Errors.
        deleted = {(d["Key"], d.get("VersionId")) for d in response.get("Deleted", [])}
        done = [v for v in batch if (v.key, v.version_id) in deleted]
        failed = [v for v in batch if (v.key, v.version_id) not in deleted]
        codes = {e.get("Code", "") for e in response.get("Errors", [])}
        if codes & _TRANSIENT_CODES:
            raise TransientError(f"s3 {self.system}: delete objects partly failed ({', '.join(sorted(codes))})")
        locked = sum(1 for v in failed if self._is_locked(bucket, v))
        if locked != len(failed):
            raise TerminalError(
                f"s3 {self.system}: {len(failed) - locked} object version(s) refused "
                f"({', '.join(sorted(codes)) or 'no error code'}) without a lock: check the role's permissions"
            )
        return done, locked

    def _is_locked(self, bucket: str, version: _Version) -> bool:
        """A legal hold or an unexpired retention: the version cannot be deleted now."""
        if version.is_delete_marker:
            return False
        try:
            hold = self._client.get_object_legal_hold(Bucket=bucket, Key=version.key, VersionId=version.version_id)
            if hold.get("LegalHold", {}).get("Status") == "ON":
                return True
        except ClientError as exc:
            if _code(exc) not in {"NoSuchObjectLockConfiguration", "InvalidRequest", "NoSuchKey", "NoSuchVersion"}:
                raise _map_error(self.system, "get legal hold", exc) from exc
        try:
            retention = self._client.get_object_retention(Bucket=bucket, Key=version.key, VersionId=version.version_id)
            return bool(retention.get("Retention", {}).get("Mode"))
        except ClientError as exc:
            if _code(exc) in {"NoSuchObjectLockConfiguration", "InvalidRequest", "NoSuchKey", "NoSuchVersion"}:
                return False
            raise _map_error(self.system, "get retention", exc) from exc

    def _abort_uploads(self, mapping: BucketMapping, subject: Subject) -> None:
        for key, upload_id in self._uploads(mapping, subject):
            try:
                self._client.abort_multipart_upload(Bucket=mapping.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError) as exc:
                raise _map_error(self.system, "abort multipart upload", exc) from exc

    def _head_exists(self, bucket: str, key: str) -> bool:
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise _map_error(self.system, "head object", exc) from exc
        return True


def _location(bucket: str, template: KeyTemplate) -> str:
    """A location as receipts name it: the bucket and the template, never a rendered key."""
    return f"{bucket}/{template.text}"


def _chunks(items: list[_Version], size: int) -> Iterator[list[_Version]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _map_error(system: str, action: str, exc: Exception) -> Exception:
    """Only the error code travels on: S3 messages can echo keys, and keys hold identifiers."""
    if isinstance(exc, ClientError):
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        what = f"s3 {system}: {action} failed ({code or 'no code'}, http {status})"
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientError(what)
        return TerminalError(what)
    return TransientError(f"s3 {system}: {action} failed ({type(exc).__name__})")
