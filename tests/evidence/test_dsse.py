from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, Signature, pae, sign_envelope, verify_envelope
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer, public_key_pem

PAYLOAD = b'{"_type":"https://in-toto.io/Statement/v1"}'


def test_pae_matches_the_dsse_spec_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", b"\xff\x00") == b"DSSEv1 3 t\xc3\xa9 2 \xff\x00"


def test_signed_envelope_verifies_and_returns_payload(signer: Ed25519Signer) -> None:
    envelope = sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer)

    assert verify_envelope(envelope, {signer.keyid: signer.public_key}) == PAYLOAD


def test_json_is_the_standard_envelope_byte_for_byte() -> None:
    envelope = Envelope(b"hi", "application/x", (Signature("k1", b"\x00\x01"),))

    assert envelope.to_json() == (
        b'{"payload":"aGk=","payloadType":"application/x","signatures":[{"keyid":"k1","sig":"AAE="}]}'
    )
    assert Envelope.from_json(envelope.to_json()) == envelope


def test_json_round_trip_keeps_a_verifiable_envelope(signer: Ed25519Signer) -> None:
    data = sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer).to_json()

    assert Envelope.from_json(data).to_json() == data
    assert verify_envelope(Envelope.from_json(data), {signer.keyid: signer.public_key}) == PAYLOAD


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"{", "envelope is not valid json"),
        (b"\xff", "envelope is not valid json: invalid utf-8"),
        (b"[]", "envelope has wrong type: expected object, got list"),
        (b'{"payload":"","payloadType":"t"}', r"wrong fields: .* missing \['signatures'\]"),
        (b'{"payload":"","payloadType":"t","signatures":[],"x":1}', r"wrong fields: .* extra \['x'\]"),
        (b'{"payload":"","payload":"","payloadType":"t","signatures":[]}', "duplicate object key"),
        (b'{"payload":"@@","payloadType":"t","signatures":[]}', "envelope payload is not valid standard base64"),
        (b'{"payload":"","payloadType":1,"signatures":[]}', "'payloadType' has wrong type: expected str, got int"),
        (b'{"payload":"","payloadType":"t","signatures":{}}', "'signatures' has wrong type: expected list"),
        (b'{"payload":"","payloadType":"t","signatures":[{"sig":""}]}', r"signature has wrong fields"),
        (b'{"payload":"","payloadType":"t","signatures":[{"keyid":"k","sig":"A"}]}', "signature is not valid"),
        (b'{"payload":"","payloadType":"t","signatures":[{"keyid":7,"sig":""}]}', "'keyid' has wrong type"),
    ],
)
def test_malformed_envelope_json_is_rejected(data: bytes, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        Envelope.from_json(data)


def test_wrong_payload_type_is_rejected(signer: Ed25519Signer) -> None:
    envelope = sign_envelope(PAYLOAD, "application/json", signer)

    with pytest.raises(VerificationError, match="wrong payload type: expected 'application/vnd.in-toto"):
        verify_envelope(envelope, {signer.keyid: signer.public_key})


def test_signature_by_untrusted_key_is_rejected(signer: Ed25519Signer, attacker: Ed25519Signer) -> None:
    envelope = sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, attacker)

    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_envelope(envelope, {signer.keyid: signer.public_key})


def test_envelope_without_signatures_is_rejected(signer: Ed25519Signer) -> None:
    with pytest.raises(VerificationError, match="no signature by a trusted key"):
        verify_envelope(Envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, ()), {signer.keyid: signer.public_key})


@pytest.mark.parametrize("change", ["payload", "payload_type", "signature"])
def test_changed_envelope_does_not_verify(signer: Ed25519Signer, change: str) -> None:
    good = sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer)
    changed = {
        "payload": Envelope(PAYLOAD + b" ", good.payload_type, good.signatures),
        "payload_type": Envelope(PAYLOAD, "application/vnd.in-toto+json ", good.signatures),
        "signature": Envelope(PAYLOAD, good.payload_type, (Signature(signer.keyid, bytes(64)),)),
    }[change]

    with pytest.raises(VerificationError, match="envelope signature does not verify|wrong payload type"):
        verify_envelope(changed, {signer.keyid: signer.public_key}, expected_payload_type=changed.payload_type)


def test_forged_signature_under_a_trusted_keyid_fails_even_beside_a_good_one(
    signer: Ed25519Signer, attacker: Ed25519Signer
) -> None:
    good = sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer)
    forged = Signature(attacker.keyid, signer.sign(pae(IN_TOTO_PAYLOAD_TYPE, PAYLOAD)))
    trusted = {signer.keyid: signer.public_key, attacker.keyid: attacker.public_key}

    with pytest.raises(VerificationError, match=f"does not verify: keyid {attacker.keyid}"):
        verify_envelope(Envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, (*good.signatures, forged)), trusted)


def test_signatures_by_unknown_keys_are_ignored(signer: Ed25519Signer, attacker: Ed25519Signer) -> None:
    cosigned = Envelope(
        PAYLOAD,
        IN_TOTO_PAYLOAD_TYPE,
        (Signature(attacker.keyid, b"junk"), *sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer).signatures),
    )

    assert verify_envelope(cosigned, {signer.keyid: signer.public_key}) == PAYLOAD


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command line")
def test_openssl_alone_verifies_an_envelope_signature(tmp_path: Path, signer: Ed25519Signer) -> None:
    """An auditor with nothing but openssl can check a receipt: Ed25519 over the PAE bytes."""
    document = json.loads(sign_envelope(PAYLOAD, IN_TOTO_PAYLOAD_TYPE, signer).to_json())
    payload = base64.b64decode(document["payload"])
    (tmp_path / "pub.pem").write_bytes(public_key_pem(signer.public_key))
    (tmp_path / "pae.bin").write_bytes(pae(document["payloadType"], payload))
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(document["signatures"][0]["sig"]))
    command = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "pub.pem",
        "-rawin",
        "-in",
        "pae.bin",
        "-sigfile",
        "sig.bin",
    ]

    verified = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    (tmp_path / "pae.bin").write_bytes(pae(document["payloadType"], payload + b" "))
    tampered = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert verified.returncode == 0 and "Signature Verified Successfully" in verified.stdout
    assert tampered.returncode != 0
