"""Local key material under `$ERASURE_HOME/keys` (development): created on first use, mode 0600.

Production replaces the vault's master key with AWS KMS (`stores.vault.KmsMasterKey`) and the signing key with a
key file of its own or a pluggable signer; the HMAC keys stay secrets of the deployment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

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


def signing_key(keys_dir: Path) -> Ed25519Signer:
    """The Ed25519 key that signs receipts, certificates and checkpoints (ERASURE_SIGNING_KEY overrides)."""
    override = os.environ.get("ERASURE_SIGNING_KEY")
    if override:
        return Ed25519Signer.from_pem_file(Path(override))
    return Ed25519Signer.load_or_create(ensure_private_dir(keys_dir) / "signing.pem")
