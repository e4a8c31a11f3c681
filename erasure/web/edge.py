"""The edge every response passes: body size caps, no-store and a strict CSP, RFC 9457 problem details.

A problem names what failed and, for bad input, the field; never a stack trace, an identifier or a body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 1_048_576  # an order is a few kilobytes, like the CLI's 1 MiB file cap
MAX_UPLOAD = 32 * 1_048_576  # an evidence bundle with its receipts and proofs
UPLOAD_PATHS = ("/api/verify", "/verify")

HEADERS = [
    (b"cache-control", b"no-store"),
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        b"base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Problem(BaseModel):
    """RFC 9457 problem details; `field` names the input that was wrong, for 422."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    field: str | None = None


def problem(status: int, title: str, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    body = Problem(title=title, status=status, detail=detail, field=field).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers or None)


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "content": {"application/problem+json": {}}, "description": text}
    for code, text in (
        (400, "the body cannot be parsed (a form or a multipart upload)"),
        (401, "no valid token or session"),
        (403, "the operator's roles do not allow this"),
        (404, "no such request"),
        (409, "the request's state refuses this now"),
        (413, "the body is larger than allowed"),
        (415, "the body is of another media type than documented"),
        (422, "bad input: names the field"),
        (429, "too many failed sign-ins from this address"),
    )
}


class Edge:
    """Pure ASGI: refuses a body past its cap before the application sees it, and sets the headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_UPLOAD if scope["path"] in UPLOAD_PATHS else MAX_BODY
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _with_headers(_too_large(limit), scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:  # read the body first, so that a lying Content-Length gains nothing
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _with_headers(_too_large(limit), scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await _with_headers(self.app, scope, replay, send)


def _too_large(limit: int) -> JSONResponse:
    return problem(413, "body too large", f"the body is larger than allowed: expected at most {limit} bytes")


async def _with_headers(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *HEADERS]
        await send(message)

    await app(scope, receive, with_headers)
