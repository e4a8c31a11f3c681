"""Each kind of system's settings, capabilities and identifier types, by kind name.

The catalogue validates against these, and the connectors implement them; neither the catalogue nor `erasure submit`
needs to import a connector (and its drivers) to know what a kind accepts.
"""

from __future__ import annotations

from domain.settings import delta, meta_audiences, postgres, s3, segment
from domain.settings.base import Capabilities, KindSpec, StrictModel

KINDS: dict[str, KindSpec] = {
    "postgres": postgres.KIND,
    "s3": s3.KIND,
    "delta": delta.KIND,
    "segment": segment.KIND,
    "meta_audiences": meta_audiences.KIND,
}

__all__ = ["KINDS", "Capabilities", "KindSpec", "StrictModel"]
