"""The notary: what the certificate, a system's receipt and the shredding record state."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date

from evidence import notary
from evidence.statement import parse_statement
from tests.evidence.conftest import ORIGIN, REQUEST, REQUEST_ID, certificate

RUN = notary.Run("wf", "run", "7", "0.1.0+test", "2025-03-01T10:00:00+00:00", "2025-03-01T10:05:00+00:00")


@dataclass(frozen=True)
class Task:
    system: str = "uploads"
    category: str = "storage"
    connector: str = "s3"
    records_before: int | None = 3
    records_after: int | None = 1
    counts_before: dict[str, int] | None = None
    counts_after: dict[str, int] | None = None
    blocked: int = 1
    key_commitment: str | None = "cd" * 32
    key_count: int = 2
    vendor_job_id: str | None = None
    vendor_status: str | None = None
    vendor_facts: dict[str, str | int] = field(default_factory=lambda: {"rows_sent": 2})
    residual: list[str] | None = None


def test_certificate_states_outcome_reason_receipts_and_systems_not_searched() -> None:
    systems = (
        notary.FinishedSystem("uploads", "storage", "blocked", 3, 1),
        notary.FinishedSystem("app_db", "storage", "verified_absent", 12, 0),
        notary.FinishedSystem("segment", "analytics", "verified_absent", 2, 0),
    )

    statement = parse_statement(certificate(systems, {s.system: s.system.encode() for s in systems}))

    predicate = statement["predicate"]
    assert [s["name"] for s in statement["subject"]] == [
        "receipts/app_db.dsse.json",
        "receipts/segment.dsse.json",
        "receipts/uploads.dsse.json",
    ]
    assert (predicate["outcome"], predicate["outcome_reason"]) == ("partial", "1 blocked, 2 verified_absent")
    assert [s["system"] for s in predicate["systems"]] == ["app_db", "segment", "uploads"]
    assert predicate["systems"][2]["receipt"] == "receipts/uploads.dsse.json"
    assert predicate["exceptions"] == [
        "crm: not searched, the request has no identifier of a type it is keyed by (device_id)"
    ]
    assert (predicate["received_at"], predicate["deadline"]) == ("2025-02-27T00:00:00Z", REQUEST.deadline.isoformat())
    assert predicate["log_origin"] == ORIGIN
    assert predicate["days_overdue"] == 0  # issued 2025-03-01, due 2025-03-27


def test_a_certificate_issued_after_the_deadline_states_the_days_of_delay() -> None:
    systems = (notary.FinishedSystem("app_db", "storage", "verified_absent", 12, 0),)
    late = dataclasses.replace(REQUEST, deadline=date(2025, 2, 19))  # certificate issued 2025-03-01

    predicate = parse_statement(certificate(systems, {"app_db": b"app_db"}, late))["predicate"]

    assert (predicate["deadline"], predicate["days_overdue"]) == ("2025-02-19", 10)


def test_erase_receipt_joins_counts_per_location_and_keeps_the_ledgers_facts() -> None:
    task = Task(counts_before={"uploads/{user_id}/": 2, "avatars/{user_id}.jpg": 1}, counts_after={"cache": 0})

    statement = notary.erase_receipt(REQUEST_ID, task, level="blocked", detail="legal hold", notes=["n"], run=RUN)

    predicate = parse_statement(statement)["predicate"]
    assert predicate["locations"] == {
        "avatars/{user_id}.jpg": {"before": 1, "after": None},
        "cache": {"before": None, "after": 0},
        "uploads/{user_id}/": {"before": 2, "after": None},
    }
    assert (predicate["action"], predicate["evidence_level"], predicate["blocked"]) == ("erase", "blocked", 1)
    assert (predicate["key_commitment"], predicate["activity_id"], predicate["notes"]) == ("cd" * 32, "7", ["n"])
    assert predicate["vendor_facts"] == {"rows_sent": 2}


def test_shred_receipt_says_the_key_is_gone_what_was_checked_and_where_copies_remain() -> None:
    backups = notary.Backups(retention_days=35)

    statement = notary.shred_receipt(REQUEST_ID, "grace period ended", RUN, backups=backups)

    predicate = parse_statement(statement)["predicate"]
    assert (predicate["action"], predicate["system"], predicate["evidence_level"]) == (
        "shred",
        "vault",
        "verified_absent",
    )
    assert "(grace period ended)" in predicate["detail"]
    assert predicate["locations"] == {"vault_keys": {"before": 1, "after": 0}}
    checked, not_checked, beyond_use = predicate["notes"]
    assert checked.startswith("checked:") and checked.endswith("the live table only")
    assert "write-ahead log" in not_checked and "dead row versions" in not_checked and "backups" in not_checked
    # shredded 2025-03-01T10:05Z, backups kept 35 days: the last copy expires on 5 April
    assert "kept 35 days" in beyond_use and "expires by 2025-04-05" in beyond_use


def test_certificate_states_when_the_ledgers_backups_are_beyond_use() -> None:
    systems = (notary.FinishedSystem("app_db", "storage", "verified_absent", 12, 0),)

    predicate = parse_statement(certificate(systems, {"app_db": b"e"}))["predicate"]

    # the key is destroyed by 2025-03-31T10:10Z (conftest), and backups are kept 35 days after that
    assert predicate["ledger_backups_beyond_use_by"] == "2025-05-05"
