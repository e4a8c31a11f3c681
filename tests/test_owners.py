"""Every table has one owner, and the certificate one builder: no other product module touches them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("erasure", "workflows", "activities", "connectors", "stores", "evidence", "domain", "bench")

OWNERS = {
    "receipts": "stores/tlog.py",
    "tlog_leaves": "stores/tlog.py",
    "tlog_head": "stores/tlog.py",
    "suppression": "stores/suppression.py",
    "suppression_key": "stores/suppression.py",
    "vault_keys": "stores/vault.py",
    "vault_items": "stores/vault.py",
    "requests": "stores/ledger.py",
    "subject_pseudonyms": "stores/ledger.py",
    "system_tasks": "stores/ledger.py",
    "events": "stores/ledger.py",
    "holds": "stores/holds.py",
    "hold_subjects": "stores/holds.py",
    "hold_restrictions": "stores/holds.py",
    "operators": "stores/operators.py",
    "request_states": "stores/ledger.py",
    "deletion_journal": "stores/ledger.py",
    "class_orders": "stores/class_ledger.py",
    "class_batches": "stores/class_ledger.py",
    "tlog_nodes": "stores/tlog.py",
    "tlog_checkpoints": "stores/tlog.py",
}


def sources() -> dict[str, str]:
    return {
        str(path.relative_to(ROOT)): path.read_text()
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@pytest.mark.parametrize("table", sorted(OWNERS))
def test_sql_on_a_table_is_in_its_owners_module_only(table: str) -> None:
    sql = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN|COPY)\s+{table}\b")
    # the benchmark times the log's own appends and sizes its tables: it may read the log's tables directly; the soak
    # and the request benchmark audit the ledger from outside, read only, as an auditor's own tools would
    allowed = {
        OWNERS[table],
        *(["bench/evidence_log.py"] if table.startswith("tlog_") else []),
        *(["bench/soak.py"] if table in ("requests", "receipts", "system_tasks", "tlog_checkpoints") else []),
        *(["bench/requests.py"] if table == "requests" else []),
    }

    found = {path for path, text in sources().items() if sql.search(text)}

    assert found <= allowed and OWNERS[table] in found, found


def test_the_certificate_is_built_in_the_notary_only() -> None:
    builders = {
        path
        for path, text in sources().items()
        if re.search(r"\b(CertificateFacts|certificate_statement)\(", text) and path != "evidence/statement.py"
    }

    assert builders == {"evidence/notary.py"}
