"""Objects in versioned S3 buckets, found by key templates such as `uploads/{user_id}/`.

Erasure removes every version and every delete marker: a delete without a version id only hides the object.
A template ending in `/` is a prefix; any other template is one exact key. Identifier values are placed into a
template only if they form a single safe path segment, so no value can reach another subject's keys
(`1` never reaches `10/`, `a/b` never reaches `a/`, an empty value never lists the whole prefix).

Order matters, because deleting a key's delete marker undeletes it (vendors.md):
1. In a bucket with Object Lock, each of the subject's keys whose current entry is a version first gets a delete
   marker, so a version that turns out to be locked never becomes current.
2. Versions are deleted by version id. A refused version is locked if its legal hold is ON or its retention runs
   past now (an expired retention protects nothing): it stays, `blocked`, with the mode and date recorded. Any other
   refusal is a missing permission: terminal.
3. The delete markers of keys with no version left are deleted; a key that keeps a locked version keeps its marker.
Unfinished multipart uploads are aborted, each confirmed by ListParts answering NoSuchUpload. Deletes by version id
are not replicated: replication destinations this system maps are erased like any mapped bucket; any other is named
as a residual copy and the outcome is `failed` until a person maps it. A bucket with MFA delete refuses every
version delete without its owner's MFA code: terminal, before anything is deleted there.

The role needs s3:ListBucketVersions, s3:GetObjectVersion, s3:GetObjectRetention, s3:GetObjectLegalHold,
s3:DeleteObject, s3:DeleteObjectVersion, s3:GetBucketObjectLockConfiguration, s3:GetBucketVersioning,
s3:GetReplicationConfiguration, s3:ListBucketMultipartUploads, s3:ListMultipartUploadParts and
s3:AbortMultipartUpload (and s3:BypassGovernanceRetention where `bypass_governance_retention` is set); under a legal
hold of the orchestrator's, s3:PutObjectLegalHold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from connectors import aws
from connectors.aws import ObjectVersion, Refusal
from connectors.base import UNRECORDED, Connector
from domain.aws_errors import AwsErrorKind, classify
from domain.errors import TerminalError, TransientError
from domain.model import EvidenceLevel, Inventory, Journal, Outcome, Restriction, Subject, Verification
from domain.settings.s3 import KIND, BucketMapping, KeyTemplate, S3Settings, parse_template

# Said on every receipt: erasing the objects does not reach the records S3 itself keeps of their keys.
KEYS_RECORDED_ELSEWHERE = (
    "server access logs, CloudTrail data events and S3 Inventory reports may still record the object keys"
)

_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")


def _usable_segment(value: str) -> bool:
    """A value may be placed in a key only as one whole, non-empty path segment."""
    return bool(value) and value not in (".", "..") and not _UNSAFE.search(value) and len(value.encode()) <= 512


@dataclass(frozen=True)
class _Lock:
    """Why a version cannot be deleted now: a legal hold, a retention in force, or both."""

    legal_hold: bool
    mode: str  # GOVERNANCE or COMPLIANCE while the retention is in force, else ""
    retain_until: datetime | None


class S3Connector(Connector):
    kind = "s3"
    spec = KIND
    settings: S3Settings

    def __init__(self, system: str, settings: S3Settings) -> None:
        super().__init__(system, settings)
        endpoint = aws.endpoint_from_env(settings.connection.endpoint_url_env)
        self._client = aws.client("s3", endpoint_url=endpoint, region=settings.connection.region)

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

    def erase(self, subject: Subject, idempotency_key: str, journal: Journal = UNRECORDED) -> Outcome:
        # Idempotent: deleting a version that is already gone is not an error, and a rerun lists what is left.
        found = self._by_bucket(subject)
        for bucket in found:
            self._refuse_mfa_delete(bucket)
        deleted: list[str] = []
        locks: list[_Lock] = []
        for bucket, entries in found.items():
            gone, held = self._erase_bucket(bucket, entries, journal)
            deleted.extend(_label(bucket, v) for v in gone)
            locks.extend(held)
        for mapping in self.settings.mapping.buckets:  # a bucket may hold an unfinished upload and no object
            self._abort_uploads(mapping, subject)
        residual = self._unmapped_replicas(subject)
        if residual:
            level, detail = EvidenceLevel.FAILED, _residual(residual)
        elif locks:
            level, detail = EvidenceLevel.BLOCKED, _describe(locks)
        else:
            level, detail = EvidenceLevel.VERIFIED_ABSENT, ""
        return Outcome(
            level=level, deleted=len(deleted), blocked=len(locks), deleted_keys=tuple(deleted), detail=detail
        )

    def verify(self, subject: Subject) -> Verification:
        remaining: dict[str, int] = {}
        entries: dict[tuple[str, str, str], ObjectVersion] = {}
        for bucket, template, versions in self._scan(subject):
            location = _location(bucket, template)
            remaining[location] = remaining.get(location, 0) + len(versions)
            entries.update(((bucket, v.key, v.version_id), v) for v in versions)
        uploads = sum(len(self._uploads(mapping, subject)) for mapping in self.settings.mapping.buckets)
        if uploads:
            remaining["multipart_uploads"] = uploads
        # an exact key the listing did not show must also answer 404 to HEAD (a listing is not a read)
        listed = {(bucket, key) for bucket, key, _ in entries}
        unlisted = 0
        for mapping in self.settings.mapping.buckets:
            for template in map(parse_template, mapping.keys):
                if template.is_prefix:
                    continue
                for value in self._values(subject, template):
                    key = template.render(value)
                    if (mapping.bucket, key) not in listed and self._head_exists(mapping.bucket, key):
                        location = _location(mapping.bucket, template)
                        remaining[location] = remaining.get(location, 0) + 1
                        unlisted += 1
        unusable = self._unusable(subject)
        if unusable:
            return _verification(
                EvidenceLevel.FAILED,
                remaining,
                f"{unusable} identifier value(s) cannot be used in key templates: a person must check",
            )
        residual = self._unmapped_replicas(subject)
        if residual:
            return _verification(EvidenceLevel.FAILED, remaining, _residual(residual))
        if not entries and not uploads and not unlisted:
            return _verification(EvidenceLevel.VERIFIED_ABSENT, remaining, "")
        return self._judge_leftovers(list(entries.items()), remaining, uploads + unlisted)

    def restrict(self, subject: Subject) -> Restriction:
        """Under a legal hold of our own: an S3 object legal hold ON on each of the subject's object versions that
        has none yet (a version another party holds is left as it is). A bucket without Object Lock cannot hold a
        version: its versions are counted as unrestricted."""
        labels: list[str] = []
        unrestricted = already = 0
        for bucket, entries in self._by_bucket(subject).items():
            versions = [v for v in entries if not v.is_delete_marker]
            if not self._object_lock_enabled(bucket):
                unrestricted += len(versions)
                continue
            for version in versions:
                if self._legal_hold_on(bucket, version):
                    already += 1
                    continue
                self._set_legal_hold(bucket, version, "ON")
                labels.append(_label(bucket, version))
        detail = f"{len(labels)} object version(s) put under S3 legal hold"
        if already:
            detail += f", {already} already under a legal hold of another party"
        if unrestricted:
            detail += f", {unrestricted} in buckets without Object Lock left unrestricted"
        return Restriction(len(labels) + already, unrestricted, tuple(labels), detail)

    def lift(self, subject: Subject, restricted_here: Callable[[str], bool]) -> int:
        """Turn off the legal holds this orchestrator placed, and no other."""
        lifted = 0
        for bucket, entries in self._by_bucket(subject).items():
            for version in entries:
                if not version.is_delete_marker and restricted_here(_label(bucket, version)):
                    self._set_legal_hold(bucket, version, "OFF")
                    lifted += 1
        return lifted

    def _legal_hold_on(self, bucket: str, version: ObjectVersion) -> bool:
        with aws.mapped_errors(f"s3 {self.system}: head object version"):
            head = self._client.head_object(Bucket=bucket, Key=version.key, VersionId=version.version_id)
        return bool(head.get("ObjectLockLegalHoldStatus") == "ON")

    def _set_legal_hold(self, bucket: str, version: ObjectVersion, status: str) -> None:
        with aws.mapped_errors(f"s3 {self.system}: put object legal hold"):
            self._client.put_object_legal_hold(
                Bucket=bucket, Key=version.key, VersionId=version.version_id, LegalHold={"Status": status}
            )

    # -- listing ---------------------------------------------------------------------------------------------

    def _values(self, subject: Subject, template: KeyTemplate) -> list[str]:
        return [v for v in subject.values(template.identifier) if _usable_segment(v)]

    def _unusable(self, subject: Subject) -> int:
        kinds = {parse_template(t).identifier for b in self.settings.mapping.buckets for t in b.keys}
        return sum(1 for kind in kinds for v in subject.values(kind) if not _usable_segment(v))

    def _scan(self, subject: Subject) -> Iterator[tuple[str, KeyTemplate, list[ObjectVersion]]]:
        """Every version and delete marker of the subject, per bucket and key template."""
        templates = [parse_template(t) for b in self.settings.mapping.buckets for t in b.keys]
        if not any(self._values(subject, template) for template in templates):
            # a listing of no key at all proves nothing: never let it read as "verified absent"
            raise TerminalError(
                f"s3 {self.system}: no key template can be filled with a usable identifier of the subject: "
                "nothing would be searched"
            )
        for mapping in self.settings.mapping.buckets:
            for template in map(parse_template, mapping.keys):
                for value in self._values(subject, template):
                    key = template.render(value)
                    with aws.mapped_errors(f"s3 {self.system}: list object versions"):
                        versions = list(aws.list_versions(self._client, mapping.bucket, key))
                    if not template.is_prefix:
                        versions = [v for v in versions if v.key == key]
                    yield mapping.bucket, template, versions

    def _by_bucket(self, subject: Subject) -> dict[str, list[ObjectVersion]]:
        """The subject's versions and markers per bucket, each once even if two templates reach it."""
        seen: dict[str, dict[tuple[str, str], ObjectVersion]] = {}
        for bucket, _, versions in self._scan(subject):
            for v in versions:
                seen.setdefault(bucket, {})[(v.key, v.version_id)] = v
        return {bucket: list(unique.values()) for bucket, unique in seen.items()}

    def _uploads(self, mapping: BucketMapping, subject: Subject) -> list[tuple[str, str]]:
        """Unfinished multipart uploads of the subject's keys: (key, upload id)."""
        found: list[tuple[str, str]] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        for template in map(parse_template, mapping.keys):
            for value in self._values(subject, template):
                key = template.render(value)
                with aws.mapped_errors(f"s3 {self.system}: list multipart uploads"):
                    for page in paginator.paginate(Bucket=mapping.bucket, Prefix=key):
                        for upload in page.get("Uploads", []):
                            if upload["Key"] == key or (template.is_prefix and upload["Key"].startswith(key)):
                                found.append((upload["Key"], upload["UploadId"]))
        return found

    # -- bucket settings -------------------------------------------------------------------------------------

    def _refuse_mfa_delete(self, bucket: str) -> None:
        with aws.mapped_errors(f"s3 {self.system}: get bucket versioning"):
            versioning = self._client.get_bucket_versioning(Bucket=bucket)
        if versioning.get("MFADelete") == "Enabled":
            raise TerminalError(
                f"s3 {self.system}: bucket {bucket} has MFA delete enabled: S3 deletes no object version there "
                "without the bucket owner's MFA code (x-amz-mfa); a person must disable MFA delete or erase by hand"
            )

    def _object_lock_enabled(self, bucket: str) -> bool:
        try:
            found = self._client.get_object_lock_configuration(Bucket=bucket)
        except ClientError as exc:
            if aws.error_code(exc) == "ObjectLockConfigurationNotFoundError":
                return False
            raise aws.client_error(f"s3 {self.system}: get object lock configuration", exc) from exc
        return bool(found.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def _unmapped_replicas(self, subject: Subject) -> list[str]:
        """Destination buckets of enabled replication rules that can copy the subject's keys and that this system
        does not map: they keep every copy, since deletes by version id are not replicated."""
        mapped = {m.bucket for m in self.settings.mapping.buckets}
        residual: set[str] = set()
        for mapping in self.settings.mapping.buckets:
            keys = [
                (template.render(value), template.is_prefix)
                for template in map(parse_template, mapping.keys)
                for value in self._values(subject, template)
            ]
            for rule in self._replication_rules(mapping.bucket) if keys else []:
                prefix = _rule_prefix(rule)
                if rule.get("Status") == "Enabled" and any(
                    key.startswith(prefix) or (is_prefix and prefix.startswith(key)) for key, is_prefix in keys
                ):
                    residual.add(str(rule["Destination"]["Bucket"]).rpartition(":")[2])  # arn:aws:s3:::name
        return sorted(residual - mapped)

    def _replication_rules(self, bucket: str) -> list[dict[str, Any]]:
        try:
            found = self._client.get_bucket_replication(Bucket=bucket)
        except ClientError as exc:
            if aws.error_code(exc) == "ReplicationConfigurationNotFoundError":
                return []
            raise aws.client_error(f"s3 {self.system}: get bucket replication", exc) from exc
        rules: list[dict[str, Any]] = found.get("ReplicationConfiguration", {}).get("Rules", [])
        return rules

    # -- deletion --------------------------------------------------------------------------------------------

    def _erase_bucket(
        self, bucket: str, entries: list[ObjectVersion], journal: Journal
    ) -> tuple[list[ObjectVersion], list[_Lock]]:
        """Hide, delete versions, then clear markers (see the module docstring); returns what existed and was
        deleted, and the locks that kept versions. Each deletion is journaled before it is asked for."""
        versions = [e for e in entries if not e.is_delete_marker]
        markers = [e for e in entries if e.is_delete_marker]
        made: list[ObjectVersion] = []
        if versions and self._object_lock_enabled(bucket):
            with aws.mapped_errors(f"s3 {self.system}: hide keys"):
                made = aws.add_delete_markers(self._client, bucket, {v.key for v in versions if v.is_latest})
        journal.intend(_label(bucket, v) for v in versions)
        with aws.mapped_errors(f"s3 {self.system}: delete object versions"):
            deletion = aws.delete_versions(
                self._client,
                bucket,
                versions,
                bypass_governance_retention=self.settings.mapping.bypass_governance_retention,
            )
        locks = self._locks_of(bucket, deletion.refused)
        journal.withdraw(_label(bucket, r.version) for r in deletion.refused)
        kept = {r.version.key for r in deletion.refused}
        journal.intend(_label(bucket, m) for m in markers if m.key not in kept)
        with aws.mapped_errors(f"s3 {self.system}: delete delete markers"):
            cleared = aws.delete_versions(self._client, bucket, [m for m in (*markers, *made) if m.key not in kept])
        if cleared.refused:
            raise aws.refusal_error(f"s3 {self.system}: deleting delete markers", [r.code for r in cleared.refused])
        ours = set(made)  # markers this run made only to hide keys are not the subject's data
        return [*deletion.deleted, *(m for m in cleared.deleted if m not in ours)], locks

    def _locks_of(self, bucket: str, refused: tuple[Refusal, ...]) -> list[_Lock]:
        """The lock of each refused version; a refusal worth retrying is raised, one without a lock is terminal."""
        retryable = [r.code for r in refused if classify(r.code) is not AwsErrorKind.TERMINAL]
        if retryable:
            raise aws.refusal_error(f"s3 {self.system}: deleting object versions", retryable)
        locks = [self._lock(bucket, r.version) for r in refused]
        unlocked = sorted({r.code or "no error code" for r, lock in zip(refused, locks, strict=True) if lock is None})
        if unlocked:
            raise TerminalError(
                f"s3 {self.system}: {sum(1 for lock in locks if lock is None)} object version(s) refused "
                f"({', '.join(unlocked)}) without a lock: check the role's permissions"
            )
        return [lock for lock in locks if lock is not None]

    def _lock(self, bucket: str, version: ObjectVersion) -> _Lock | None:
        """A legal hold ON or a retention still in force, as HeadObject reports them (one call for both)."""
        with aws.mapped_errors(f"s3 {self.system}: head object version"):
            head = self._client.head_object(Bucket=bucket, Key=version.key, VersionId=version.version_id)
        hold = head.get("ObjectLockLegalHoldStatus") == "ON"
        until: datetime | None = head.get("ObjectLockRetainUntilDate")
        if until is not None and until <= datetime.now(UTC):
            until = None  # an expired retention no longer protects the version
        if not hold and until is None:
            return None
        return _Lock(legal_hold=hold, mode=str(head.get("ObjectLockMode", "")) if until else "", retain_until=until)

    def _abort_uploads(self, mapping: BucketMapping, subject: Subject) -> None:
        unconfirmed = 0
        for key, upload_id in self._uploads(mapping, subject):
            try:
                self._client.abort_multipart_upload(Bucket=mapping.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if aws.error_code(exc) != "NoSuchUpload":
                    raise aws.client_error(f"s3 {self.system}: abort multipart upload", exc) from exc
            unconfirmed += 0 if self._upload_gone(mapping.bucket, key, upload_id) else 1
        if unconfirmed:
            # S3: an abort may need repeating while parts are still arriving; the retry repeats it
            raise TransientError(
                f"s3 {self.system}: {unconfirmed} aborted multipart upload(s) in bucket {mapping.bucket} "
                "still answer ListParts; erase again"
            )

    def _upload_gone(self, bucket: str, key: str, upload_id: str) -> bool:
        try:
            self._client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id, MaxParts=1)
        except ClientError as exc:
            if aws.error_code(exc) == "NoSuchUpload":
                return True
            raise aws.client_error(f"s3 {self.system}: list parts", exc) from exc
        return False

    # -- verification ----------------------------------------------------------------------------------------

    def _judge_leftovers(
        self, entries: list[tuple[tuple[str, str, str], ObjectVersion]], remaining: dict[str, int], other: int
    ) -> Verification:
        """Blocked only if every entry left is a locked version or a marker of a key that keeps one, and every such
        key is hidden under a delete marker; anything else left is a failure."""
        locks: list[_Lock] = []
        held: set[tuple[str, str]] = set()
        unlocked = 0
        for (bucket, key, _), v in entries:
            if v.is_delete_marker:
                continue
            lock = self._lock(bucket, v)
            if lock is None:
                unlocked += 1
            else:
                locks.append(lock)
                held.add((bucket, key))
        stray_markers = sum(1 for (b, k, _), v in entries if v.is_delete_marker and (b, k) not in held)
        hidden = {(b, k) for (b, k, _), v in entries if v.is_delete_marker and v.is_latest}
        visible = len(held - hidden)
        left = unlocked + stray_markers + other
        if visible:
            detail = f"{visible} locked key(s) are current, not hidden under a delete marker: erase again"
            return _verification(EvidenceLevel.FAILED, remaining, detail)
        if left:
            return _verification(EvidenceLevel.FAILED, remaining, f"{left} object(s) remain")
        return _verification(EvidenceLevel.BLOCKED, remaining, _describe(locks))

    def _head_exists(self, bucket: str, key: str) -> bool:
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if aws.error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise aws.client_error(f"s3 {self.system}: head object", exc) from exc
        return True


def _verification(level: EvidenceLevel, remaining: dict[str, int], detail: str) -> Verification:
    return Verification(
        level=level, remaining=remaining, detail="; ".join(filter(None, [detail, KEYS_RECORDED_ELSEWHERE]))
    )


def _describe(locks: list[_Lock]) -> str:
    """Counts, modes and dates only: never a key."""
    parts = []
    holds = sum(1 for lock in locks if lock.legal_hold)
    if holds:
        parts.append(f"{holds} under legal hold")
    for mode in sorted({lock.mode for lock in locks if lock.mode}):
        dates = [lock.retain_until for lock in locks if lock.mode == mode and lock.retain_until]
        latest = max(dates).astimezone(UTC).isoformat(timespec="seconds")
        parts.append(f"{len(dates)} under {mode} retention until {latest} at the latest")
    return f"{len(locks)} object version(s) locked ({', '.join(parts)}); each locked key stays hidden under a delete marker"


def _residual(buckets: list[str]) -> str:
    return (
        f"residual copies: replication copies the subject's keys to bucket(s) {', '.join(buckets)}, which this "
        "system does not map, and deletes by version id are not replicated: a person must map them"
    )


def _rule_prefix(rule: dict[str, Any]) -> str:
    """The key prefix a replication rule copies; a rule filtered by tags alone may copy any key."""
    found = rule.get("Filter", {})
    return str(found.get("Prefix", found.get("And", {}).get("Prefix", rule.get("Prefix", ""))))


def _location(bucket: str, template: KeyTemplate) -> str:
    """A location as receipts name it: the bucket and the template, never a rendered key."""
    return f"{bucket}/{template.text}"


def _label(bucket: str, version: ObjectVersion) -> str:
    """The key of one deleted object version, as the receipt's commitment covers it."""
    return f"{bucket}/{version.key}@{version.version_id}"
