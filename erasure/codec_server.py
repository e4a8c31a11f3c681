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
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from stores.codec import ENCODING, CodecError


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
            done = await (_decode_for_display(codec, payloads.payloads) if decode else codec.encode(payloads.payloads))
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


async def _decode_for_display(codec: PayloadCodec, payloads: Sequence[Payload]) -> list[Payload]:
    """Our ciphertexts decrypted; a payload that is not ours passes through as the history already shows it.

    The SDK writes some payloads itself, unencrypted (a `workflow.patched` marker's details): the CLI and UI send them
    here with the rest, and refusing them would hide the whole history. Workers never see this path: their codec still
    refuses anything it cannot decrypt.
    """
    shown: list[Payload] = []
    for payload in payloads:
        if payload.metadata.get("encoding") == ENCODING:
            shown.extend(await codec.decode([payload]))
        else:
            shown.append(payload)
    return shown
