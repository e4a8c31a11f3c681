"""Ed25519 signing keys: one signer protocol, a file-backed implementation and public key helpers.

A key id is the lowercase hex SHA-256 of the raw 32-byte public key, so anyone can recompute it with openssl:
`openssl pkey -pubin -in key.pem -outform DER | tail -c 32 | sha256sum`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence.errors import VerificationError


def keyid_of(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    return hashlib.sha256(_raw(public_key)).hexdigest()


class Signer(Protocol):
    """Anything that signs with an Ed25519 key: a key file here, a KMS or HSM key elsewhere."""

    @property
    def keyid(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, message: bytes) -> bytes: ...


class Ed25519Signer:
    """An Ed25519 private key held in memory."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._public_key = private_key.public_key()
        self._keyid = keyid_of(self._public_key)

    @property
    def keyid(self) -> str:
        return self._keyid

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public_key

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS8 PEM: keep it in a file of mode 0600 or a secret store."""
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"Ed25519Signer(keyid={self._keyid})"

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem_file(cls, path: Path) -> Ed25519Signer:
        """Load an unencrypted PKCS8 PEM private key; ValueError if the file holds anything else."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"{path}: not an unencrypted pkcs8 pem private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path}: wrong key type: expected ed25519, got {type(key).__name__}")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: Path) -> Ed25519Signer:
        """The key in `path`, created (mode 0600, parent folders 0700) if missing.

        Creation is atomic and never replaces a key another process created meanwhile: the new file is written
        under a temporary name and hard-linked into place, which fails if the name already exists.
        """
        if path.exists():
            return cls.from_pem_file(path)
        _make_private_dirs(path.parent)
        signer = cls.generate()
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(signer.private_pem())
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            return cls.from_pem_file(path)  # another process won the race: use its key
        finally:
            os.unlink(temporary)
        _fsync_dir(path.parent)
        return signer


def public_key_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form `openssl pkeyutl -pubin` reads."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key_pem(data: bytes) -> Ed25519PublicKey:
    """Parse a SubjectPublicKeyInfo PEM; VerificationError unless it is an Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("public key is not a valid pem subjectpublickeyinfo") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationError(f"public key has wrong type: expected ed25519, got {type(key).__name__}")
    return key


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _make_private_dirs(folder: Path) -> None:
    """Create the missing folders of `folder`, each 0700; existing folders are left as they are."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    for parent in reversed(missing):
        parent.mkdir(mode=0o700, exist_ok=True)


def _fsync_dir(folder: Path) -> None:
    # Makes the new directory entry durable, so a crash cannot lose a key that has already signed something.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
