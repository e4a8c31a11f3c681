"""Serve the vendor emulators on loopback for the demo.

    python -m emulators --host 127.0.0.1 --port 8799 [--segment-finish-after 5s] [--meta-finish-after 5s] [--seed FILE]

The seed file is JSON: {"segment": {"token": "...", "profiles": ["u1", ...]},
"meta": {"access_token": "...", "audiences": {"<id>": [["<sha256 of email>"], ...]}, "processing_time": "5s"}};
every key is optional. With a --*-finish-after duration, jobs finish on the wall clock instead of after a number of
polls; a Meta session takes hours unless --meta-finish-after or the seed's processing_time says otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn

from emulators.app import create_app
from emulators.meta import MetaState
from emulators.segment import SegmentState

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """'500ms', '5s', '2m', '1h' or '30d'."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (expected e.g. 5s, 2m, 1h)")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def states(
    seed: dict[str, Any], segment_after: timedelta | None, meta_after: timedelta | None
) -> tuple[SegmentState, MetaState]:
    segment_seed, meta_seed = seed.get("segment", {}), seed.get("meta", {})
    segment_state = SegmentState(profiles=set(segment_seed.get("profiles", [])))
    meta_state = MetaState(
        audiences={
            audience: {tuple(member) for member in members}
            for audience, members in meta_seed.get("audiences", {}).items()
        }
    )
    if "token" in segment_seed:
        segment_state.token = segment_seed["token"]
    if "access_token" in meta_seed:
        meta_state.access_token = meta_seed["access_token"]
    if "processing_time" in meta_seed:
        meta_state.processing_time = duration(meta_seed["processing_time"])
    if segment_after is not None:
        segment_state.finish_after, segment_state.finish_after_polls = segment_after, None
    if meta_after is not None:
        meta_state.processing_time = meta_after
    return segment_state, meta_state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators", description="Serve the vendor emulators on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--segment-finish-after", type=duration)
    parser.add_argument("--meta-finish-after", type=duration)
    parser.add_argument("--seed", type=Path, help="JSON file with profiles and audience members to start with")
    args = parser.parse_args(argv)
    seed = json.loads(args.seed.read_text()) if args.seed else {}
    segment_state, meta_state = states(seed, args.segment_finish_after, args.meta_finish_after)
    uvicorn.run(create_app(segment_state, meta_state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
