from __future__ import annotations

import dataclasses
import struct
import tracemalloc
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from evidence.bundle import Bundle
from evidence.errors import VerificationError
from tests.evidence.conftest import MakeBundle
from tests.evidence.zips import entries_of, raw_zip, unicode_path, zeros

Change = Callable[[dict[str, bytes]], list[tuple[str, bytes]]]


def zip_info(name: str, **fields: Any) -> zipfile.ZipInfo:
    """An entry as the canonical writer makes it, with `fields` changed."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type, info.create_system, info.external_attr = zipfile.ZIP_DEFLATED, 3, 0o100644 << 16
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def rezip(source: Path, target: Path, change: Change, **fields: Any) -> Path:
    """Copy a zip entry by entry, canonically, letting `change` rewrite the list of entries (duplicates allowed)."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    with warnings.catch_warnings(), zipfile.ZipFile(target, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names some tests need
        for name, data in change(entries):
            archive.writestr(zip_info(name, **fields), data)
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
        "manifest.dsse.json",
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


def test_write_refuses_an_unsigned_bundle(make_bundle: MakeBundle, tmp_path: Path) -> None:
    bundle = dataclasses.replace(Bundle.read(make_bundle().path), manifest=b"")

    with pytest.raises(ValueError, match="bundle has no manifest: sign it before writing"):
        bundle.write(tmp_path / "unsigned.zip")


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
        (_plus("receipts/APP_DB.dsse.json"), r"names differ only in case: \['receipts/app_db.dsse.json'\]"),
        (_plus("receipts/caf\u00e9.dsse.json"), "entry outside the layout"),
        (_without("manifest.dsse.json"), r"missing required entries: \['manifest.dsse.json'\]"),
        (_without("log/checkpoint.txt"), r"missing required entries: \['log/checkpoint.txt'\]"),
        (_without("VERIFY.txt"), r"missing required entries: \['VERIFY.txt'\]"),
        (_replace("log/proofs.json", b"[]"), "log/proofs.json has wrong type: expected object"),
        (_replace("log/proofs.json", b'{"x": 1}'), "entry 'x' has wrong type: expected object"),
        (_replace("log/consistency.json", b'{"01": []}'), "has a key that is not a tree size"),
        (_replace("log/consistency.json", b'{"3": ["AB"]}'), "not 64 lowercase hex"),
        (_replace("log/checkpoint.txt", b"\xff"), "log/checkpoint.txt is not valid utf-8"),
        (_replace("log/consistency.json", b"{}"), r"log/consistency.json is not in canonical form"),
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
        "case-folded-duplicate",
        "not-ascii",
        "missing-manifest",
        "missing-checkpoint",
        "missing-verify-txt",
        "proofs-not-object",
        "proof-not-object",
        "consistency-size-leading-zero",
        "consistency-short-hash",
        "checkpoint-not-utf8",
        "consistency-not-canonical",
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


def _keep(entries: dict[str, bytes]) -> list[tuple[str, bytes]]:
    return list(entries.items())


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"extra": unicode_path("report.html", "certificate.dsse.json")}, r"extra fields \['0x7075'\]"),
        ({"comment": b"hi"}, "bundle entry has a comment"),
        ({"compress_type": zipfile.ZIP_STORED}, "compression method 0"),
        ({"external_attr": 0o120777 << 16}, "not a regular file of mode 0644"),  # a symbolic link for unzip
        ({"create_system": 0}, "not a regular file of mode 0644"),
    ],
    ids=["unicode-path", "entry-comment", "stored", "symlink", "dos-attributes"],
)
def test_entry_a_canonical_zip_never_holds_is_rejected(
    make_bundle: MakeBundle, tmp_path: Path, fields: dict[str, Any], match: str
) -> None:
    path = rezip(make_bundle().path, tmp_path / "bad.zip", _keep, **fields)

    with pytest.raises(VerificationError, match=match):
        Bundle.read(path)


def test_unicode_path_that_names_another_file_is_rejected(make_bundle: MakeBundle, tmp_path: Path) -> None:
    """Python reads the entry as report.html, unzip as a second certificate: two readers, two bundles."""
    shown = unicode_path("report.html", "certificate.dsse.json")

    def change(entries: dict[str, bytes]) -> list[tuple[str, bytes]]:
        return [(n, d) for n, d in entries.items() if n != "report.html"]

    path = rezip(make_bundle().path, tmp_path / "bad.zip", change)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(zip_info("report.html", extra=shown), b"<p>forged certificate</p>")

    with pytest.raises(VerificationError, match=r"extra fields \['0x7075'\]: 'report.html'"):
        Bundle.read(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda data: b"junk" + data, "bytes outside its entries: before"),
        (lambda data: data + b"junk", "bytes outside its entries: after"),
        (lambda data: data[:-2] + b"\x02\x00" + b"hi", "archive comment"),
    ],
    ids=["prepended", "appended", "archive-comment"],
)
def test_bytes_outside_the_entries_are_rejected(
    make_bundle: MakeBundle, tmp_path: Path, change: Callable[[bytes], bytes], match: str
) -> None:
    path = tmp_path / "bad.zip"
    path.write_bytes(change(make_bundle().path.read_bytes()))

    with pytest.raises(VerificationError, match=match):
        Bundle.read(path)


def test_local_header_that_disagrees_with_the_directory_is_rejected(make_bundle: MakeBundle, tmp_path: Path) -> None:
    data = bytearray(make_bundle().path.read_bytes())
    data[6:8] = struct.pack("<H", 0x0800)  # the first entry's local header says "UTF-8 name"; the directory does not
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(data))

    with pytest.raises(VerificationError, match="local header disagrees with the directory: 'VERIFY.txt'"):
        Bundle.read(path)


def test_too_many_entries_are_rejected(make_bundle: MakeBundle, tmp_path: Path) -> None:
    def change(entries: dict[str, bytes]) -> list[tuple[str, bytes]]:
        return [*entries.items(), *((f"receipts/r{i}.dsse.json", b"{}") for i in range(2_000))]

    with pytest.raises(VerificationError, match=r"too many entries: expected <= 2000, got 20\d\d"):
        Bundle.read(rezip(make_bundle().path, tmp_path / "bad.zip", change))


ZEROS = 32 * 1024 * 1024


def bomb(source: Path, target: Path, entries: int, declared: int = ZEROS) -> Path:
    """The bundle plus `entries` receipts of 32 MiB of zeros each: 40 of them take 1.3 MB on disk."""
    zero = dataclasses.replace(zeros(ZEROS), size=declared)
    added = [dataclasses.replace(zero, name=f"receipts/z{i}.dsse.json") for i in range(entries)]
    return raw_zip(target, [*entries_of(source), *added])


def peak_memory_of_reading(path: Path, match: str) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(VerificationError, match=match):
            Bundle.read(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_is_rejected_before_it_fills_memory(make_bundle: MakeBundle, tmp_path: Path) -> None:
    path = bomb(make_bundle().path, tmp_path / "bomb.zip", 40)
    assert path.stat().st_size < 2_000_000

    peak = peak_memory_of_reading(path, r"too large uncompressed: expected <= 33554432 bytes, got 134\d{7}")

    assert peak < 4 * 1024 * 1024  # not 1.3 GB: refused on the declared sizes, before reading


def test_zip_bomb_with_lying_sizes_is_rejected_in_small_memory(make_bundle: MakeBundle, tmp_path: Path) -> None:
    """Headers that declare 1 KiB for 32 MiB: reading stops at the declared size, where the CRC fails."""
    path = bomb(make_bundle().path, tmp_path / "bomb.zip", 40, declared=1024)

    assert peak_memory_of_reading(path, "not a readable zip file") < 4 * 1024 * 1024
