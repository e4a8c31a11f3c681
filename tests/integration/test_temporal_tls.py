"""The worker and the CLI reach Temporal over TLS when the configuration says so.

The pinned dev server has no TLS flags, so a TLS-terminating TCP proxy (asyncio + ssl) stands in front of its gRPC
port with a certificate made here, signed by a CA made here: the handshake and the CA setting are real.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from examples.estate import CHILD, NEIGHBOURS, count_rows, create_app_schema, seed_people
from tests.integration.conftest import Harness, court_order
from tests.integration.estate import catalogue


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 and localhost signed by it; returns (ca, cert, key) PEM files."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test frontend ca"))
        .issuer_name(_name("test frontend ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "frontend.pem", folder / "frontend.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class TlsProxy:
    """Terminates TLS (ALPN h2, as gRPC asks) and pipes the bytes to a plain TCP target; counts handshakes."""

    def __init__(self, target: str, cert: Path, key: Path) -> None:
        self.host, port = target.rsplit(":", 1)
        self.port = int(port)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["h2"])
        self.handshakes = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # the server side calls back only after a completed handshake
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            writer.close()

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"127.0.0.1:{port}"
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            with suppress(asyncio.CancelledError):
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def test_worker_and_cli_reach_temporal_over_tls_with_the_configured_ca(
    harness: Harness, database_url: str, schema: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_app_schema(conn, schema)
        seed_people(conn, schema, [CHILD, *NEIGHBOURS])
    order = str(harness.write_yaml("order.yaml", court_order({"user_id": ["1"]})))
    systems = str(harness.write_yaml("systems.yaml", {"systems": catalogue(schema, "unused")["systems"][:1]}))
    ca, cert, key = make_certificates(tmp_path)
    proxy = TlsProxy(harness.config.temporal_address, cert, key)

    async with proxy.serve() as address:
        # The only way to this test's task queue is the proxy, and the proxy speaks TLS only.
        env = {**harness.process_env(), "TEMPORAL_ADDRESS": address, "APP_DATABASE_URL": database_url}
        untrusted = await harness.cli({**env, "TEMPORAL_TLS": "true"}, "submit", order, "--catalogue", systems)
        trusted = {**env, "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(ca)}
        worker = harness.start_worker(trusted)
        try:
            submitted = await harness.cli_run(trusted, order, systems)
        finally:
            worker.terminate()
            await asyncio.to_thread(worker.wait, 30)

    assert untrusted.returncode == 1
    assert f"cannot reach Temporal at {address}" in untrusted.stderr
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["outcome"] == "complete"
    with psycopg.connect(database_url) as conn:
        assert count_rows(conn, schema)["users"] == len(NEIGHBOURS)
    assert proxy.handshakes >= 2  # the worker's and the CLI's
