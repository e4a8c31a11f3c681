"""Boto3 plumbing shared by the connectors that reach AWS: one client factory, one version listing, 1,000-key batch
deletion with per-key results, and errors mapped through the one table in `domain.aws_errors`.

Only codes and statuses leave this module in messages: S3 error messages can echo object keys, and keys can hold
identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from connectors.base import secret_from_env
from domain.aws_errors import AwsErrorKind, aws_error, classify
from domain.errors import ErasureError, TerminalError, TransientError

MAX_DELETE = 1000  # DeleteObjects accepts at most 1,000 objects per request
_T = TypeVar("_T")
AwsClient = Any  # boto3 builds its clients at run time and no stubs are installed


def client(service: str, *, endpoint_url: str | None, region: str) -> AwsClient:
    # Temporal retries the activity; the client only smooths over a dropped connection or a brief throttle.
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=10, read_timeout=60)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region, config=config)


def endpoint_from_env(variable: str | None) -> str | None:
    """The endpoint named by the catalogue's `endpoint_url_env` (moto, LocalStack); None means AWS itself."""
    return secret_from_env(variable) if variable else None


@dataclass(frozen=True)
class ObjectVersion:
    key: str
    version_id: str  # "null" in a bucket that was never versioned
    is_delete_marker: bool
    is_latest: bool
    size: int = 0
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Refusal:
    version: ObjectVersion
    code: str  # S3's per-key error code; empty when S3 named the key neither deleted nor refused


@dataclass(frozen=True)
class Deletion:
    deleted: tuple[ObjectVersion, ...]
    refused: tuple[Refusal, ...]


def list_versions(s3: AwsClient, bucket: str, prefix: str) -> Iterator[ObjectVersion]:
    """Every version and delete marker whose key starts with `prefix`, page by page."""
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            if item["Key"].startswith(prefix):
                modified = item.get("LastModified")
                yield ObjectVersion(
                    item["Key"], item["VersionId"], False, item["IsLatest"], item.get("Size", 0), modified
                )
        for item in page.get("DeleteMarkers", []):
            if item["Key"].startswith(prefix):
                yield ObjectVersion(item["Key"], item["VersionId"], True, item["IsLatest"], 0, item.get("LastModified"))


def delete_versions(
    s3: AwsClient, bucket: str, versions: Sequence[ObjectVersion], *, bypass_governance_retention: bool = False
) -> Deletion:
    """Delete by version id, 1,000 per request. S3 answers HTTP 200 even when keys failed: each key is under
    `Deleted` or `Errors`, and both are returned."""
    deleted: list[ObjectVersion] = []
    refused: list[Refusal] = []
    for batch in _chunks(versions):
        request: dict[str, Any] = {
            "Bucket": bucket,
            "Delete": {"Objects": [{"Key": v.key, "VersionId": v.version_id} for v in batch], "Quiet": False},
        }
        if bypass_governance_retention:
            request["BypassGovernanceRetention"] = True
        response = s3.delete_objects(**request)
        done = {(d["Key"], d.get("VersionId")) for d in response.get("Deleted", [])}
        codes = {(e["Key"], e.get("VersionId")): str(e.get("Code", "")) for e in response.get("Errors", [])}
        for v in batch:
            if (v.key, v.version_id) in done:
                deleted.append(v)
            else:
                # moto names the key of an error but not its version
                code = codes.get((v.key, v.version_id)) or codes.get((v.key, None), "")
                refused.append(Refusal(v, code))
    return Deletion(tuple(deleted), tuple(refused))


def add_delete_markers(s3: AwsClient, bucket: str, keys: Iterable[str]) -> list[ObjectVersion]:
    """Put a delete marker on top of each key (a delete without version id), 1,000 per request; returns the
    markers made. Any refusal is raised: a key that cannot be hidden must not be treated as hidden."""
    made: list[ObjectVersion] = []
    for batch in _chunks(sorted(set(keys))):
        response = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": False})
        errors = response.get("Errors", [])
        if errors:
            codes = sorted({str(e.get("Code", "")) for e in errors})
            raise refusal_error(f"adding delete markers in bucket {bucket}", codes)
        made.extend(
            ObjectVersion(d["Key"], d["DeleteMarkerVersionId"], True, True)
            for d in response.get("Deleted", [])
            if d.get("DeleteMarker")
        )
    return made


def refusal_error(action: str, codes: Sequence[str]) -> ErasureError:
    """The error for per-key refusals: retried if any code is worth retrying, else terminal."""
    what = f"{action} refused ({', '.join(sorted(set(codes))) or 'no error code'})"
    ranked = sorted(codes, key=lambda code: _RETRY_RANK[classify(code)])
    return aws_error(what, ranked[0]) if ranked else TerminalError(what)


@contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    """Raise botocore's errors as the project's, by code and status only."""
    try:
        yield
    except ClientError as exc:
        raise client_error(action, exc) from exc
    except (BotoConnectionError, HTTPClientError) as exc:  # no answer at all: botocore's own transient kinds
        raise TransientError(f"{action} failed ({type(exc).__name__})") from exc
    except BotoCoreError as exc:  # credentials, parameters, configuration
        raise TerminalError(f"{action} failed ({type(exc).__name__})") from exc


def client_error(action: str, exc: ClientError) -> ErasureError:
    code = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return aws_error(f"{action} failed ({code or 'no code'}, http {status})", code, status)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_RETRY_RANK = {AwsErrorKind.THROTTLED: 0, AwsErrorKind.TRANSIENT: 1, AwsErrorKind.TERMINAL: 2}


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), MAX_DELETE):
        yield items[start : start + MAX_DELETE]
