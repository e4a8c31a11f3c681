"""Both emulators in one ASGI app, mounted at /segment and /meta, as the dev stack and the tests serve them."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from emulators import meta, segment


async def _healthz(_: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def create_app(segment_state: segment.SegmentState, meta_state: meta.MetaState) -> Starlette:
    async def state(_: Request) -> JSONResponse:
        """What each vendor still holds, so the demo can check that the neighbours' data survived."""
        return JSONResponse(
            {
                "segment": {"profiles": sorted(segment_state.profiles)},
                "meta": {"audiences": {k: sorted(map(list, v)) for k, v in meta_state.audiences.items()}},
            }
        )

    return Starlette(
        routes=[
            Route("/healthz", _healthz, methods=["GET"]),
            Route("/_emulator/state", state, methods=["GET"]),
            Mount("/segment", app=segment.create_app(segment_state)),
            Mount("/meta", app=meta.create_app(meta_state)),
        ]
    )
