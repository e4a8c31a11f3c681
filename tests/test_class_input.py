"""Class orders at the edge: subject files refused whole with file, row and column; the batch arithmetic."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.classes import batch_count, batch_slice, canonical_subject, merged
from domain.errors import InvalidInput
from domain.model import IdentifierType, Subject
from stores.class_orders import read_subjects
from stores.pseudonyms import Pseudonymizer, subject_pseudonym
from tests.test_cli_input import GOOD_CATALOGUE, run_submit


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "children.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_gives_one_subject_per_distinct_row(tmp_path: Path) -> None:
    path = write(tmp_path, "email,user_id\na@example.org,1\n,2\na@example.org,1\n")
    subjects = read_subjects(path)
    assert [s.kinds() for s in subjects] == [
        {IdentifierType.EMAIL, IdentifierType.USER_ID},
        {IdentifierType.USER_ID},
    ]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("email,user_id\nchild@example.org,1\n not-an-address,2\n", "row 3, column email"),
        ("email,nickname\nchild@example.org,x\n", "row 1, column nickname"),
        ("email,user_id\n,\n", "row 2"),
        ("email,user_id\nchild@example.org\n", "row 2"),
        ("phone\n+44 7700 900123\n07700 900123\n", "row 3, column phone"),
    ],
)
def test_a_bad_file_names_the_file_row_and_column_never_the_value(tmp_path: Path, text: str, field: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InvalidInput) as raised:
        read_subjects(path)
    assert raised.value.source == str(path)
    assert raised.value.field == field
    assert "not-an-address" not in str(raised.value) and "07700" not in str(raised.value)


def test_batches_are_consecutive_chunks_of_the_sorted_list() -> None:
    assert batch_count(2001, 1000) == 3
    assert [list(range(2001))[batch_slice(n, 1000)][-1] for n in range(3)] == [999, 1999, 2000]


def test_a_batch_reaches_exactly_its_subjects_values_of_the_systems_types() -> None:
    a = Subject.of(email=["a@example.org"], user_id=["1"])
    b = Subject.of(user_id=["10"])
    batch = merged([a, b], {IdentifierType.USER_ID})
    assert batch.identifiers == {IdentifierType.USER_ID: ("1", "10")}


def test_the_pseudonym_is_keyed_and_independent_of_value_order() -> None:
    one = Subject({IdentifierType.EMAIL: ("b@example.org", "a@example.org")})
    same = Subject({IdentifierType.EMAIL: ("a@example.org", "b@example.org")})
    assert canonical_subject(one) == canonical_subject(same) == b'{"email":["a@example.org","b@example.org"]}'
    key = Pseudonymizer(b"k" * 32, purpose="ledger")
    other = Pseudonymizer(b"j" * 32, purpose="ledger")
    assert subject_pseudonym(key, one) == subject_pseudonym(key, same)
    assert subject_pseudonym(key, one) != subject_pseudonym(other, one)
    assert len(subject_pseudonym(key, one)) == 32


def test_submit_refuses_a_class_order_with_a_bad_subject_file_with_exit_2_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "children.csv").write_text("email,user_id\nchild@example.org,1\nnot-an-address,2\n")
    order = {
        "kind": "class_order",
        "legal_basis": "Consent decree; COPPA 312.10",
        "received": "2026-11-01",
        "deadline": "2026-12-31",
        "regulator": "Federal Trade Commission",
        "subjects": {"file": "children.csv"},
    }
    result = run_submit(tmp_path, order, GOOD_CATALOGUE, monkeypatch)
    assert result.exit_code == 2
    assert "children.csv" in result.output and "row 3, column email" in result.output
    assert "not-an-address" not in result.output and "Traceback" not in result.output
