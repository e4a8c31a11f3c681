from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from evidence.checkpoint import Checkpoint, note_key_hash, open_checkpoint, sign_checkpoint, verifier_key
from evidence.errors import VerificationError
from evidence.keys import Ed25519Signer

ORIGIN = "erasure-orchestrator.test/log"
CHECKPOINT = Checkpoint(ORIGIN, 20852163, bytes(range(32)))

# The example of golang.org/x/mod/sumdb/note: its private key, verifier key and a note it signed.
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_key_hash_and_verifier_key_match_go_note() -> None:
    key = Ed25519PrivateKey.from_private_bytes(GO_SEED).public_key()

    assert note_key_hash("PeterNeumann", key).hex() == "c74f20a3"
    assert verifier_key("PeterNeumann", key) == GO_VERIFIER_KEY


def test_go_note_signature_verifies_but_its_text_is_no_checkpoint() -> None:
    key = Ed25519PrivateKey.from_private_bytes(GO_SEED).public_key()

    # Past the signature check (which would fail first), the two-line text is refused as a checkpoint.
    with pytest.raises(VerificationError, match="checkpoint has wrong number of lines: expected 3, got 2"):
        open_checkpoint(GO_NOTE, [("PeterNeumann", key)])


def test_checkpoint_body_is_the_c2sp_text() -> None:
    assert CHECKPOINT.body() == f"{ORIGIN}\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"


def test_signed_note_layout(signer: Ed25519Signer) -> None:
    note = sign_checkpoint(CHECKPOINT, signer, ORIGIN)

    body, signature_line = note.split("\n\n")
    assert body + "\n" == CHECKPOINT.body()
    assert re.fullmatch(rf"\u2014 {re.escape(ORIGIN)} [A-Za-z0-9+/]+=*\n", signature_line)
    raw = base64.b64decode(signature_line.split(" ")[2])
    assert raw[:4] == note_key_hash(ORIGIN, signer.public_key) and len(raw) == 4 + 64


def test_signed_checkpoint_opens(signer: Ed25519Signer) -> None:
    note = sign_checkpoint(CHECKPOINT, signer, ORIGIN)

    assert open_checkpoint(note, [(ORIGIN, signer.public_key)]) == CHECKPOINT


def test_unknown_signatures_are_ignored(signer: Ed25519Signer, attacker: Ed25519Signer) -> None:
    # A witness cosignature, or the log's next key during rotation: unknown to this verifier, so skipped.
    note = sign_checkpoint(CHECKPOINT, signer, ORIGIN)
    cosigned = note + sign_checkpoint(CHECKPOINT, attacker, "witness.example").split("\n\n")[1]

    assert open_checkpoint(cosigned, [(ORIGIN, signer.public_key)]) == CHECKPOINT


@pytest.mark.parametrize(
    ("trusted_name", "trusted_key", "match"),
    [
        (ORIGIN, "attacker", "not signed by a trusted key"),
        ("other.example/log", "signer", "not signed by a trusted key"),
    ],
)
def test_note_by_another_key_or_name_is_rejected(
    signer: Ed25519Signer, attacker: Ed25519Signer, trusted_name: str, trusted_key: str, match: str
) -> None:
    note = sign_checkpoint(CHECKPOINT, signer, ORIGIN)
    key = {"signer": signer, "attacker": attacker}[trusted_key].public_key

    with pytest.raises(VerificationError, match=match):
        open_checkpoint(note, [(trusted_name, key)])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("\n20852163\n", "\n20852164\n"),
        ("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh4="),
        (ORIGIN + "\n", ORIGIN + "2\n"),
    ],
    ids=["size", "root", "origin"],
)
def test_changed_checkpoint_fails_its_signature(signer: Ed25519Signer, old: str, new: str) -> None:
    note = sign_checkpoint(CHECKPOINT, signer, ORIGIN).replace(old, new, 1)

    with pytest.raises(VerificationError, match="checkpoint signature does not verify"):
        open_checkpoint(note, [(ORIGIN, signer.public_key)])


def test_bad_signature_by_a_known_key_rejects_the_note(signer: Ed25519Signer, attacker: Ed25519Signer) -> None:
    good = sign_checkpoint(CHECKPOINT, signer, ORIGIN)
    bad = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), attacker, "witness.example").split("\n\n")[1]

    with pytest.raises(VerificationError, match="signature does not verify: key witness.example"):
        open_checkpoint(good + bad, [(ORIGIN, signer.public_key), ("witness.example", attacker.public_key)])


@pytest.mark.parametrize(
    ("note", "match"),
    [
        (f"{ORIGIN}\n1\nAAAA\n", "expected text, a blank line and signature lines"),
        (f"{ORIGIN}\n1\nAAAA\n\n", "expected text, a blank line and signature lines"),
        (f"{ORIGIN}\n1\tx\n\n\u2014 a AAAAAAA=\n", "control characters"),
        (f"{ORIGIN}\n1\nAAAA\n\n- {ORIGIN} AAAAAAA=\n", "malformed signature line"),
        (f"{ORIGIN}\n1\nAAAA\n\n\u2014 {ORIGIN} AAAA\n", "malformed signature line"),
        (f"{ORIGIN}\n1\nAAAA\n\n\u2014 {ORIGIN} !!!!!!!!\n", "malformed signature line"),
        (f"{ORIGIN}\n1\nAAAA\n\n\u2014 a+b AAAAAAA=\n", "malformed signature line"),
    ],
    ids=["no-signatures", "empty-signatures", "tab", "hyphen", "short-signature", "not-base64", "plus-in-name"],
)
def test_malformed_notes_are_rejected(signer: Ed25519Signer, note: str, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        open_checkpoint(note, [(ORIGIN, signer.public_key)])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (f"{ORIGIN}\n012\n{base64.b64encode(bytes(32)).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n-1\n{base64.b64encode(bytes(32)).decode()}\n", "without leading zeros"),
        (f"{ORIGIN}\n1\n{base64.b64encode(bytes(31)).decode()}\n", "expected 32 bytes, got 31"),
        (f"{ORIGIN}\n1\nnot base64\n", "not valid standard base64"),
        (f"{ORIGIN}\n1\n{base64.b64encode(bytes(32)).decode()}\nextension\n", "expected 3, got 4"),
        (f"\n1\n{base64.b64encode(bytes(32)).decode()}\n", "empty origin"),
    ],
    ids=["leading-zero", "negative", "short-root", "root-not-base64", "extension-line", "no-origin"],
)
def test_signed_text_that_is_not_a_checkpoint_is_rejected(signer: Ed25519Signer, text: str, match: str) -> None:
    signature = note_key_hash(ORIGIN, signer.public_key) + signer.sign(text.encode())
    note = f"{text}\n\u2014 {ORIGIN} {base64.b64encode(signature).decode()}\n"

    with pytest.raises(VerificationError, match=match):
        open_checkpoint(note, [(ORIGIN, signer.public_key)])


def test_signing_refuses_an_invalid_key_name(signer: Ed25519Signer) -> None:
    with pytest.raises(ValueError, match="key name"):
        sign_checkpoint(CHECKPOINT, signer, "two words")
