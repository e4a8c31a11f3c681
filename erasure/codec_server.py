"""The codec server: lets the Temporal UI and CLI show decrypted payloads to authorised operators only.

`POST /encode` and `POST /decode` take and return `{"payloads": [...]}` in Temporal's JSON form. Every request must
carry `Authorization: Bearer <token>`; anything else is answered 401 and decrypts nothing.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads
from temporalio.converter import PayloadCodec

from stores.codec import CodecError


def create_app(codec: PayloadCodec, token: str, allowed_origins: Sequence[str]) -> Starlette:
    expected = f"Bearer {token}".encode()

    async def handle(request: Request, decode: bool) -> Response:
        given = request.headers.get("authorization", "").encode()
        if not token or not hmac.compare_digest(given, expected):
            return JSONResponse({"message": "a valid bearer token is required"}, status_code=401)
        try:
            payloads = json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError:
            return JSONResponse({"message": 'body must be {"payloads": [...]}'}, status_code=400)
        try:
            done = await (codec.decode(payloads.payloads) if decode else codec.encode(payloads.payloads))
        except CodecError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        return Response(json_format.MessageToJson(Payloads(payloads=done)), media_type="application/json")

    async def encode(request: Request) -> Response:
        return await handle(request, decode=False)

    async def decode(request: Request) -> Response:
        return await handle(request, decode=True)

    return Starlette(
        routes=[Route("/encode", encode, methods=["POST"]), Route("/decode", decode, methods=["POST"])],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(allowed_origins),
                allow_methods=["POST"],
                allow_headers=["authorization", "content-type", "x-namespace"],
                allow_credentials=True,
            )
        ],
    )
