"""The ASGI application of `erasure serve`: the stack opened once, the edge, the error handlers, both route sets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from domain.errors import ErasureError, InvalidInput
from erasure.config import Config
from erasure.logs import get_logger
from erasure.services import Services, connect_temporal
from erasure.web import api, dashboard
from erasure.web.actions import Forbidden, NotFound, Refused, Stack
from erasure.web.auth import FailureLimit, Sessions
from erasure.web.dashboard import BadCsrf, SignInNeeded
from erasure.web.edge import Edge, problem
from stores.catalogue import load_catalogue
from stores.operators import Operators

log = get_logger("erasure.serve")
STATIC = Path(__file__).parent / "static"
TITLE = "erasure orchestrator"


def create_app(config: Config, catalogue_path: Path, *, secure_cookies: bool = True) -> FastAPI:
    catalogue = load_catalogue(catalogue_path)  # bad input stops `serve` before it listens

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(config)
        try:
            client = await connect_temporal(config)
            app.state.stack = Stack(services, client, catalogue, Operators(services.pool))
            yield
        finally:
            services.close()

    app = FastAPI(title=TITLE, version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.sessions = Sessions()
    app.state.failures = FailureLimit()
    app.state.secure_cookies = secure_cookies
    app.include_router(api.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _handlers(app)
    app.add_middleware(Edge)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            document["components"]["schemas"].update(api.ORDER_SCHEMAS)  # the order body's own models
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _handlers(app: FastAPI) -> None:
    @app.exception_handler(SignInNeeded)
    async def sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse("/sign-in", status_code=303)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(request: Request, exc: BadCsrf) -> Response:
        return PlainTextResponse("the form's CSRF token is missing or wrong: reload the page", status_code=403)

    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> Response:
        return problem(422, "bad input", f"{exc.field}: {exc.problem}", exc.field)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return problem(404, "not found", str(exc))

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return problem(403, "forbidden", str(exc))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return problem(409, "refused", str(exc))

    @app.exception_handler(ErasureError)
    async def failed(request: Request, exc: ErasureError) -> Response:
        return problem(503, "failed", str(exc))

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> Response:
        error = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "malformed"}
        field = ".".join(str(part) for part in error["loc"] if part not in ("body", "query", "path")) or "(body)"
        return problem(422, "bad input", f"{field}: {str(error['msg']).lower()}", field)

    @app.exception_handler(HTTPException)
    async def http(request: Request, exc: HTTPException) -> Response:
        headers = dict(exc.headers or {})
        return problem(exc.status_code, _title(exc.status_code), str(exc.detail), **headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # the type only: a message may quote a value from a store
        log.error("request failed", error=type(exc).__name__, path=request.scope.get("route_path", ""))
        return problem(500, "internal error", "the server failed; the operator's logs name the error's type")


def _title(status: int) -> str:
    titles = {
        400: "malformed body",
        401: "unauthorised",
        403: "forbidden",
        404: "not found",
        405: "method not allowed",
        415: "unsupported media type",
        429: "slow down",
    }
    return titles.get(status, "error")
