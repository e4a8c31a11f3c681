"""The dashboard: server-rendered pages and plain forms, signed in with a token into a session cookie.

Pages show what the ledger records (states, evidence levels, counts, events with their actors), never an
identifier: the ledger holds none. Every form posts the session's CSRF token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from domain.errors import InvalidInput
from domain.states import RequestState, TaskState
from erasure.web import actions
from erasure.web.actions import Forbidden, NotFound, Refused, Stack
from erasure.web.api import client_address
from erasure.web.auth import SESSION_COOKIE, SESSION_SECONDS, Session, csrf_matches
from stores.operators import Role
from workflows.request import APPROVE_UPDATE, CANCEL_UPDATE, MAX_REASON, REJECT_UPDATE, same_operator

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
SETTLED_TASKS = (TaskState.DONE, TaskState.NOT_APPLICABLE)  # what the progress bar counts as finished
# before anything is erased: what may still be cancelled
CANCELLABLE = (
    RequestState.RECEIVED,
    RequestState.AWAITING_REVIEW,
    RequestState.VERIFYING_AUTHORITY,
    RequestState.AWAITING_APPROVAL,
)
WAITING_FOR_A_PERSON = (RequestState.AWAITING_REVIEW, RequestState.AWAITING_APPROVAL)  # no refresh under a form


class SignInNeeded(Exception):
    """No session: the browser is sent to the sign-in page."""


class BadCsrf(Exception):
    """A form without its session's CSRF token: answered 403."""


def _stack(request: Request) -> Stack:
    stack: Stack = request.app.state.stack
    return stack


def session_of(request: Request) -> Session:
    session: Session | None = request.app.state.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        raise SignInNeeded()
    return session


SessionOf = Annotated[Session, Depends(session_of)]


def _checked(session: Session, csrf: str) -> None:
    if not csrf_matches(session, csrf):
        raise BadCsrf()


def _page(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(
        request,
        name,
        {"session": session, "operator": session.operator if session else None, "Role": Role, **context},
        status_code=status,
    )


@router.get("/")
def home() -> Response:
    return RedirectResponse("/requests", status_code=303)


@router.get("/sign-in")
def sign_in_page(request: Request) -> Response:
    return _page(request, "sign_in.html", None)


@router.post("/sign-in")
def sign_in(request: Request, token: Annotated[str, Form(max_length=200)]) -> Response:
    failures = request.app.state.failures
    address = client_address(request)
    if failures.blocked(address):
        return _page(request, "sign_in.html", None, 429, error="too many failed sign-ins: wait a minute")
    operator = _stack(request).operators.by_token(token.strip())
    if operator is None:
        failures.failed(address)
        return _page(request, "sign_in.html", None, 401, error="that token is not valid")
    session_id, _ = request.app.state.sessions.open(operator)
    response = RedirectResponse("/requests", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        httponly=True,
        secure=request.app.state.secure_cookies,
        samesite="strict",
        path="/",
    )
    return response


@router.post("/sign-out")
def sign_out(request: Request, session: SessionOf, csrf: Annotated[str, Form()] = "") -> Response:
    _checked(session, csrf)
    request.app.state.sessions.close(request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse("/sign-in", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/requests")
def requests_page(request: Request, session: SessionOf, state: str = "", kind: str = "") -> Response:
    try:
        rows = actions.list_requests(_stack(request), state or None, kind or None, False)
    except InvalidInput as exc:
        return _page(request, "requests.html", session, 422, rows=[], error=f"{exc.field}: {exc.problem}")
    return _page(request, "requests.html", session, rows=rows, state=state, kind=kind)


@router.get("/requests/new")
def new_page(request: Request, session: SessionOf) -> Response:
    return _page(request, "new.html", session, order="")


@router.post("/requests/new")
async def new(
    request: Request,
    session: SessionOf,
    order: Annotated[str, Form(max_length=100_000)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _checked(session, csrf)
    if not session.operator.may(Role.SUBMITTER):
        return _page(request, "new.html", session, 403, order="", error="submitting needs the role submitter")
    try:
        submission = await actions.submit_order(
            _stack(request), order.encode("utf-8"), session.operator, allow_past_deadline=False, force_new=False
        )
    except InvalidInput as exc:  # the order goes back to the one who wrote it, and to no one else
        return _page(request, "new.html", session, 422, order=order, error=f"{exc.field}: {exc.problem}")
    return RedirectResponse(f"/requests/{submission.request_id}", status_code=303)


@router.get("/requests/{request_id}")
async def request_page(request: Request, session: SessionOf, request_id: str) -> Response:
    return await _request_page(request, request_id, session)


async def _request_page(
    request: Request, request_id: str, session: Session, status: int = 200, error: str = ""
) -> Response:
    stack = _stack(request)
    report = await run_in_threadpool(actions.status, stack, request_id)
    groups: list[dict[str, Any]] = []
    if report.state == "awaiting_review" and session.operator.may(Role.REVIEWER):
        groups = (await actions.review_groups(stack, request_id)).get("groups", [])
    settled = sum(1 for s in report.systems if s.state in SETTLED_TASKS)
    preview = None
    if report.state == RequestState.AWAITING_APPROVAL:
        preview = await run_in_threadpool(actions.preview, stack, request_id)
    return _page(
        request,
        "request.html",
        session,
        status,
        report=report,
        groups=groups,
        error=error,
        settled=settled,
        preview=preview,
        own_request=preview is not None and same_operator(session.operator.name, preview.submitted_by),
        cancellable=report.state in CANCELLABLE and session.operator.may(Role.SUBMITTER, Role.APPROVER),
        max_reason=MAX_REASON,
        refresh=not (report.state.stopped or report.state.ended) and report.state not in WAITING_FOR_A_PERSON,
    )


@router.post("/requests/{request_id}/approve")
async def approve(request: Request, session: SessionOf, request_id: str, csrf: Annotated[str, Form()] = "") -> Response:
    return await _decide(request, session, request_id, APPROVE_UPDATE, "", csrf)


@router.post("/requests/{request_id}/reject")
async def reject(
    request: Request,
    session: SessionOf,
    request_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return await _decide(request, session, request_id, REJECT_UPDATE, reason, csrf)


@router.post("/requests/{request_id}/cancel")
async def cancel(
    request: Request,
    session: SessionOf,
    request_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return await _decide(request, session, request_id, CANCEL_UPDATE, reason, csrf)


async def _decide(request: Request, session: Session, request_id: str, update: str, reason: str, csrf: str) -> Response:
    """Approving and rejecting need the role approver, cancelling submitter or approver; four eyes are the
    action's to enforce, as for the API."""
    _checked(session, csrf)
    needed = (Role.SUBMITTER, Role.APPROVER) if update == CANCEL_UPDATE else (Role.APPROVER,)
    if not session.operator.may(*needed):
        roles = " or ".join(r.value for r in needed)
        return await _request_page(request, request_id, session, 403, error=f"to {update} needs the role {roles}")
    try:
        await actions.decide_request(_stack(request), request_id, update, reason, session.operator)
    except Forbidden as exc:
        return await _request_page(request, request_id, session, 403, error=str(exc))
    except (InvalidInput, Refused) as exc:
        return await _request_page(request, request_id, session, 422, error=_message(exc))
    return RedirectResponse(f"/requests/{actions.check_request_id(request_id)}", status_code=303)


@router.post("/requests/{request_id}/review")
async def review(
    request: Request,
    session: SessionOf,
    request_id: str,
    group: Annotated[str, Form(max_length=64)],
    decision: Annotated[str, Form(max_length=32)],
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _checked(session, csrf)
    if not session.operator.may(Role.REVIEWER):
        return await _request_page(request, request_id, session, 403, error="deciding needs the role reviewer")
    try:
        await actions.decide(_stack(request), request_id, group, decision, reason, session.operator)
    except (InvalidInput, Refused) as exc:
        return await _request_page(request, request_id, session, 422, error=_message(exc))
    return RedirectResponse(f"/requests/{actions.check_request_id(request_id)}", status_code=303)


@router.post("/requests/{request_id}/extend")
async def extend(
    request: Request,
    session: SessionOf,
    request_id: str,
    days: Annotated[int, Form(ge=1, le=365)],
    reason: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _checked(session, csrf)
    if not session.operator.may(Role.APPROVER):
        return await _request_page(request, request_id, session, 403, error="extending needs the role approver")
    try:
        await actions.extend(_stack(request), request_id, days, reason, session.operator)
    except (InvalidInput, Refused) as exc:
        return await _request_page(request, request_id, session, 422, error=_message(exc))
    return RedirectResponse(f"/requests/{actions.check_request_id(request_id)}", status_code=303)


@router.get("/holds")
def holds_page(request: Request, session: SessionOf, request_id: str = "") -> Response:
    return _page(request, "holds.html", session, request_id=request_id, placed="", released=None)


@router.post("/holds")
async def place_hold(
    request: Request,
    session: SessionOf,
    case: Annotated[str, Form(max_length=80)],
    request_id: Annotated[str, Form(max_length=40)] = "",
    subject_file: Annotated[UploadFile | None, File()] = None,
    systems: Annotated[str, Form(max_length=2000)] = "",
    categories: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Place a hold; an uploaded subject file is read once, pseudonymised, and never shown again."""
    _checked(session, csrf)
    if not session.operator.may(Role.APPROVER):
        return _holds_page(request, session, 403, error="placing a hold needs the role approver or admin")
    # a browser posts an empty file part when no file is chosen
    subject = await subject_file.read() if subject_file is not None and subject_file.filename else None
    try:
        hold_id = await run_in_threadpool(
            actions.hold, _stack(request), session.operator, case, request_id or None, subject, systems, categories
        )
    except InvalidInput as exc:
        return _holds_page(request, session, 422, error=_message(exc))
    return _holds_page(request, session, placed=hold_id)


@router.post("/holds/release")
async def release_hold(
    request: Request,
    session: SessionOf,
    hold_id: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _checked(session, csrf)
    if not session.operator.may(Role.APPROVER):
        return _holds_page(request, session, 403, error="releasing a hold needs the role approver or admin")
    try:
        resumed = await actions.release(_stack(request), hold_id, session.operator)
    except NotFound as exc:
        return _holds_page(request, session, 404, error=str(exc))
    return _holds_page(request, session, released=resumed)


def _holds_page(
    request: Request,
    session: Session,
    status: int = 200,
    error: str = "",
    placed: str = "",
    released: int | None = None,
) -> Response:
    return _page(request, "holds.html", session, status, request_id="", error=error, placed=placed, released=released)


@router.get("/requests/{request_id}/bundle")
def bundle(request: Request, session: SessionOf, request_id: str) -> Response:
    if not session.operator.may(Role.SUBMITTER, Role.AUDITOR):
        return Response("downloading the bundle needs the role submitter or auditor", status_code=403)
    data = actions.bundle(_stack(request), request_id)
    name = f"evidence-{actions.check_request_id(request_id)}.zip"
    return Response(
        data, media_type="application/zip", headers={"content-disposition": f'attachment; filename="{name}"'}
    )


@router.get("/signing-key.pem")
def signing_key(request: Request, session: SessionOf) -> Response:
    _, pem = actions.signing_key(_stack(request))
    return Response(
        pem,
        media_type="application/x-pem-file",
        headers={"content-disposition": 'attachment; filename="signing-key.pem"'},
    )


@router.get("/verify")
def verify_page(request: Request, session: SessionOf) -> Response:
    return _page(request, "verify.html", session, result=None)


@router.post("/verify")
async def verify(
    request: Request,
    session: SessionOf,
    bundle: Annotated[UploadFile, File()],
    trusted_key: Annotated[UploadFile, File()],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _checked(session, csrf)
    if not session.operator.may(Role.AUDITOR):
        return _page(request, "verify.html", session, 403, result=None, error="verifying needs the role auditor")
    try:
        result = await run_in_threadpool(actions.verify, await bundle.read(), await trusted_key.read())
    except InvalidInput as exc:
        return _page(request, "verify.html", session, 422, result=None, error=f"{exc.field}: {exc.problem}")
    return _page(request, "verify.html", session, 200 if result.verified else 422, result=result)


def _message(exc: Exception) -> str:
    if isinstance(exc, InvalidInput):
        return f"{exc.field}: {exc.problem}"
    return str(exc)
