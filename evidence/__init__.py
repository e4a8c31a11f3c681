"""Evidence of erasure that a court or an auditor verifies offline, with standard formats and tools.

    keys        Ed25519 signers and key ids
    dsse        DSSE envelopes (Ed25519 over PAE)
    statement   in-toto Statement v1 receipts and certificates
    notary      what a receipt, a shredding record and the certificate state (the one builder of each)
    merkle      the RFC 9162 Merkle log: roots, inclusion and consistency proofs
    checkpoint  C2SP tlog-checkpoints in C2SP signed notes
    bundle      the zip handed to an auditor
    report      report.html and VERIFY.txt
    verify      verify_bundle, the one verifier
    errors      VerificationError, the one error a check raises

Imports only the standard library and `cryptography`: nothing of Temporal, the database or the application.
"""
