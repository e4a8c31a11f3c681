"""The one error of the evidence package.

    VerificationError    a piece of evidence failed a check: layout, signature, digest, proof or log consistency

Messages are lowercase and say what failed, then expected versus got (as sigstore does). They name fields, paths
inside the bundle, sizes, key ids and hashes, never the contents of a payload.
"""

from __future__ import annotations


class VerificationError(Exception):
    """Raised by every check that fails; a verifier never returns after a failed check."""
