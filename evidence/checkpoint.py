"""Log checkpoints as C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519 signature type 0x01.

A note is: the text (ending in a newline), a blank line, then signature lines "— <key name> <base64(key id ||
signature)>". The key id is the first four bytes of SHA-256(key name || "\\n" || 0x01 || raw public key), as in
golang.org/x/mod/sumdb/note, whose notes and verifier keys these are byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence.errors import VerificationError
from evidence.keys import Signer

_ED25519 = b"\x01"
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not self.origin or any(ord(c) < 0x20 for c in self.origin):
            raise ValueError("checkpoint origin must be non-empty, on one line, without control characters")
        if self.size < 0 or len(self.root_hash) != 32:
            raise ValueError(f"checkpoint needs a size >= 0 and a 32-byte root: got {self.size}, {len(self.root_hash)}")

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode('ascii')}\n"


def note_key_hash(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id of a signed-note Ed25519 key."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + _ED25519 + _raw(public_key)).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """The verifier key string "name+hexkeyid+base64(0x01 || key)" that Go's note.NewVerifier reads."""
    encoded = base64.b64encode(_ED25519 + _raw(public_key)).decode("ascii")
    return f"{name}+{note_key_hash(name, public_key).hex()}+{encoded}"


def sign_checkpoint(cp: Checkpoint, signer: Signer, key_name: str) -> str:
    """The signed note: the checkpoint body, a blank line, and one signature line by `key_name`."""
    if not _valid_key_name(key_name):
        raise ValueError("key name must be non-empty, without spaces or '+'")
    text = cp.body()
    signature = note_key_hash(key_name, signer.public_key) + signer.sign(text.encode("utf-8"))
    return f"{text}\n{_SIGNATURE_PREFIX}{key_name} {base64.b64encode(signature).decode('ascii')}\n"


def open_checkpoint(note: str, trusted: Sequence[tuple[str, Ed25519PublicKey]]) -> Checkpoint:
    """The checkpoint, once a trusted (key name, key) has signed it; VerificationError otherwise.

    As the signed-note spec requires, signature lines by unknown keys are ignored, a known key's signature that
    fails rejects the whole note, and a note without a verified signature is rejected.
    """
    text, lines = _split_note(note)
    known = {(name, note_key_hash(name, key)): key for name, key in trusted}
    signers, verified = [], 0
    for name, key_hash, signature in (_parse_signature_line(line) for line in lines):
        signers.append(f"{name}+{key_hash.hex()}")
        key = known.get((name, key_hash))
        if key is None:
            continue
        try:
            key.verify(signature, text.encode("utf-8"))
        except InvalidSignature as exc:
            raise VerificationError(f"checkpoint signature does not verify: key {signers[-1]}") from exc
        verified += 1
    if not verified:
        expected = sorted(f"{name}+{key_hash.hex()}" for name, key_hash in known)
        raise VerificationError(f"checkpoint is not signed by a trusted key: expected one of {expected}, got {signers}")
    return _parse_body(text)


def _split_note(note: str) -> tuple[str, list[str]]:
    """The signed text (with its final newline) and the signature lines, per the signed-note format."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise VerificationError("checkpoint note is malformed: it contains control characters")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n") or split + 2 == len(note):
        raise VerificationError("checkpoint note is malformed: expected text, a blank line and signature lines")
    lines = note[split + 2 : -1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise VerificationError(
            f"checkpoint note has too many signatures: expected <= {_MAX_SIGNATURES}, got {len(lines)}"
        )
    return note[: split + 1], lines


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    name, _, encoded = line.removeprefix(_SIGNATURE_PREFIX).partition(" ")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not line.startswith(_SIGNATURE_PREFIX) or not _valid_key_name(name) or len(raw) < 5:
        raise VerificationError("checkpoint note has a malformed signature line")
    return name, raw[:4], raw[4:]


def _parse_body(text: str) -> Checkpoint:
    """Origin, size and root; extension lines are refused, as this log never writes them."""
    lines = text.split("\n")[:-1]  # the text ends in a newline
    if len(lines) != 3:
        raise VerificationError(f"checkpoint has wrong number of lines: expected 3, got {len(lines)}")
    origin, size, root = lines
    if not origin:
        raise VerificationError("checkpoint has an empty origin line")
    if not _DECIMAL.fullmatch(size):
        raise VerificationError("checkpoint tree size is not a decimal number without leading zeros")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("checkpoint root hash is not valid standard base64") from exc
    if len(root_hash) != 32:
        raise VerificationError(f"checkpoint root hash has wrong size: expected 32 bytes, got {len(root_hash)}")
    return Checkpoint(origin=origin, size=int(size), root_hash=root_hash)


def _valid_key_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
