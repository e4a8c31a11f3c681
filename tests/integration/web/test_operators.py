"""`erasure operator add`: the token is printed once and only its SHA-256 is stored; bad input is exit 2."""

from __future__ import annotations

import hashlib

from tests.integration.conftest import Harness


async def test_a_token_is_printed_once_and_only_its_hash_is_stored(harness: Harness) -> None:
    env = harness.process_env()
    added = await harness.cli(env, "operator", "add", "clerk", "--role", "submitter", "--role", "auditor")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("eop_") and len(token) > 40
    with harness.services.pool.connection() as conn:
        rows = conn.execute("SELECT name, roles, token_sha256 FROM operators").fetchall()
        dump = repr(conn.execute("SELECT * FROM operators").fetchall())
    assert rows == [("clerk", ["auditor", "submitter"], hashlib.sha256(token.encode()).digest())]
    assert token not in dump and token.encode() not in dump.encode()

    for args, field in (
        (("clerk", "--role", "auditor"), "NAME"),  # taken
        (("Clerk@example.org", "--role", "auditor"), "NAME"),  # an address is not an operator's name
        (("judge", "--role", "judge"), "--role"),
    ):
        refused = await harness.cli(env, "operator", "add", *args)
        assert refused.returncode == 2 and field in refused.stderr, refused.stderr
        assert "example.org" not in refused.stderr
    with harness.services.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM operators").fetchone() == (1,)
