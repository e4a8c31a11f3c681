"""Local key material under `$ERASURE_HOME/keys` (development): created on first use, mode 0600.

Production replaces the vault's master key with AWS KMS (`stores.vault.KmsMasterKey`) and the signing key with a
key file of its own or a pluggable signer; the HMAC keys stay secrets of the deployment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from domain.errors import ErasureError
from evidence.keys import Ed25519Signer

KEY_BYTES = 32


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def local_secret(keys_dir: Path, name: str) -> bytes:
    """A 32-byte secret kept in a file of its own; created atomically the first time it is asked for."""
    path = ensure_private_dir(keys_dir) / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != KEY_BYTES:
            raise RuntimeError(f"key file {path} must hold {KEY_BYTES} bytes, holds {len(data)}") from None
        return data
    data = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return data


def existing_secret(keys_dir: Path, name: str) -> bytes:
    """A secret that must already exist: reading commands never mint a key (a new one would match nothing)."""
    path = keys_dir / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ErasureError(f"key file {path} is missing: is ERASURE_HOME the deployment's?") from None
    if len(data) != KEY_BYTES:
        raise ErasureError(f"key file {path} has wrong size: expected {KEY_BYTES} bytes, got {len(data)}")
    return data


def signing_key(keys_dir: Path, key_file: Path | None = None) -> Ed25519Signer:
    """The Ed25519 key that signs receipts, certificates and checkpoints: `key_file` if given, else one in keys/."""
    if key_file is not None:
        return Ed25519Signer.from_pem_file(key_file)
    return Ed25519Signer.load_or_create(ensure_private_dir(keys_dir) / "signing.pem")
