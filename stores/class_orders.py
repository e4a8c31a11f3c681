"""A class order as a person writes it (YAML), and its subject file (CSV, or Parquet), validated at the edge.

A class order names its subjects in one of two ways (domain/classes.py holds the contract):

    subjects: {file: children.csv}                  # one column per identifier type; relative to the order
    subjects: {class: under_13, cutoff: 2026-11-01} # a class the catalogue declares on an identity source

A bad file is refused whole, naming the file, the row and the column; nothing is stored.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from domain.errors import InvalidInput
from domain.identifiers import problem as identifier_problem
from domain.model import IdentifierType, Subject
from stores.orders import CourtOrder
from stores.validation import describe, read_yaml

# the identifier types a subject file may hold, one column each
FILE_COLUMNS = (
    IdentifierType.EMAIL,
    IdentifierType.PHONE,
    IdentifierType.USER_ID,
    IdentifierType.DEVICE_ID,
    IdentifierType.ADVERTISING_ID,
)
MAX_SUBJECTS = 2_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectFile(_Strict):
    file: str = Field(min_length=1)


class SubjectClass(_Strict):
    class_name: str = Field(alias="class", pattern=r"^[a-z][a-z0-9_]{0,62}$")
    cutoff: date  # the day the class is judged on (e.g. "under 13 on the date of the order")


class ClassOrder(_Strict):
    kind: Literal["class_order"]
    legal_basis: str = Field(min_length=1)
    received: date
    deadline: date
    court_order: CourtOrder | None = None
    regulator: str = ""
    subjects: SubjectFile | SubjectClass
    scope: Literal["all"] | list[str] = "all"

    @model_validator(mode="after")
    def _consistent(self) -> ClassOrder:
        if self.deadline < self.received:
            raise ValueError("deadline must not be before received")
        if self.court_order is None and not self.regulator:
            raise ValueError("a class order needs a court_order section or the regulator's name")
        if isinstance(self.scope, list) and (not self.scope or len(set(self.scope)) != len(self.scope)):
            raise ValueError("scope must be 'all' or a non-empty list of distinct system names")
        return self

    def reference(self) -> str:
        """How evidence names the order's authority; never a child."""
        if self.court_order is not None:
            o = self.court_order
            return f"{o.court}, claim {o.claim_number}, order of {o.made_on.isoformat()} ({o.party_reference})"
        return f"direction of {self.regulator}"

    def requester_record(self) -> dict[str, object]:
        if self.court_order is not None:
            return {"court_order": self.court_order.model_dump(mode="json")}
        return {"regulator": self.regulator}


def is_class_order(path: Path) -> bool:
    """Whether the order file says `kind: class_order` (a file that cannot be read is left to the loaders)."""
    try:
        data = read_yaml(path, allow_aliases=False)
    except InvalidInput:
        return False
    return isinstance(data, dict) and data.get("kind") == "class_order"


def load_class_order(path: Path) -> ClassOrder:
    data = read_yaml(path, allow_aliases=False)
    try:
        return ClassOrder.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(str(path), *describe(exc, data)) from None


def subject_file(order_path: Path, order: ClassOrder) -> Path:
    assert isinstance(order.subjects, SubjectFile)
    path = Path(order.subjects.file)
    return path if path.is_absolute() else order_path.parent / path


def read_subjects(path: Path) -> list[Subject]:
    """The subjects of a CSV file (or Parquet, by suffix): one row each, at least one identifier per row, each value
    checked as written. Duplicate rows are one subject. Errors name the file, the row (1 = the header) and the column,
    never the value."""
    rows = _parquet_rows(path) if path.suffix == ".parquet" else _csv_rows(path)
    subjects: dict[tuple[tuple[IdentifierType, str], ...], Subject] = {}
    for number, row in rows:
        values: dict[IdentifierType, tuple[str, ...]] = {}
        for kind in FILE_COLUMNS:
            value = row.get(kind.value) or ""
            if value == "":
                continue
            found = identifier_problem(kind, value)
            if found:
                raise InvalidInput(str(path), f"row {number}, column {kind.value}", found)
            values[kind] = (value,)
        if not values:
            raise InvalidInput(str(path), f"row {number}", "expected at least one identifier, got none")
        subjects.setdefault(tuple(sorted((k, v[0]) for k, v in values.items())), Subject(values))
        if len(subjects) > MAX_SUBJECTS:
            raise InvalidInput(str(path), f"row {number}", f"expected at most {MAX_SUBJECTS} subjects")
    if not subjects:
        raise InvalidInput(str(path), "rows", "expected at least one subject, got none")
    return list(subjects.values())


def _csv_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None:
                raise InvalidInput(str(path), "row 1", "expected a header of identifier columns, got an empty file")
            _check_header(path, header)
            rows = []
            for row in reader:
                if len(row) != len(header):
                    raise InvalidInput(
                        str(path), f"row {reader.line_num}", f"expected {len(header)} columns, got {len(row)}"
                    )
                rows.append((reader.line_num, dict(zip(header, row, strict=True))))
            return rows
    except OSError as exc:
        raise InvalidInput(str(path), "file", f"cannot be read ({type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise InvalidInput(str(path), "file", "expected UTF-8 text") from None
    except csv.Error:
        raise InvalidInput(str(path), "file", "expected CSV (a quoted field is not closed?)") from None


def _parquet_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise InvalidInput(str(path), "file", f"cannot be read as Parquet ({type(exc).__name__})") from None
    _check_header(path, table.column_names)
    for name in table.column_names:
        if str(table.schema.field(name).type) not in ("string", "large_string"):
            raise InvalidInput(str(path), f"column {name}", "expected strings")
    return [(n + 2, {k: v or "" for k, v in row.items()}) for n, row in enumerate(table.to_pylist())]


def _check_header(path: Path, header: list[str]) -> None:
    allowed = {kind.value for kind in FILE_COLUMNS}
    for name in header:
        if name not in allowed:
            shown = name[:40] if name.isidentifier() else "an unnamed column"
            raise InvalidInput(str(path), f"row 1, column {shown}", f"expected one of {', '.join(sorted(allowed))}")
    if len(set(header)) != len(header):
        raise InvalidInput(str(path), "row 1", "a column is named twice")
