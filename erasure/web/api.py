"""The JSON API under /api: bearer tokens, one role set per route, problems as RFC 9457 documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Path, Query, Request, Response, UploadFile
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from erasure.preview import Preview
from erasure.status import StatusReport
from erasure.web import actions
from erasure.web.actions import Stack
from erasure.web.edge import PROBLEM_RESPONSES
from stores.operators import Operator, Role
from stores.orders import Order
from workflows.request import APPROVE_UPDATE, CANCEL_UPDATE, MAX_REASON, REJECT_UPDATE

router = APIRouter(prefix="/api", responses=PROBLEM_RESPONSES)
ORDER_TYPES = ("application/json", "application/yaml")


def stack_of(request: Request) -> Stack:
    stack: Stack = request.app.state.stack
    return stack


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def bearer_operator(request: Request) -> Operator:
    """The operator whose token the request carries; failures count against the client's address."""
    failures = request.app.state.failures
    address = client_address(request)
    wait = failures.blocked(address)
    if wait:
        raise HTTPException(429, "too many failed sign-ins: try again later", headers={"Retry-After": f"{wait:.0f}"})
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else ""
    operator = stack_of(request).operators.by_token(presented) if presented else None
    if operator is None:
        if presented:  # a wrong token is a guess; no token at all is not
            failures.failed(address)
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return operator


def requires(*roles: Role) -> Callable[..., Operator]:
    def check(operator: Annotated[Operator, Depends(bearer_operator)]) -> Operator:
        if not operator.may(*roles):
            needed = " or ".join(r.value for r in roles)
            raise HTTPException(403, f"this needs the role {needed}")
        return operator

    return check


ANY_ROLE = tuple(Role)
AnyOperator = Annotated[Operator, Depends(requires(*ANY_ROLE))]
Submitter = Annotated[Operator, Depends(requires(Role.SUBMITTER))]
Reviewer = Annotated[Operator, Depends(requires(Role.REVIEWER))]
Approver = Annotated[Operator, Depends(requires(Role.APPROVER))]
Auditor = Annotated[Operator, Depends(requires(Role.AUDITOR))]
EvidenceReader = Annotated[Operator, Depends(requires(Role.SUBMITTER, Role.AUDITOR))]
Canceller = Annotated[Operator, Depends(requires(Role.SUBMITTER, Role.APPROVER))]
HoldKeeper = Annotated[Operator, Depends(requires(Role.APPROVER))]  # or admin, who may do everything


class SubmissionOut(BaseModel):
    request_id: str
    systems: list[str]
    not_applicable: list[str]
    existing: bool


class RequestRow(BaseModel):
    request_id: str
    kind: str
    state: str
    outcome: str | None
    deadline: str | None = Field(description="none while the deadline's clock waits for a guardian's authority")
    days_left: int | None = Field(description="days until the deadline; none once ended or without a deadline")
    days_overdue: int
    created_at: str


class Decision(BaseModel):
    group: str = Field(min_length=1, max_length=64)
    decision: str = Field(min_length=1, max_length=32)
    reason: str = Field(min_length=1, max_length=500)


class Approval(BaseModel):
    reason: str = Field(default="", max_length=MAX_REASON, description="optional; never an identifier")


class Refusal(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON, description="why, in one line; never an identifier")


class HoldPlaced(BaseModel):
    hold_id: str


class HoldReleased(BaseModel):
    resumed: int = Field(description="how many requests the hold stopped resume")


class ExtensionIn(BaseModel):
    days: int = Field(ge=1, le=365)
    reason: str = Field(min_length=1, max_length=500)


class Deadline(BaseModel):
    deadline: str


class Answer(BaseModel):
    result: str


class VerificationOut(BaseModel):
    verified: bool
    steps: list[str]
    failure: str | None
    request_id: str | None
    outcome: str | None
    tree_size: int | None


class Health(BaseModel):
    status: str


class SigningKey(BaseModel):
    keyid: str
    public_key_pem: str


def _order_schemas() -> dict[str, Any]:
    """The order's JSON schema and its nested models, as OpenAPI components (merged in by the app)."""
    schema = Order.model_json_schema(ref_template="#/components/schemas/{model}")
    return {**schema.pop("$defs", {}), "Order": schema}


ORDER_SCHEMAS = _order_schemas()
_ORDER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Order"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.get("/health", response_model=Health)
async def health(request: Request) -> Health:
    """Whether the server has its stores and Temporal client; asks for no token."""
    stack_of(request)
    return Health(status="ok")


@router.post("/requests", status_code=201, response_model=SubmissionOut, openapi_extra=_ORDER_BODY)
async def submit(
    request: Request,
    operator: Submitter,
    response: Response,
    allow_past_deadline: bool = False,
    force_new: bool = False,
) -> SubmissionOut:
    """Validate an order (JSON or YAML) as `erasure submit` does, store it and start its workflow.

    The same order again while its request is open answers 200 with that request's id."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ORDER_TYPES:
        raise HTTPException(415, f"expected a body of type {' or '.join(ORDER_TYPES)}, got another type")
    submission = await actions.submit_order(
        stack_of(request),
        await request.body(),
        operator,
        allow_past_deadline=allow_past_deadline,
        force_new=force_new,
    )
    if submission.existing:
        response.status_code = 200
    return SubmissionOut(**submission.__dict__)


@router.get("/requests", response_model=list[RequestRow])
def list_requests(
    request: Request,
    operator: AnyOperator,
    state: Annotated[str | None, Query(max_length=40)] = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    overdue: bool = False,
) -> list[dict[str, Any]]:
    """The most recent requests, overdue first, then by the nearest deadline."""
    return actions.list_requests(stack_of(request), state, kind, overdue)


@router.get("/requests/{request_id}", response_model=StatusReport)
def request_status(request: Request, operator: AnyOperator, request_id: str) -> StatusReport:
    """A row per system (state, evidence level, records before and after) and the request's events."""
    return actions.status(stack_of(request), request_id)


@router.get("/requests/{request_id}/review", response_model=dict[str, Any])
async def review(request: Request, request_id: str, operator: Reviewer) -> dict[str, Any]:
    """The groups awaiting a reviewer's decision: kind, source, why near, counts of each type; never a value."""
    return await actions.review_groups(stack_of(request), request_id)


@router.post("/requests/{request_id}/review", response_model=Answer)
async def decide(request: Request, request_id: str, decision: Decision, operator: Reviewer) -> Answer:
    """Decide a group; the operator is the reviewer the certificate names."""
    result = await actions.decide(
        stack_of(request), request_id, decision.group, decision.decision, decision.reason, operator
    )
    return Answer(result=result)


@router.get("/requests/{request_id}/preview", response_model=Preview)
def preview(request: Request, operator: AnyOperator, request_id: str) -> Preview:
    """What the request located before anything is erased (counts per system and location, near-matches), who
    submitted it, and the decisions taken."""
    return actions.preview(stack_of(request), request_id)


@router.post("/requests/{request_id}/approve", response_model=Answer, responses={403: PROBLEM_RESPONSES[403]})
async def approve(request: Request, request_id: str, approval: Approval, operator: Approver) -> Answer:
    """Approve a previewed request: it is then erased. The approver must not be the operator who submitted it."""
    return Answer(
        result=await actions.decide_request(stack_of(request), request_id, APPROVE_UPDATE, approval.reason, operator)
    )


@router.post("/requests/{request_id}/reject", response_model=Answer)
async def reject(request: Request, request_id: str, refusal: Refusal, operator: Approver) -> Answer:
    """Reject a previewed request: it ends `rejected` with the reason, nothing erased."""
    return Answer(
        result=await actions.decide_request(stack_of(request), request_id, REJECT_UPDATE, refusal.reason, operator)
    )


@router.post("/requests/{request_id}/cancel", response_model=Answer)
async def cancel(request: Request, request_id: str, refusal: Refusal, operator: Canceller) -> Answer:
    """Cancel a request before anything is erased: it ends `cancelled` with the reason."""
    return Answer(
        result=await actions.decide_request(stack_of(request), request_id, CANCEL_UPDATE, refusal.reason, operator)
    )


@router.post("/holds", status_code=201, response_model=HoldPlaced)
async def place_hold(
    request: Request,
    operator: HoldKeeper,
    case: Annotated[str, Form(max_length=80, description="the litigation hold's case reference")],
    request_id: Annotated[str | None, Form(max_length=40, description="hold this one request")] = None,
    subject_file: Annotated[
        UploadFile | None, File(description="or hold a subject: YAML shaped like an order's `subject`")
    ] = None,
    systems: Annotated[str, Form(max_length=2000, description="only these systems, separated by commas")] = "",
    categories: Annotated[str, Form(max_length=500, description="only these categories, separated by commas")] = "",
) -> HoldPlaced:
    """Place a legal hold on one request or on a subject; the subject's identifiers are kept only as keyed
    pseudonyms and never appear in the answer."""
    subject = await subject_file.read() if subject_file is not None else None
    hold_id = await run_in_threadpool(
        actions.hold, stack_of(request), operator, case, request_id or None, subject, systems, categories
    )
    return HoldPlaced(hold_id=hold_id)


@router.post("/holds/{hold_id}/release", response_model=HoldReleased)
async def release_hold(
    request: Request, operator: HoldKeeper, hold_id: Annotated[str, Path(max_length=40)]
) -> HoldReleased:
    """Release a legal hold: the requests it stopped resume and are certified anew."""
    return HoldReleased(resumed=await actions.release(stack_of(request), hold_id, operator))


@router.post("/requests/{request_id}/extend", response_model=Deadline)
async def extend(request: Request, request_id: str, extension: ExtensionIn, operator: Approver) -> Deadline:
    """Move the deadline, with the reason; the extension's event names the operator."""
    deadline = await actions.extend(stack_of(request), request_id, extension.days, extension.reason, operator)
    return Deadline(deadline=deadline)


@router.post("/requests/{request_id}/recipients/{recipient}/ack", response_model=Answer)
async def acknowledge(
    request: Request,
    operator: Approver,
    request_id: str,
    recipient: Annotated[str, Path(max_length=64)],
) -> Answer:
    """Record that a manual recipient of the data acknowledged the erasure (GDPR Art. 19)."""
    return Answer(result=await actions.acknowledge(stack_of(request), request_id, recipient, operator))


@router.get(
    "/requests/{request_id}/bundle",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}, "description": "the evidence bundle"}},
)
def bundle(request: Request, request_id: str, operator: EvidenceReader) -> Response:
    """The auditor's evidence bundle of a certified request."""
    data = actions.bundle(stack_of(request), request_id)
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="evidence-{actions.check_request_id(request_id)}.zip"'},
    )


@router.get("/signing-key", response_model=SigningKey)
def signing_key(request: Request, operator: AnyOperator) -> SigningKey:
    """The public key that signs receipts and checkpoints; hand it to an auditor by a separate channel."""
    keyid, pem = actions.signing_key(stack_of(request))
    return SigningKey(keyid=keyid, public_key_pem=pem.decode("ascii"))


@router.post("/verify", response_model=VerificationOut)
async def verify(
    bundle: Annotated[UploadFile, File(description="the evidence bundle (.zip)")],
    trusted_key: Annotated[
        UploadFile, File(description="the operator's Ed25519 public key (PEM), obtained separately")
    ],
    operator: Auditor,
) -> VerificationOut:
    """Check an uploaded bundle offline against a trusted key, as `erasure evidence verify` does."""
    verified = await run_in_threadpool(actions.verify, await bundle.read(), await trusted_key.read())
    return VerificationOut(**verified.__dict__)
