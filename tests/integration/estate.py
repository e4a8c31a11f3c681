"""Plant the Clipstream estate (app database schema and uploads bucket) for one test."""

from __future__ import annotations

from typing import Any

import psycopg

from examples.estate import (
    APP_MAPPING,
    CHILD,
    NEIGHBOURS,
    S3_KEY_TEMPLATES,
    create_app_schema,
    seed_people,
    upload_keys,
)


def plant(database_url: str, schema: str, s3: Any, bucket: str, *, object_lock: bool = False) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
    if object_lock:
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for person in (CHILD, *NEIGHBOURS):
        for key in upload_keys(person):
            s3.put_object(Bucket=bucket, Key=key, Body=b"video")
    for body in (b"second version", b"third version"):
        s3.put_object(Bucket=bucket, Key="uploads/1/clip-0.mp4", Body=body)
    s3.delete_object(Bucket=bucket, Key="uploads/1/clip-0.mp4")  # three versions under a delete marker
    s3.delete_object(Bucket=bucket, Key="uploads/1/clip-1.mp4")  # a delete marker over one version


IDENTITY_SOURCE = {
    "name": "app_accounts",
    "system": "app_db",
    "table": "users",
    "columns": APP_MAPPING["subject"]["match"],
}


def catalogue(schema: str, bucket: str, *, identity: bool = False, **retry: Any) -> dict[str, Any]:
    """The app database and the uploads bucket; with `identity`, the app's users table is an identity source."""
    fast = {"initial_interval": "PT0.2S", "maximum_interval": "PT1S", "heartbeat": "PT5S", **retry}
    sources = {"identity_sources": [IDENTITY_SOURCE]} if identity else {}
    return {
        **sources,
        "systems": [
            {
                "name": "app_db",
                "connector": "postgres",
                "category": "storage",
                "identifiers": ["user_id", "email", "phone"],
                "connection": {"dsn_env": "APP_DATABASE_URL"},
                "mapping": {"schema": schema, **APP_MAPPING},
                "retry": fast,
            },
            {
                "name": "uploads",
                "connector": "s3",
                "category": "storage",
                "identifiers": ["user_id"],
                "connection": {"endpoint_url_env": "ERASURE_S3_ENDPOINT"},
                "mapping": {"buckets": [{"bucket": bucket, "keys": S3_KEY_TEMPLATES}]},
                "retry": fast,
            },
        ],
    }


def surviving_keys(s3: Any, bucket: str) -> set[str]:
    listing = s3.list_object_versions(Bucket=bucket)
    return {v["Key"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])}


def neighbour_keys() -> set[str]:
    return {k for p in NEIGHBOURS for k in upload_keys(p)}
