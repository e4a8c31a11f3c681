"""Encryption of every Temporal payload (inputs, results, memos, failure details), failing closed.

AES-256-GCM with the key id in the payload's metadata, bound as associated data; after a rotation the old keys stay
to decrypt old payloads. A payload that is not ours, or whose key is unknown, is refused, never passed through.
Failure messages and stack traces travel as encoded attributes, so they are encrypted too.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from stores.keys import KEY_BYTES, ensure_private_dir

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"


class CodecError(Exception):
    """A payload could not be decrypted: refused rather than passed through."""


class EncryptionCodec(PayloadCodec):
    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current codec key {current} is not among the keys")
        self._aeads = {kid: AESGCM(key) for kid, key in keys.items()}
        self._current = current

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decrypt(p) for p in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(12)
        data = self._aeads[self._current].encrypt(nonce, payload.SerializeToString(), self._current.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self._current.encode()}, data=nonce + data)

    def _decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            raise CodecError("payload is not encrypted: refused")
        kid = payload.metadata.get(KEY_ID, b"").decode()
        aead = self._aeads.get(kid)
        if aead is None:
            raise CodecError(f"payload was encrypted with unknown key {kid or '(none)'}")
        try:
            plain = aead.decrypt(payload.data[:12], payload.data[12:], kid.encode())
        except InvalidTag:
            raise CodecError(f"payload does not decrypt with key {kid}") from None
        return Payload.FromString(plain)


class CodecKeys:
    """Codec keys in `keys/codec/<kid>.key`, the current one named in `keys/codec/current`."""

    def __init__(self, keys_dir: Path) -> None:
        self.dir = keys_dir / "codec"

    def load(self) -> tuple[dict[str, bytes], str]:
        ensure_private_dir(self.dir)
        current_file = self.dir / "current"
        if not current_file.exists():
            self.rotate()
        keys = {p.stem: p.read_bytes() for p in self.dir.glob("*.key")}
        return keys, current_file.read_text().strip()

    def rotate(self) -> str:
        """A new current key; the old ones remain for decryption."""
        ensure_private_dir(self.dir)
        kid = secrets.token_hex(8)
        path = self.dir / f"{kid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
        tmp = self.dir / "current.tmp"
        tmp.write_text(kid)
        tmp.replace(self.dir / "current")
        return kid

    def codec(self) -> EncryptionCodec:
        keys, current = self.load()
        return EncryptionCodec(keys, current)


def data_converter(codec: PayloadCodec) -> DataConverter:
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
