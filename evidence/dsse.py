"""DSSE envelopes (secure-systems-lab/dsse v1) signed with Ed25519 over the PAE encoding.

The JSON form is the standard envelope with standard base64. `from_json` is stricter than DSSE's parsing rules,
which ask consumers to ignore unknown fields: every envelope here is produced by this package, so an unknown or
missing field means the file was altered, and it is rejected.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from evidence._json import canonical, exact_fields, loads_strict, typed
from evidence.errors import VerificationError
from evidence.keys import Signer

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in bytes."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        """Deterministic JSON: sorted keys, compact separators, UTF-8."""
        return canonical(
            {
                "payload": _b64(self.payload),
                "payloadType": self.payload_type,
                "signatures": [{"keyid": s.keyid, "sig": _b64(s.sig)} for s in self.signatures],
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        """Parse an envelope; VerificationError on malformed JSON, missing or extra fields, or bad base64."""
        document = exact_fields(loads_strict(data, "envelope"), {"payload", "payloadType", "signatures"}, "envelope")
        signatures = typed(document, "signatures", list, "envelope")
        return cls(
            payload=_unb64(typed(document, "payload", str, "envelope"), "envelope payload"),
            payload_type=typed(document, "payloadType", str, "envelope"),
            signatures=tuple(_signature(item) for item in signatures),
        )


def sign_envelope(payload: bytes, payload_type: str, signer: Signer) -> Envelope:
    signature = Signature(keyid=signer.keyid, sig=signer.sign(pae(payload_type, payload)))
    return Envelope(payload=payload, payload_type=payload_type, signatures=(signature,))


def verify_envelope(
    envelope: Envelope,
    trusted: Mapping[str, Ed25519PublicKey],
    expected_payload_type: str = IN_TOTO_PAYLOAD_TYPE,
) -> bytes:
    """The payload, if the type is the expected one and a trusted key signed it; VerificationError otherwise.

    Signatures by keys outside `trusted` are ignored (DSSE treats each signature as a separate envelope), but a
    signature that names a trusted key and does not verify fails the whole envelope: it can only be a forgery.
    """
    if envelope.payload_type != expected_payload_type:
        raise VerificationError(
            f"envelope has wrong payload type: expected {expected_payload_type!r}, got {envelope.payload_type!r}"
        )
    candidates = [s for s in envelope.signatures if s.keyid in trusted]
    if not candidates:
        raise VerificationError(
            "envelope has no signature by a trusted key: "
            f"expected one of {sorted(trusted)}, got {[s.keyid for s in envelope.signatures]}"
        )
    message = pae(envelope.payload_type, envelope.payload)
    for signature in candidates:
        try:
            trusted[signature.keyid].verify(signature.sig, message)
        except InvalidSignature as exc:
            raise VerificationError(f"envelope signature does not verify: keyid {signature.keyid}") from exc
    return envelope.payload


def _signature(item: Any) -> Signature:
    fields = exact_fields(item, {"keyid", "sig"}, "envelope signature")
    return Signature(
        keyid=typed(fields, "keyid", str, "envelope signature"),
        sig=_unb64(typed(fields, "sig", str, "envelope signature"), "envelope signature"),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise VerificationError(f"{what} is not valid standard base64") from exc
