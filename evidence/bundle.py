"""The evidence bundle: one zip an auditor verifies offline.

    certificate.dsse.json     the request's certificate (DSSE envelope, in-toto Statement)
    receipts/<name>.dsse.json one receipt envelope per system and action
    log/checkpoint.txt        the signed log checkpoint (C2SP signed note)
    log/proofs.json           {"<path>": {"leaf_index": n, "tree_size": n, "hashes": ["<hex>", ...]}}
    log/consistency.json      {"<earlier tree size>": ["<hex>", ...]}, possibly {}
    keys/<keyid>.pem          public keys of the envelope and checkpoint signers
    report.html               the summary for people
    VERIFY.txt                how to verify with standard tools

Writing is deterministic (sorted entries, fixed timestamps and modes), so the same evidence gives the same zip.
Reading is strict: anything outside this layout is rejected before a single signature is looked at.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evidence._json import exact_fields, loads_strict, typed
from evidence.errors import VerificationError

CERTIFICATE = "certificate.dsse.json"
CHECKPOINT = "log/checkpoint.txt"
PROOFS = "log/proofs.json"
CONSISTENCY = "log/consistency.json"
REPORT = "report.html"
VERIFY = "VERIFY.txt"
REQUIRED = frozenset({CERTIFICATE, CHECKPOINT, PROOFS, CONSISTENCY, REPORT, VERIFY})

RECEIPT_PATH = re.compile(r"receipts/[A-Za-z0-9][A-Za-z0-9._-]*\.dsse\.json")
KEY_PATH = re.compile(r"keys/([0-9a-f]{64})\.pem")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no build clock leaks into the bytes
_MAX_ENTRIES = 10_000
_MAX_ENTRY_BYTES = 32 * 1024 * 1024  # far above any real entry; stops a zip bomb from filling memory


def receipt_path(system: str) -> str:
    """Where a system's receipt lies in the bundle (and how the certificate names it)."""
    return f"receipts/{system}.dsse.json"


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

    def write(self, path: Path) -> None:
        """Write the zip atomically: a reader sees the old file or the whole new one."""
        entries = self._entries()
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file, zipfile.ZipFile(file, "w") as archive:
                for name in sorted(entries):
                    archive.writestr(_zip_info(name), entries[name])
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise

    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Read a bundle; VerificationError for anything but a zip holding exactly the layout above."""
        entries = _read_entries(path)
        missing = sorted(REQUIRED - set(entries))
        if missing:
            raise VerificationError(f"bundle is missing required entries: {missing}")
        return cls(
            certificate=entries[CERTIFICATE],
            receipts={name: data for name, data in entries.items() if RECEIPT_PATH.fullmatch(name)},
            checkpoint=_text(entries[CHECKPOINT], CHECKPOINT),
            proofs=_parse_proofs(entries[PROOFS]),
            consistency=_parse_consistency(entries[CONSISTENCY]),
            public_keys={m[1]: data for name, data in entries.items() if (m := KEY_PATH.fullmatch(name))},
            report_html=_text(entries[REPORT], REPORT),
            verify_txt=_text(entries[VERIFY], VERIFY),
        )

    def _entries(self) -> dict[str, bytes]:
        for name in self.receipts:
            if not RECEIPT_PATH.fullmatch(name):
                raise ValueError(f"receipt path outside the layout: {name!r}")
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
            CHECKPOINT: self.checkpoint.encode("utf-8"),
            PROOFS: _pretty(proofs),
            CONSISTENCY: _pretty(consistency),
            **{f"keys/{keyid}.pem": pem for keyid, pem in self.public_keys.items()},
            REPORT: self.report_html.encode("utf-8"),
            VERIFY: self.verify_txt.encode("utf-8"),
        }


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode below means the same on every platform
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    return info


def _read_entries(path: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            if len(infos) > _MAX_ENTRIES:
                raise VerificationError(f"bundle has too many entries: expected <= {_MAX_ENTRIES}, got {len(infos)}")
            names = [info.filename for info in infos]
            for name in names:
                _check_entry_name(name)
            duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
            if duplicates:
                raise VerificationError(f"bundle has duplicate entries: {duplicates}")
            return {info.filename: _read_entry(archive, info) for info in infos}
    except (OSError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:  # last: unknown compression
        raise VerificationError(f"bundle is not a readable zip file: {path.name}") from exc


def _check_entry_name(name: str) -> None:
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
        raise VerificationError(f"bundle entry has an unsafe path: {name!r}")
    if name not in REQUIRED and not RECEIPT_PATH.fullmatch(name) and not KEY_PATH.fullmatch(name):
        raise VerificationError(f"bundle has an entry outside the layout: {name!r}")


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & 0x1:
        raise VerificationError(f"bundle entry is encrypted: {info.filename!r}")
    if info.file_size > _MAX_ENTRY_BYTES:
        raise VerificationError(f"bundle entry is too large: {info.filename!r}")
    with archive.open(info) as entry:
        data = entry.read(_MAX_ENTRY_BYTES + 1)  # the header's size may lie; the read limit does not
    if len(data) > _MAX_ENTRY_BYTES:
        raise VerificationError(f"bundle entry is too large: {info.filename!r}")
    return data


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
