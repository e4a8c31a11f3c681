"""Zips written byte by byte, for the readers' disagreements a bundle must not allow.

`raw_zip` writes what the canonical writer writes (deflate, unix mode 0644, 1980-01-01) from data that is already
deflated, so a test can declare sizes that lie, or add 1.3 GB of zeros in 1.3 MB without deflating them 40 times.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_DOS_DATE = (1 << 5) | 1  # 1980-01-01
_MODE = 0o100644 << 16


@dataclass(frozen=True)
class RawEntry:
    name: str
    deflated: bytes
    crc: int
    size: int  # the uncompressed size the headers declare
    extra: bytes = b""


def entry(name: str, data: bytes, extra: bytes = b"") -> RawEntry:
    return RawEntry(name, _deflate(data), zlib.crc32(data), len(data), extra)


@cache
def zeros(size: int) -> RawEntry:
    """`size` zero bytes, deflated once (32 MiB take 32 KB)."""
    return entry("", bytes(size))


def entries_of(path: Path) -> list[RawEntry]:
    with zipfile.ZipFile(path) as archive:
        return [entry(info.filename, archive.read(info)) for info in archive.infolist()]


def raw_zip(path: Path, entries: list[RawEntry]) -> Path:
    local, central = bytearray(), bytearray()
    for e in entries:
        name = e.name.encode("ascii")
        fields = (20, 0, 8, 0, _DOS_DATE, e.crc, len(e.deflated), e.size, len(name), len(e.extra))
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x0314, *fields, 0, 0, 0, _MODE, len(local))
        central += name + e.extra
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", *fields) + name + e.extra + e.deflated
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def unicode_path(entry_name: str, shown: str) -> bytes:
    """A Unicode Path extra field (0x7075, APPNOTE 4.6.9): `unzip` extracts the entry under `shown`."""
    data = struct.pack("<BI", 1, zlib.crc32(entry_name.encode())) + shown.encode()
    return struct.pack("<HH", 0x7075, len(data)) + data


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()
