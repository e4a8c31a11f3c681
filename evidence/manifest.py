"""The bundle's manifest: a signed in-toto Statement whose subjects are every other entry of the bundle.

The certificate covers the receipts, and the log covers the certificate; the manifest covers what neither does
(report.html, VERIFY.txt, the checkpoint, the proofs, the keys), so that no byte of a bundle goes unsigned. It is
signed when the bundle is exported, by the key that signs the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from evidence._json import canonical
from evidence.dsse import IN_TOTO_PAYLOAD_TYPE, sign_envelope
from evidence.errors import VerificationError
from evidence.keys import Signer
from evidence.statement import STATEMENT_TYPE

MANIFEST_PREDICATE_TYPE = "https://erasure-orchestrator.dev/bundle-manifest/v1"


def sign_manifest(contents: Mapping[str, bytes], signer: Signer) -> bytes:
    """The manifest envelope: one subject per entry (its path, the SHA-256 of its bytes), sorted by path."""
    subjects = [
        {"name": name, "digest": {"sha256": hashlib.sha256(contents[name]).hexdigest()}} for name in sorted(contents)
    ]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": MANIFEST_PREDICATE_TYPE,
        "predicate": {},
    }
    return sign_envelope(canonical(statement), IN_TOTO_PAYLOAD_TYPE, signer).to_json()


def check_manifest(statement: Mapping[str, Any], contents: Mapping[str, bytes]) -> None:
    """VerificationError unless the subjects are exactly `contents`, each with the SHA-256 of its bytes."""
    names = [subject["name"] for subject in statement["subject"]]
    if len(set(names)) != len(names):
        raise VerificationError("manifest lists an entry more than once")
    missing, extra = sorted(set(names) - set(contents)), sorted(set(contents) - set(names))
    if missing or extra:
        raise VerificationError(
            f"manifest does not list the bundle's entries: not in the bundle {missing}, unlisted {extra}"
        )
    for subject in statement["subject"]:
        actual = hashlib.sha256(contents[subject["name"]]).hexdigest()
        if subject["digest"].get("sha256") != actual:
            raise VerificationError(
                f"{subject['name']}: digest does not match the manifest: expected {subject['digest'].get('sha256')}, "
                f"got {actual}"
            )
