"""The vault: the only place that holds a subject's identifiers, encrypted per request.

Each request gets a random 256-bit data key; items are sealed with AES-256-GCM under it, bound (associated data) to
their request id and name. The data key is stored only wrapped by a master key: a local key file in development, an
AWS KMS key in production. Destroying the wrapped data key (crypto-shredding) makes the request's items unreadable
for good, while receipts and bundles, which never held them, still verify. The request's ledger pseudonyms and key
commitments are keyed by secrets derived from its data key, so shredding unlinks them too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import Connection
from psycopg_pool import ConnectionPool

from domain.aws_errors import aws_error
from domain.errors import ErasureError, TerminalError, TransientError
from domain.model import IdentifierType, Subject
from stores.pseudonyms import Pseudonymizer


class VaultSealed(TerminalError):
    """The request's data key was destroyed: its identifiers can no longer be read."""


class MasterKey(Protocol):
    @property
    def wrapping(self) -> str:
        """Names the key that wrapped a data key, stored beside it (so rotation can tell old from new)."""
        ...

    def wrap(self, data_key: bytes, context: str) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: str, wrapping: str) -> bytes: ...


class LocalMasterKey:
    """AES-256-GCM key wrapping with a key file (development)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._id = "local:" + hashlib.sha256(b"erasure-master-key-id" + key).hexdigest()[:16]

    @property
    def wrapping(self) -> str:
        return self._id

    def wrap(self, data_key: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, context.encode())

    def unwrap(self, wrapped: bytes, context: str, wrapping: str) -> bytes:
        if wrapping != self._id:
            raise TerminalError(f"data key was wrapped by {wrapping}, not by the configured master key")
        return self._aead.decrypt(wrapped[:12], wrapped[12:], context.encode())


class KmsMasterKey:
    """AWS KMS wraps the data keys; the encryption context binds each to its request."""

    def __init__(self, key_id: str, *, endpoint_url: str | None = None, region: str | None = None) -> None:
        import boto3  # here, not at the top: a deployment with the local master key never loads the AWS SDK

        self._key_id = key_id
        self._kms = boto3.client("kms", endpoint_url=endpoint_url, region_name=region)

    @property
    def wrapping(self) -> str:
        return f"kms:{self._key_id}"

    def wrap(self, data_key: bytes, context: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            blob: bytes = self._kms.encrypt(
                KeyId=self._key_id, Plaintext=data_key, EncryptionContext={"erasure": context}
            )["CiphertextBlob"]
        except (ClientError, BotoCoreError) as exc:
            raise _kms_error("encrypt", exc) from exc
        return blob

    def unwrap(self, wrapped: bytes, context: str, wrapping: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            plain: bytes = self._kms.decrypt(
                CiphertextBlob=wrapped, KeyId=wrapping.removeprefix("kms:"), EncryptionContext={"erasure": context}
            )["Plaintext"]
        except (ClientError, BotoCoreError) as exc:
            raise _kms_error("decrypt", exc) from exc
        return plain


def _kms_error(action: str, exc: Exception) -> ErasureError:
    """By the project's one AWS table (KMSInternalException and DependencyTimeoutException come as 500 and 503)."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        return aws_error(f"kms {action} failed ({code or 'no code'}, http {status})", code, status)
    if isinstance(exc, BotoConnectionError | HTTPClientError):  # no answer at all: botocore's own transient kinds
        return TransientError(f"kms {action} failed ({type(exc).__name__})")
    return TerminalError(f"kms {action} failed ({type(exc).__name__})")


class Vault:
    SUBJECT = "subject"  # the identifiers as ordered
    RESOLVED = "resolved_subject"  # the same, with those the identity sources tied to them and reviewers included
    CANDIDATES = "review_candidates"  # near-matches awaiting a reviewer's decision, by group id
    REQUESTER = "requester"

    def __init__(self, pool: ConnectionPool, master: MasterKey) -> None:
        self._pool = pool
        self._master = master

    def create(self, conn: Connection[Any], request_id: str, items: dict[str, dict[str, Any]]) -> None:
        """Make the request's data key and seal its items, inside the caller's transaction."""
        data_key = AESGCM.generate_key(bit_length=256)
        conn.execute(
            "INSERT INTO vault_keys (request_id, wrapped_key, wrapping) VALUES (%s, %s, %s)",
            [request_id, self._master.wrap(data_key, request_id), self._master.wrapping],
        )
        for name, value in items.items():
            nonce = os.urandom(12)
            ciphertext = AESGCM(data_key).encrypt(nonce, json.dumps(value).encode(), _aad(request_id, name))
            conn.execute(
                "INSERT INTO vault_items (request_id, name, nonce, ciphertext) VALUES (%s, %s, %s, %s)",
                [request_id, name, nonce, ciphertext],
            )

    def seal(self, conn: Connection[Any], request_id: str, name: str, value: dict[str, Any]) -> None:
        """Seal one more item under the request's data key inside the caller's transaction (intake, after `create`)."""
        nonce = os.urandom(12)
        ciphertext = AESGCM(self._data_key(conn, request_id)).encrypt(
            nonce, json.dumps(value).encode(), _aad(request_id, name)
        )
        conn.execute(
            "INSERT INTO vault_items (request_id, name, nonce, ciphertext) VALUES (%s, %s, %s, %s)",
            [request_id, name, nonce, ciphertext],
        )

    def open(self, request_id: str, name: str) -> dict[str, Any]:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT k.wrapped_key, k.wrapping, i.nonce, i.ciphertext FROM vault_keys k "
                "JOIN vault_items i USING (request_id) WHERE k.request_id = %s AND i.name = %s",
                [request_id, name],
            ).fetchone()
        if row is None:
            raise TerminalError(f"vault holds no {name} for request {request_id}")
        wrapped, wrapping, nonce, ciphertext = row
        if wrapped is None:
            raise VaultSealed(f"request {request_id} was shredded: its {name} can no longer be read")
        data_key = self._master.unwrap(bytes(wrapped), request_id, wrapping)
        value: dict[str, Any] = json.loads(
            AESGCM(data_key).decrypt(bytes(nonce), bytes(ciphertext), _aad(request_id, name))
        )
        return value

    def put(self, request_id: str, name: str, value: dict[str, Any]) -> None:
        """Seal one more item under the request's data key, or replace it (a retried activity writes it again)."""
        nonce = os.urandom(12)
        with self._pool.connection() as conn:
            ciphertext = AESGCM(self._data_key(conn, request_id)).encrypt(
                nonce, json.dumps(value).encode(), _aad(request_id, name)
            )
            conn.execute(
                "INSERT INTO vault_items (request_id, name, nonce, ciphertext) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (request_id, name) DO UPDATE SET nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext",
                [request_id, name, nonce, ciphertext],
            )

    def holds(self, request_id: str, name: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM vault_items WHERE request_id = %s AND name = %s", [request_id, name]
            ).fetchone()
        return row is not None

    def subject(self, request_id: str) -> Subject:
        """The subject as resolved once resolution ran, else as ordered (and where no identity source is named)."""
        return self._subject(request_id, self.RESOLVED if self.holds(request_id, self.RESOLVED) else self.SUBJECT)

    def ordered_subject(self, request_id: str) -> Subject:
        return self._subject(request_id, self.SUBJECT)

    def _subject(self, request_id: str, name: str) -> Subject:
        stored = self.open(request_id, name)
        return Subject({IdentifierType(k): tuple(v) for k, v in stored.items() if v})

    def pseudonyms(self, conn: Connection[Any], request_id: str) -> Pseudonymizer:
        """The request's ledger pseudonyms, keyed by its data key: once the key is destroyed, no key file or ledger
        dump recomputes them. Reads through the caller's connection, so intake can use it before committing."""
        return Pseudonymizer(self._data_key(conn, request_id), purpose="ledger")

    def commitment_key(self, request_id: str) -> bytes:
        """A per-request HMAC key for key commitments, derived from the data key: shredding ends it too."""
        return self._purpose_key(request_id, b"erasure key commitment v1")

    def vendor_value_key(self, request_id: str) -> bytes:
        """A per-request HMAC key for vendor values kept only as digests: shredding unlinks them too."""
        return self._purpose_key(request_id, b"vendor value v1")

    def _purpose_key(self, request_id: str, purpose: bytes) -> bytes:
        with self._pool.connection() as conn:
            data_key = self._data_key(conn, request_id)
        return hmac.new(data_key, purpose, hashlib.sha256).digest()

    def _data_key(self, conn: Connection[Any], request_id: str) -> bytes:
        row = conn.execute(
            "SELECT wrapped_key, wrapping FROM vault_keys WHERE request_id = %s", [request_id]
        ).fetchone()
        if row is None or row[0] is None:
            raise VaultSealed(f"request {request_id} has no data key")
        return self._master.unwrap(bytes(row[0]), request_id, row[1])

    def destroy(self, conn: Connection[Any], request_id: str) -> bool:
        """Crypto-shred: drop the wrapped data key. Returns False if it was already gone."""
        cur = conn.execute(
            "UPDATE vault_keys SET wrapped_key = NULL, destroyed_at = now() "
            "WHERE request_id = %s AND wrapped_key IS NOT NULL",
            [request_id],
        )
        return cur.rowcount == 1

    def delete(self, conn: Connection[Any], request_id: str) -> None:
        """Forget a request that never started (intake's undo), inside the caller's transaction."""
        conn.execute("DELETE FROM vault_items WHERE request_id = %s", [request_id])
        conn.execute("DELETE FROM vault_keys WHERE request_id = %s", [request_id])

    def is_destroyed(self, request_id: str) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT wrapped_key IS NULL FROM vault_keys WHERE request_id = %s", [request_id]
            ).fetchone()
        return bool(row and row[0])


def _aad(request_id: str, name: str) -> bytes:
    return f"erasure-vault-v1|{request_id}|{name}".encode()
