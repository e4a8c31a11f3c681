from __future__ import annotations

import dataclasses
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from evidence.bundle import Bundle
from evidence.errors import VerificationError
from tests.evidence.conftest import MakeBundle

Change = Callable[[dict[str, bytes]], list[tuple[str, bytes]]]


def rezip(source: Path, target: Path, change: Change) -> Path:
    """Copy a zip entry by entry, letting `change` rewrite the list of entries (duplicates allowed)."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests need
        for name, data in change(entries):
            archive.writestr(name, data)
    return target


def test_layout_is_exact(make_bundle: MakeBundle) -> None:
    with zipfile.ZipFile(make_bundle().path) as archive:
        names = archive.namelist()

    assert [n for n in names if not n.startswith("keys/")] == [
        "VERIFY.txt",
        "certificate.dsse.json",
        "log/checkpoint.txt",
        "log/consistency.json",
        "log/proofs.json",
        "receipts/app_db.dsse.json",
        "receipts/media_bucket.dsse.json",
        "receipts/segment.dsse.json",
        "report.html",
    ]
    assert len([n for n in names if n.startswith("keys/")]) == 1


def test_read_returns_what_was_written(make_bundle: MakeBundle, tmp_path: Path) -> None:
    bundle = Bundle.read(make_bundle().path)
    copy = tmp_path / "copy.zip"

    bundle.write(copy)

    assert Bundle.read(copy) == bundle


def test_write_is_deterministic(make_bundle: MakeBundle, tmp_path: Path) -> None:
    path = make_bundle().path
    Bundle.read(path).write(tmp_path / "again.zip")

    assert (tmp_path / "again.zip").read_bytes() == path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_write_refuses_a_receipt_outside_the_layout(make_bundle: MakeBundle, tmp_path: Path) -> None:
    bundle = Bundle.read(make_bundle().path)
    bad = dataclasses.replace(bundle, receipts={"receipts/../x.dsse.json": b"{}"})

    with pytest.raises(ValueError, match="receipt path outside the layout"):
        bad.write(tmp_path / "bad.zip")


def test_not_a_zip_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"PK but not really a zip")

    with pytest.raises(VerificationError, match="bundle is not a readable zip file"):
        Bundle.read(path)


def _plus(name: str, data: bytes = b"x") -> Change:
    return lambda entries: [*entries.items(), (name, data)]


def _without(name: str) -> Change:
    return lambda entries: [(n, d) for n, d in entries.items() if n != name]


def _replace(name: str, data: bytes) -> Change:
    return lambda entries: [(n, data if n == name else d) for n, d in entries.items()]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_plus("notes.txt"), r"entry outside the layout: 'notes.txt'"),
        (_plus("receipts/extra.json"), "entry outside the layout"),
        (_plus("keys/ABC.pem"), "entry outside the layout"),
        (_plus("receipts/"), "unsafe path"),
        (_plus("receipts/../certificate.dsse.json"), "unsafe path"),
        (_plus("../evil.dsse.json"), "unsafe path"),
        (_plus("/etc/passwd"), "unsafe path"),
        (_plus("receipts\\x.dsse.json"), "unsafe path"),
        (_plus("certificate.dsse.json", b"{}"), r"duplicate entries: \['certificate.dsse.json'\]"),
        (_without("log/checkpoint.txt"), r"missing required entries: \['log/checkpoint.txt'\]"),
        (_without("VERIFY.txt"), r"missing required entries: \['VERIFY.txt'\]"),
        (_replace("log/proofs.json", b"[]"), "log/proofs.json has wrong type: expected object"),
        (_replace("log/proofs.json", b'{"x": 1}'), "entry 'x' has wrong type: expected object"),
        (_replace("log/consistency.json", b'{"01": []}'), "has a key that is not a tree size"),
        (_replace("log/consistency.json", b'{"3": ["AB"]}'), "not 64 lowercase hex"),
        (_replace("log/checkpoint.txt", b"\xff"), "log/checkpoint.txt is not valid utf-8"),
    ],
    ids=[
        "unknown-file",
        "receipt-not-dsse",
        "key-not-hex",
        "directory-entry",
        "dot-dot",
        "parent",
        "absolute",
        "backslash",
        "duplicate",
        "missing-checkpoint",
        "missing-verify-txt",
        "proofs-not-object",
        "proof-not-object",
        "consistency-size-leading-zero",
        "consistency-short-hash",
        "checkpoint-not-utf8",
    ],
)
def test_bundle_outside_the_layout_is_rejected(
    make_bundle: MakeBundle,
    tmp_path: Path,
    change: Change,
    match: str,
) -> None:
    path = rezip(make_bundle().path, tmp_path / "bad.zip", change)

    with pytest.raises(VerificationError, match=match):
        Bundle.read(path)


@pytest.mark.parametrize(
    ("proof", "match"),
    [
        (b'{"leaf_index": 1, "tree_size": 2}', r"wrong fields: .* missing \['hashes'\]"),
        (b'{"leaf_index": "1", "tree_size": 2, "hashes": []}', "'leaf_index' has wrong type: expected int, got str"),
        (b'{"leaf_index": true, "tree_size": 2, "hashes": []}', "'leaf_index' has wrong type: expected int, got bool"),
        (b'{"leaf_index": 2, "tree_size": 2, "hashes": []}', "leaf index outside the tree: expected < 2, got 2"),
        (b'{"leaf_index": 0, "tree_size": 2, "hashes": ["00"]}', "not 64 lowercase hex"),
    ],
)
def test_malformed_inclusion_proof_is_rejected(
    make_bundle: MakeBundle, tmp_path: Path, proof: bytes, match: str
) -> None:
    path = rezip(make_bundle().path, tmp_path / "bad.zip", _replace("log/proofs.json", b'{"x.json": %b}' % proof))

    with pytest.raises(VerificationError, match=match):
        Bundle.read(path)
