"""The evidence bundle: one zip an auditor verifies offline.

    manifest.dsse.json        a signed list of every other entry with its SHA-256 (DSSE envelope, in-toto Statement)
    certificate.dsse.json     the request's certificate (DSSE envelope, in-toto Statement)
    receipts/<name>.dsse.json one receipt envelope per system and action
    shred.dsse.json           the receipt for the destroyed request key, once it is destroyed (optional)
    superseded/certificate-<n>.dsse.json
                              every earlier certificate of the request (issued while a legal hold stopped systems),
                              n = 1, 2, ...; certificate.dsse.json is the current one and supersedes the last of them
    log/checkpoint.txt        the signed log checkpoint (C2SP signed note)
    log/proofs.json           {"<path>": {"leaf_index": n, "tree_size": n, "hashes": ["<hex>", ...]}}
    log/consistency.json      {"<earlier tree size>": ["<hex>", ...]}, possibly {}
    keys/<keyid>.pem          public keys of the envelope and checkpoint signers
    report.html               the summary for people
    VERIFY.txt                how to verify with standard tools

Writing is canonical: ASCII names of the layout only, sorted, deflated, no extra fields or comments, fixed
timestamps and modes, so the same evidence gives the same zip. Reading is strict, so that every zip reader sees the
same files: anything that a canonical zip does not hold (an entry outside the layout, a duplicate or case-folded
name, an extra field such as a Unicode path that names another file, bytes outside the entries, more entries or
more bytes than a real bundle has) is rejected before a single signature is looked at. Entries are read by
streaming, against a budget counted on the bytes actually read, not on the sizes the headers declare.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import zipfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from evidence._json import exact_fields, loads_strict, typed
from evidence.errors import VerificationError
from evidence.keys import Signer
from evidence.manifest import sign_manifest

MANIFEST = "manifest.dsse.json"
CERTIFICATE = "certificate.dsse.json"
SHRED = "shred.dsse.json"
CHECKPOINT = "log/checkpoint.txt"
PROOFS = "log/proofs.json"
CONSISTENCY = "log/consistency.json"
REPORT = "report.html"
VERIFY = "VERIFY.txt"
REQUIRED = frozenset({MANIFEST, CERTIFICATE, CHECKPOINT, PROOFS, CONSISTENCY, REPORT, VERIFY})
OPTIONAL = frozenset({SHRED})

# a system's receipt, or one batch's of a class order (evidence/batch_receipt.py: batch_path)
SUPERSEDED_PATH = re.compile(r"superseded/certificate-([1-9][0-9]*)\.dsse\.json")
RECEIPT_PATH = re.compile(r"receipts/[A-Za-z0-9][A-Za-z0-9._-]*(/batch-[0-9]{6}|/clean-up)?\.dsse\.json")
KEY_PATH = re.compile(r"keys/([0-9a-f]{64})\.pem")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build clock leaks into the bytes
_ZIP_MODE = 0o100644  # a regular file, rw-r--r--: never a link or a folder that an unzip tool would create
MAX_ENTRIES = 2_000  # a request with far more systems than any catalogue holds
_MAX_TOTAL_BYTES = 32 * 1024 * 1024  # all entries together, uncompressed; a real bundle is a few hundred KB
_CHUNK = 64 * 1024
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, lengths
_CENTRAL_HEADER_SIZE = 46
_END_RECORD_SIZE = 22


def receipt_path(system: str) -> str:
    """Where a system's receipt lies in the bundle (and how the certificate names it)."""
    return f"receipts/{system}.dsse.json"


def superseded_path(number: int) -> str:
    """Where the request's n-th certificate lies in the bundle once a later one supersedes it."""
    return f"superseded/certificate-{number}.dsse.json"


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass
class Bundle:
    certificate: bytes
    receipts: dict[str, bytes]  # path in the zip -> envelope bytes
    checkpoint: str
    proofs: dict[str, InclusionProof]  # path in the zip -> proof of that entry
    consistency: dict[int, tuple[bytes, ...]]  # earlier tree size -> consistency proof to the checkpoint's size
    public_keys: dict[str, bytes]  # keyid -> SubjectPublicKeyInfo PEM
    report_html: str
    verify_txt: str
    shred_receipt: bytes | None = None  # the envelope of the request key's destruction, once it is destroyed
    superseded: dict[str, bytes] = field(default_factory=dict)  # path in the zip -> an earlier certificate's envelope
    manifest: bytes = b""  # set by sign(): a bundle is written only once signed

    def sign(self, signer: Signer) -> None:
        """Sign the manifest: the list of every other entry with its SHA-256."""
        self.manifest = sign_manifest(self.contents(), signer)

    def write(self, path: Path) -> None:
        """Write the zip atomically: a reader sees the old file or the whole new one."""
        if not self.manifest:
            raise ValueError("bundle has no manifest: sign it before writing")
        write_canonical_zip(path, {**self.contents(), MANIFEST: self.manifest})

    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Read a bundle; VerificationError for anything but a canonical zip holding exactly the layout above."""
        entries = _read_entries(path)
        missing = sorted(REQUIRED - set(entries))
        if missing:
            raise VerificationError(f"bundle is missing required entries: {missing}")
        bundle = cls(
            certificate=entries[CERTIFICATE],
            receipts={name: data for name, data in entries.items() if RECEIPT_PATH.fullmatch(name)},
            checkpoint=_text(entries[CHECKPOINT], CHECKPOINT),
            proofs=_parse_proofs(entries[PROOFS]),
            consistency=_parse_consistency(entries[CONSISTENCY]),
            public_keys={m[1]: data for name, data in entries.items() if (m := KEY_PATH.fullmatch(name))},
            report_html=_text(entries[REPORT], REPORT),
            verify_txt=_text(entries[VERIFY], VERIFY),
            shred_receipt=entries.get(SHRED),
            superseded={name: data for name, data in entries.items() if SUPERSEDED_PATH.fullmatch(name)},
            manifest=entries[MANIFEST],
        )
        contents = bundle.contents()
        for name in (PROOFS, CONSISTENCY):  # parsed, so their bytes must be the one form that parsing gives back
            if contents[name] != entries[name]:
                raise VerificationError(
                    f"{name} is not in canonical form: sorted keys, indented by 2, one final newline"
                )
        return bundle

    def contents(self) -> dict[str, bytes]:
        """Every entry but the manifest, as written: the entries the manifest lists."""
        for name in self.receipts:
            if not RECEIPT_PATH.fullmatch(name):
                raise ValueError(f"receipt path outside the layout: {name!r}")
        for name in self.superseded:
            if not SUPERSEDED_PATH.fullmatch(name):
                raise ValueError(f"superseded certificate path outside the layout: {name!r}")
        for keyid in self.public_keys:
            if not _HEX_HASH.fullmatch(keyid):
                raise ValueError(f"key id is not 64 lowercase hex: {keyid!r}")
        proofs = {
            name: {"leaf_index": p.leaf_index, "tree_size": p.tree_size, "hashes": [h.hex() for h in p.hashes]}
            for name, p in self.proofs.items()
        }
        consistency = {str(size): [h.hex() for h in hashes] for size, hashes in self.consistency.items()}
        return {
            CERTIFICATE: self.certificate,
            **self.receipts,
            **({SHRED: self.shred_receipt} if self.shred_receipt is not None else {}),
            **self.superseded,
            CHECKPOINT: self.checkpoint.encode("utf-8"),
            PROOFS: _pretty(proofs),
            CONSISTENCY: _pretty(consistency),
            **{f"keys/{keyid}.pem": pem for keyid, pem in self.public_keys.items()},
            REPORT: self.report_html.encode("utf-8"),
            VERIFY: self.verify_txt.encode("utf-8"),
        }


def write_canonical_zip(path: Path, entries: Mapping[str, bytes]) -> None:
    """The entries as a canonical zip, written atomically; the names must be in the layout."""
    outside = sorted(name for name in entries if not in_layout(name))
    if outside:
        raise ValueError(f"entries outside the layout: {outside}")
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file, zipfile.ZipFile(file, "w") as archive:
            for name in sorted(entries):
                archive.writestr(_zip_info(name), entries[name])
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode below means the same on every platform
    info.external_attr = _ZIP_MODE << 16
    return info


def _read_entries(path: Path) -> dict[str, bytes]:
    try:
        size = path.stat().st_size
        if size > _MAX_TOTAL_BYTES:  # deflated entries never take more room than their contents' cap
            raise VerificationError(f"bundle file is too large: expected <= {_MAX_TOTAL_BYTES} bytes, got {size}")
        with path.open("rb") as file, zipfile.ZipFile(file) as archive:
            infos = archive.infolist()
            _check_names(infos)
            _check_one_reading(file, archive, infos, size)
            declared = sum(info.file_size for info in infos)
            if declared > _MAX_TOTAL_BYTES:
                raise VerificationError(
                    f"bundle is too large uncompressed: expected <= {_MAX_TOTAL_BYTES} bytes, got {declared}"
                )
            return _read_within_budget(archive, infos)
    except (OSError, zipfile.BadZipFile, EOFError, struct.error) as exc:
        raise VerificationError(f"bundle is not a readable zip file: {path.name}") from exc


def _check_names(infos: list[zipfile.ZipInfo]) -> None:
    if len(infos) > MAX_ENTRIES:
        raise VerificationError(f"bundle has too many entries: expected <= {MAX_ENTRIES}, got {len(infos)}")
    names = [info.filename for info in infos]
    for name in names:
        _check_entry_name(name)
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise VerificationError(f"bundle has duplicate entries: {duplicates}")
    folded = sorted(name for name, count in Counter(n.casefold() for n in names).items() if count > 1)
    if folded:  # one file on a case-insensitive disk: unzip would overwrite one with the other
        raise VerificationError(f"bundle has entries whose names differ only in case: {folded}")


def _check_entry_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
        raise VerificationError(f"bundle entry has an unsafe path: {name!r}")
    if not in_layout(name):
        raise VerificationError(f"bundle has an entry outside the layout: {name!r}")


def in_layout(name: str) -> bool:
    """Whether `name` is a path of the layout; all of them are ASCII, which every zip tool and disk reads alike."""
    return (
        name in REQUIRED
        or name in OPTIONAL
        or any(path.fullmatch(name) for path in (RECEIPT_PATH, SUPERSEDED_PATH, KEY_PATH))
    )


def _check_one_reading(file: BinaryIO, archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], size: int) -> None:
    """Each entry as a canonical zip writes it, and no byte of the file outside the entries and the directory.

    Zip readers differ in what they take from extra fields (a Unicode path names another file in `unzip`), local
    headers, data descriptors and bytes before, between or after the entries; a zip with none of them reads the
    same everywhere.
    """
    if archive.comment:
        raise VerificationError("bundle has an archive comment: expected none")
    offset = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        name = repr(info.filename)
        if info.extra:
            ids = _extra_ids(info.extra)  # 0x7075, a Unicode path, makes unzip extract the entry under another name
            raise VerificationError(f"bundle entry has extra fields {ids}: {name}; expected none")
        if info.comment:
            raise VerificationError(f"bundle entry has a comment: {name}; expected none")
        if info.flag_bits & 0x1:
            raise VerificationError(f"bundle entry is encrypted: {name}")
        if info.flag_bits:
            raise VerificationError(
                f"bundle entry has general purpose flags 0x{info.flag_bits:04x}: {name}; expected 0"
            )
        if info.compress_type != zipfile.ZIP_DEFLATED:
            raise VerificationError(f"bundle entry has compression method {info.compress_type}: {name}; expected 8")
        if info.create_system != 3 or info.external_attr >> 16 != _ZIP_MODE:
            raise VerificationError(f"bundle entry is not a regular file of mode 0644: {name}")
        if info.header_offset != offset:
            raise VerificationError(f"bundle has bytes outside its entries: before {name}")
        offset += _check_local_header(file, info)
    directory = sum(_CENTRAL_HEADER_SIZE + len(info.filename) for info in infos)
    if offset + directory + _END_RECORD_SIZE != size:
        raise VerificationError("bundle has bytes outside its entries: after the last entry or in the directory")


def _extra_ids(extra: bytes) -> list[str]:
    ids, at = [], 0
    while at + 4 <= len(extra):
        field, length = struct.unpack_from("<HH", extra, at)
        ids.append(f"0x{field:04x}")
        at += 4 + length
    return ids


def _check_local_header(file: BinaryIO, info: zipfile.ZipInfo) -> int:
    """The local header says what the central directory says; returns the length of header and data."""
    file.seek(info.header_offset)
    header = file.read(_LOCAL_HEADER.size)
    signature, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    name = file.read(name_length)
    agrees = (signature, flags, method, crc, compressed, size, name, extra_length) == (
        b"PK\x03\x04",
        info.flag_bits,
        info.compress_type,
        info.CRC,
        info.compress_size,
        info.file_size,
        info.filename.encode("ascii"),
        0,
    )
    if not agrees:
        raise VerificationError(f"bundle entry's local header disagrees with the directory: {info.filename!r}")
    return _LOCAL_HEADER.size + len(name) + info.compress_size


def _read_within_budget(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> dict[str, bytes]:
    """Every entry's bytes, streamed: the count of bytes read, not the sizes the headers declare, holds the cap."""
    entries, left = {}, _MAX_TOTAL_BYTES
    for info in infos:
        data = bytearray()
        with archive.open(info) as entry:
            while chunk := entry.read(_CHUNK):
                data += chunk
                left -= len(chunk)
                if left < 0:
                    raise VerificationError(
                        f"bundle is too large uncompressed: expected <= {_MAX_TOTAL_BYTES} bytes, at {info.filename!r}"
                    )
        entries[info.filename] = bytes(data)
    return entries


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{name} is not valid utf-8") from exc


def _parse_proofs(data: bytes) -> dict[str, InclusionProof]:
    document = loads_strict(data, PROOFS)
    if not isinstance(document, dict):
        raise VerificationError(f"{PROOFS} has wrong type: expected object, got {type(document).__name__}")
    return {name: _inclusion_proof(name, value) for name, value in document.items()}


def _inclusion_proof(name: str, value: Any) -> InclusionProof:
    what = f"{PROOFS} entry {name!r}"
    fields = exact_fields(value, {"leaf_index", "tree_size", "hashes"}, what)
    leaf_index, tree_size = typed(fields, "leaf_index", int, what), typed(fields, "tree_size", int, what)
    if not 0 <= leaf_index < tree_size:
        raise VerificationError(f"{what} has leaf index outside the tree: expected < {tree_size}, got {leaf_index}")
    return InclusionProof(leaf_index, tree_size, _hashes(typed(fields, "hashes", list, what), what))


def _parse_consistency(data: bytes) -> dict[int, tuple[bytes, ...]]:
    document = loads_strict(data, CONSISTENCY)
    if not isinstance(document, dict):
        raise VerificationError(f"{CONSISTENCY} has wrong type: expected object, got {type(document).__name__}")
    proofs = {}
    for size, hashes in document.items():
        if not _DECIMAL.fullmatch(size):
            raise VerificationError(f"{CONSISTENCY} has a key that is not a tree size: {size!r}")
        if not isinstance(hashes, list):
            raise VerificationError(f"{CONSISTENCY} entry {size} has wrong type: expected array")
        proofs[int(size)] = _hashes(hashes, f"{CONSISTENCY} entry {size}")
    return proofs


def _hashes(values: list[Any], what: str) -> tuple[bytes, ...]:
    if not all(isinstance(v, str) and _HEX_HASH.fullmatch(v) for v in values):
        raise VerificationError(f"{what} has a hash that is not 64 lowercase hex digits")
    return tuple(bytes.fromhex(v) for v in values)


def _pretty(document: object) -> bytes:
    # Indented for the auditor who opens it; sorted so the bytes stay deterministic.
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
