"""Session fixtures: the real servers start once; each test takes its own schema, bucket and task queue."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
from psycopg import sql

from tests.servers import LocalServers, start_moto, start_postgres


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServers]:
    """Postgres (embedded, or DATABASE_URL) and moto's S3/KMS server on loopback."""
    root = tmp_path_factory.mktemp("servers")
    with start_postgres(root / "pg") as database_url, start_moto() as moto_url:
        yield LocalServers(database_url=database_url, moto_url=moto_url, root=root)


@pytest.fixture(scope="session")
def database_url(servers: LocalServers) -> str:
    return servers.database_url


@pytest.fixture(scope="session")
def moto_url(servers: LocalServers) -> str:
    return servers.moto_url


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> None:
    """boto3 talks to moto with dummy credentials; nothing reaches AWS."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A fresh Postgres schema of the test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def s3_client(moto_url: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")


@pytest.fixture
def bucket_name() -> str:
    """A bucket name of the test's own (the test creates it with the options it needs)."""
    return f"b-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest.fixture
def erasure_home(tmp_path: Path) -> Path:
    home = tmp_path / "erasure-home"
    home.mkdir()
    return home
