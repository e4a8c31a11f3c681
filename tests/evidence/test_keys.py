from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer, keyid_of, load_public_key_pem, public_key_pem


def test_keyid_is_sha256_of_the_raw_public_key(signer: Ed25519Signer) -> None:
    raw = signer.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    assert signer.keyid == keyid_of(signer.public_key) == hashlib.sha256(raw).hexdigest()


def test_load_or_create_makes_a_private_key_file_once(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "signing.pem"

    created = Ed25519Signer.load_or_create(path)
    loaded = Ed25519Signer.load_or_create(path)

    assert loaded.keyid == created.keyid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]  # no temporary file left behind


def test_private_pem_round_trips(tmp_path: Path, signer: Ed25519Signer) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(signer.private_pem())

    assert Ed25519Signer.from_pem_file(path).keyid == signer.keyid
    assert b"BEGIN PRIVATE KEY" in signer.private_pem()


def test_repr_shows_no_key_material(signer: Ed25519Signer) -> None:
    assert repr(signer) == f"Ed25519Signer(keyid={signer.keyid})"


@pytest.mark.parametrize(
    "pem",
    [
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        b"not a key",
    ],
    ids=["ec-key", "encrypted", "garbage"],
)
def test_from_pem_file_accepts_only_unencrypted_ed25519(tmp_path: Path, pem: bytes) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(pem)

    with pytest.raises(ValueError, match="key.pem"):
        Ed25519Signer.from_pem_file(path)


def test_public_key_pem_round_trips(signer: Ed25519Signer) -> None:
    pem = public_key_pem(signer.public_key)

    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert keyid_of(load_public_key_pem(pem)) == signer.keyid


def test_load_public_key_pem_rejects_other_keys() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    with pytest.raises(VerificationError, match="public key has wrong type: expected ed25519"):
        load_public_key_pem(ec_pem)
    with pytest.raises(VerificationError, match="not a valid pem"):
        load_public_key_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
