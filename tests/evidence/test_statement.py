from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest

from evidence.errors import VerificationError
from evidence.notary import FinishedSystem
from evidence.statement import (
    CERTIFICATE_PREDICATE_TYPE,
    RECEIPT_PREDICATE_TYPE,
    STATEMENT_TYPE,
    ReceiptFacts,
    certificate_statement,
    outcome_for,
    parse_statement,
    receipt_statement,
)
from tests.evidence.conftest import REQUEST_ID, certificate_facts, receipt_facts


def test_receipt_statement_names_request_system_and_action() -> None:
    facts = receipt_facts("app_db", "storage", "verified_absent", 12, 0)

    statement = parse_statement(receipt_statement(facts))

    name = f"erasure-request/{REQUEST_ID}/app_db/erase"
    assert statement["_type"] == STATEMENT_TYPE
    assert statement["predicateType"] == RECEIPT_PREDICATE_TYPE
    assert statement["subject"] == [{"name": name, "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}]


def test_receipt_predicate_holds_every_fact() -> None:
    facts = receipt_facts("media_bucket", "storage", "blocked", 40, 40)

    predicate = parse_statement(receipt_statement(facts))["predicate"]

    assert set(predicate) == {f.name for f in dataclasses.fields(ReceiptFacts)}
    assert predicate["locations"] == {"media_bucket.main": {"before": 40, "after": 40}}
    assert predicate["notes"] == ["legal hold: litigation 2024-117"]
    assert (predicate["evidence_level"], predicate["blocked"], predicate["records_after"]) == ("blocked", 40, 40)


def test_statements_are_canonical_json() -> None:
    payload = receipt_statement(receipt_facts("app_db", "storage", "verified_absent", 12, 0))

    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()


def test_certificate_subjects_are_the_receipt_envelopes_sorted_by_path() -> None:
    receipts = {"receipts/b.dsse.json": b"envelope b", "receipts/a.dsse.json": b"envelope a"}
    systems = (FinishedSystem("b", "storage", "verified_absent", 1, 0),)

    statement = parse_statement(certificate_statement(certificate_facts(systems), receipts))

    assert statement["predicateType"] == CERTIFICATE_PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "receipts/a.dsse.json", "digest": {"sha256": hashlib.sha256(b"envelope a").hexdigest()}},
        {"name": "receipts/b.dsse.json", "digest": {"sha256": hashlib.sha256(b"envelope b").hexdigest()}},
    ]
    assert statement["predicate"]["systems"][0]["receipt"] == "receipts/b.dsse.json"
    assert statement["predicate"]["outcome"] == "complete"


def test_certificate_needs_the_receipts_it_names() -> None:
    systems = (FinishedSystem("b", "storage", "verified_absent", 1, 0),)

    with pytest.raises(ValueError, match="not given"):
        certificate_statement(certificate_facts(systems), {"receipts/a.dsse.json": b"a"})


def test_a_certificate_where_no_system_applied_names_the_request_and_is_not_complete() -> None:
    statement = json.loads(certificate_statement(certificate_facts(()), {}))

    name = f"erasure-request/{statement['predicate']['request_id']}"
    assert statement["subject"] == [{"name": name, "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}]
    assert statement["predicate"]["outcome"] == "incomplete"


def test_certificate_outcome_must_agree_with_the_systems() -> None:
    systems = (FinishedSystem("b", "storage", "failed", 1, 1),)

    with pytest.raises(ValueError, match="outcome"):
        dataclasses.replace(certificate_facts(systems), outcome="complete")


@pytest.mark.parametrize(
    "change",
    [
        {"action": "delete"},
        {"evidence_level": "done"},
        {"records_before": -1},
        {"key_count": True},
        {"request_id": "not-a-uuid"},
        {"system": "a/b"},
        {"key_commitment": "ABC"},
        {"started_at": "2025-03-01T10:00:00+01:00"},
        {"finished_at": "yesterday"},
        {"locations": {"x": (1, -1)}},
    ],
)
def test_receipt_facts_validate_themselves(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid"):
        dataclasses.replace(receipt_facts("app_db", "storage", "verified_absent", 1, 0), **change)


@pytest.mark.parametrize(
    ("levels", "outcome"),
    [
        (["verified_absent", "vendor_attested", "accepted"], "complete"),
        (["verified_absent", "blocked"], "partial"),
        (["blocked", "failed"], "incomplete"),
        (["verified_absent", "failed"], "incomplete"),
        ([], "incomplete"),
    ],
)
def test_outcome_for(levels: list[str], outcome: str) -> None:
    assert outcome_for(levels) == outcome


def test_outcome_for_rejects_unknown_levels() -> None:
    with pytest.raises(ValueError, match="unknown evidence levels"):
        outcome_for(["gone"])


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"nope", "statement is not valid json"),
        (b"[]", "wrong type: expected object"),
        (b'{"_type":"https://in-toto.io/Statement/v0.1"}', "wrong _type"),
        (b'{"_type":"%s","predicateType":"p","predicate":{}}' % STATEMENT_TYPE.encode(), "'subject' has wrong type"),
        (b'{"_type":"%s","predicateType":"p","predicate":[],"subject":[]}' % STATEMENT_TYPE.encode(), "'predicate'"),
        (b'{"_type":"%s","predicateType":"p","predicate":{},"subject":[]}' % STATEMENT_TYPE.encode(), "no subject"),
        (
            b'{"_type":"%s","predicateType":"p","predicate":{},"subject":[{"name":"n"}]}' % STATEMENT_TYPE.encode(),
            "'digest' has wrong type",
        ),
        (
            b'{"_type":"%s","predicateType":"p","predicate":{},"subject":[{"name":"n","digest":{}}]}'
            % STATEMENT_TYPE.encode(),
            "digest is malformed",
        ),
    ],
)
def test_parse_statement_rejects_non_statements(payload: bytes, match: str) -> None:
    with pytest.raises(VerificationError, match=match):
        parse_statement(payload)
