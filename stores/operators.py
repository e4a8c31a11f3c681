"""Operators of the HTTP API and the dashboard: a name, roles, and the SHA-256 of a bearer token (never the token).

A token is printed once, when the operator is added; whoever presents it acts as that operator, and every action of
theirs is recorded under the operator's name.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from enum import StrEnum

from psycopg_pool import ConnectionPool

from domain.errors import InvalidInput

TOKEN_PREFIX = "eop_"  # names what a leaked string is, so secret scanners and people recognise it
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")


class Role(StrEnum):
    SUBMITTER = "submitter"  # submits orders
    APPROVER = "approver"  # approves, rejects and extends requests
    REVIEWER = "reviewer"  # decides near-matches
    AUDITOR = "auditor"  # exports and verifies evidence
    ADMIN = "admin"  # everything


@dataclass(frozen=True)
class Operator:
    operator_id: str
    name: str
    roles: frozenset[Role]

    def may(self, *roles: Role) -> bool:
        return Role.ADMIN in self.roles or bool(self.roles & set(roles))


class Operators:
    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def add(self, name: str, roles: list[Role]) -> tuple[Operator, str]:
        """A new operator and its token, which is returned here only and never stored."""
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                "arguments",
                "NAME",
                "expected lower-case letters, digits, '.', '_' or '-' (a role name, not a person's email)",
            )
        if not roles:
            raise InvalidInput("arguments", "--role", "at least one role is required")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        operator = Operator(str(uuid.uuid4()), name, frozenset(roles))
        with self._pool.connection() as conn:
            taken = conn.execute("SELECT 1 FROM operators WHERE name = %s", [name]).fetchone()
            if taken:
                raise InvalidInput("arguments", "NAME", "an operator of that name exists already")
            conn.execute(
                "INSERT INTO operators (operator_id, name, roles, token_sha256) VALUES (%s, %s, %s, %s)",
                [operator.operator_id, name, sorted(r.value for r in roles), token_digest(token)],
            )
        return operator, token

    def by_token(self, token: str) -> Operator | None:
        """The operator holding this token, unless disabled; compared by digest, in the database."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT operator_id, name, roles FROM operators WHERE token_sha256 = %s AND disabled_at IS NULL",
                [token_digest(token)],
            ).fetchone()
        if row is None:
            return None
        return Operator(str(row[0]), row[1], frozenset(Role(r) for r in row[2]))


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
