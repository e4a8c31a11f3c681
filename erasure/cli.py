"""The `erasure` command line. Errors of the project's own tree print one line; `--verbose` shows the traceback.

Exit status: 0 success, 1 failure, 2 bad input or configuration (nothing stored, nothing started), and for
`suppression check` only, 3: the identifier is not on the suppression list.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from domain.errors import ErasureError, InvalidInput
from domain.model import IdentifierType
from erasure.config import Config
from evidence.errors import VerificationError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Erase a child's records everywhere, and prove it.")
dev_app = typer.Typer(no_args_is_help=True, help="The embedded development stack.")
evidence_app = typer.Typer(no_args_is_help=True, help="Evidence bundles: export and offline verification.")
suppression_app = typer.Typer(no_args_is_help=True, help="The suppression list of erased subjects.")
codec_app = typer.Typer(no_args_is_help=True, help="Keys of the Temporal payload codec.")
db_app = typer.Typer(no_args_is_help=True, help="The ledger's database.")
recipients_app = typer.Typer(no_args_is_help=True, help="Recipients of the data, told of an erasure (Art. 19).")
hold_app = typer.Typer(no_args_is_help=True, help="Legal holds: erasure stops where one is placed, until released.")
operator_app = typer.Typer(no_args_is_help=True, help="Operators of the HTTP API and the dashboard.")
app.add_typer(dev_app, name="dev")
app.add_typer(evidence_app, name="evidence")
app.add_typer(suppression_app, name="suppression")
app.add_typer(codec_app, name="codec")
app.add_typer(db_app, name="db")
app.add_typer(recipients_app, name="recipients")
app.add_typer(hold_app, name="hold")
app.add_typer(operator_app, name="operator")

# Off a terminal (CI, a pipe) rich would fold tables at 80 columns: give them room instead.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
_state = {"verbose": False}

DEFAULT_CATALOGUE = Path("examples/systems.yaml")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks.")] = False) -> None:
    _state["verbose"] = verbose


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except InvalidInput as exc:
        _fail(exc, 2)
    except VerificationError as exc:
        err.print(f"[red]verification failed:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        _fail(exc, 1, printed=True)
    except ErasureError as exc:
        _fail(exc, 1)


def _fail(exc: Exception, code: int, printed: bool = False) -> None:
    if _state["verbose"]:
        err.print_exception()
    elif not printed:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _config(component: str, *, read_stack_file: bool = True) -> Config:
    from erasure.logs import configure

    config = Config.from_env(read_stack_file=read_stack_file)
    configure(config.logs_dir, component)
    return config


def _services(config: Config) -> Any:
    from erasure.services import Services

    with _ledger_errors():
        return Services.open(config)


def _reader(config: Config) -> Any:
    """The ledger opened read-only: no migration, no new key, no write."""
    from erasure.services import LedgerReader

    with _ledger_errors():
        return LedgerReader.open(config)


@contextmanager
def _ledger_errors() -> Iterator[None]:
    try:
        yield
    except ErasureError:
        raise
    except Exception as exc:  # psycopg's message may hold the password of a DSN: name the type only
        raise ErasureError(
            f"cannot open the ledger database ({type(exc).__name__}): is the stack up? try `erasure dev up`"
        ) from None


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _client(config: Config) -> Any:
    from erasure.services import connect_temporal

    try:
        return await connect_temporal(config)
    except RuntimeError:
        raise ErasureError(
            f"cannot reach Temporal at {config.temporal_address}: is the stack up? try `erasure dev up`"
        ) from None


# -- requests ---------------------------------------------------------------------------------------------------


@app.command()
def submit(
    order: Annotated[Path, typer.Argument(help="The order file (YAML).")],
    catalogue: Annotated[Path, typer.Option(help="The catalogue of systems.")] = DEFAULT_CATALOGUE,
    wait: Annotated[bool, typer.Option(help="Wait for the certificate and print the outcome.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    allow_past_deadline: Annotated[
        bool, typer.Option(help="Accept an order whose deadline has already passed (recorded with the request).")
    ] = False,
    force_new: Annotated[
        bool, typer.Option("--force-new", help="Start a new request even if this order's request is still open.")
    ] = False,
) -> None:
    """Validate an order, store it and start its workflow; prints the request id (the open request's, if the same
    order was submitted before)."""
    from erasure.intake import submit as do_submit
    from erasure.intake import validate
    from stores.class_orders import is_class_order

    if is_class_order(order):
        _submit_class(order, catalogue, wait=wait, timeout=timeout, as_json=as_json)
        return
    with _errors():
        # bad input stops here: nothing stored, nothing started
        parsed, systems = validate(order, catalogue, allow_past_deadline=allow_past_deadline)
        config = _config("cli")

        async def go() -> Any:
            client = await _client(config)
            services = _services(config)
            try:
                return await do_submit(services, client, parsed, systems, force_new=force_new)
            finally:
                services.close()

        submission = _run(go())
        if submission.existing:
            err.print("[yellow]this order's request is still open: that is its id (--force-new starts another)")
        if not wait:
            if as_json:
                out.print_json(json.dumps(submission.__dict__))
            else:
                out.print(submission.request_id)
            _exit_now(0)
        _show_status(config, submission.request_id, wait=True, timeout=timeout, as_json=as_json)
    _exit_now(0)


def _submit_class(order: Path, catalogue: Path, *, wait: bool, timeout: float, as_json: bool) -> None:
    """A class order: its subjects resolved once (a file, or a declared class at a snapshot) and sealed, then its
    workflow started (erasure/class_intake.py)."""
    from erasure.class_intake import resolve_class, submit_class, validate_class

    with _errors():
        parsed, systems = validate_class(order, catalogue)  # a bad order or subject file stops here
        config = _config("cli")

        async def go() -> Any:
            client = await _client(config)
            services = _services(config)
            try:
                resolved = resolve_class(order, parsed, systems)
                return await submit_class(services, client, parsed, systems, resolved)
            finally:
                services.close()

        submission = _run(go())
        if not wait:
            if as_json:
                out.print_json(json.dumps(submission.__dict__))
            else:
                out.print(submission.request_id)
            _exit_now(0)
        _show_status(config, submission.request_id, wait=True, timeout=timeout, as_json=as_json)
    _exit_now(0)


def _exit_now(code: int) -> None:
    """Exit without the interpreter's teardown, once everything is written: the Temporal client's threads can abort
    it (temporalio/sdk-python#300), and a caller retrying on that failure would submit the order twice."""
    import logging
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@app.command()
def status(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    wait: Annotated[bool, typer.Option(help="Wait until the request is certified.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A request's state: a row per system with its evidence level and records before and after."""
    with _errors():
        _show_status(_config("cli"), request_id, wait=wait, timeout=timeout, as_json=as_json)


def _show_status(config: Config, request_id: str, *, wait: bool, timeout: float, as_json: bool) -> None:
    from erasure.status import print_status, request_status

    _check_uuid(request_id)
    services = _reader(config)
    try:
        deadline = time.monotonic() + timeout
        report = request_status(services.ledger, request_id)
        with _progress_bar(wait and not as_json and bool(report.progress)) as show:
            while wait and not (report.state.stopped or report.state.ended) and report.state not in _PERSON_MUST_ACT:
                show(report)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
                report = request_status(services.ledger, request_id)
            show(report)
    finally:
        services.close()
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        print_status(out, report)
    if wait and report.state == "awaiting_review":
        err.print(f"[yellow]awaiting review: a person must decide, see `erasure review {request_id}`[/yellow]")
        raise typer.Exit(1)
    if wait and report.state == "awaiting_approval":
        err.print(
            f"[yellow]awaiting approval by a second operator: see `erasure preview {request_id}`, then "
            f"`erasure approve {request_id}` (or reject, or cancel)[/yellow]"
        )
        raise typer.Exit(1)
    if wait and report.state.ended and not report.state.settled:
        err.print(f"[yellow]{report.state}: nothing was erased, see the request's {report.state} event[/yellow]")
        raise typer.Exit(1)
    if wait and report.state == "failed":
        err.print("[red]failed without a certificate: see the request's failed event[/red]")
        raise typer.Exit(1)
    if wait and report.state == "cancelled":
        err.print("[yellow]cancelled: see the request's cancelled event[/yellow]")
        raise typer.Exit(1)
    if wait and not report.state.stopped:
        err.print(f"[yellow]still {report.state} after {timeout:g} s[/yellow]")
        raise typer.Exit(1)


@contextmanager
def _progress_bar(live: bool) -> Iterator[Any]:
    """A class order's progress on standard error, a bar per system; a function that shows a status report."""
    if not live:
        yield lambda report: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bars: dict[str, Any] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[eta]}"))
    with Progress(*columns, console=err, transient=False) as progress:

        def show(report: Any) -> None:
            for p in report.progress:
                eta = "" if p.seconds_left is None else f"{p.subjects_per_s:g} subjects/s, {p.seconds_left:.0f} s left"
                if p.system not in bars:
                    bars[p.system] = progress.add_task(p.system, total=p.subjects, eta=eta)
                progress.update(bars[p.system], completed=p.subjects_done, eta=eta)

        yield show


_PERSON_MUST_ACT = ("awaiting_review", "awaiting_approval", "rejected", "cancelled")


def _check_uuid(value: str) -> None:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        raise InvalidInput("arguments", "request_id", "is not a request id (a UUID)") from None


@app.command(name="list")
def list_requests(
    state: Annotated[str | None, typer.Option(help="Only requests in this state, e.g. executing.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only requests of this kind, e.g. court_order.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only requests past their deadline.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The most recent requests, with the days each open one is past its deadline."""
    from domain.deadlines import days_overdue
    from domain.states import RequestState
    from erasure.status import today
    from stores.ledger import to_json
    from stores.orders import RequestKind

    with _errors():
        wanted_state = _choice(RequestState, state, "--state")
        wanted_kind = _choice(RequestKind, kind, "--kind")
        services = _reader(_config("cli"))
        try:
            records = services.ledger.requests(
                state=wanted_state, kind=wanted_kind, due_before=today() if overdue else None
            )
        finally:
            services.close()
        columns = ("request_id", "kind", "state", "outcome", "deadline", "days_overdue", "created_at")
        rows = [
            {**to_json(r), "days_overdue": days_overdue(r.deadline, RequestState(r.state), today())} for r in records
        ]
        rows = [{c: row[c] for c in columns} for row in rows]
        if as_json:
            out.print_json(json.dumps(rows))
            return
        table = Table()
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(row[c] or "-") for c in columns))
        out.print(table)


def _choice(values: Any, given: str | None, option: str) -> Any:
    """One of an enum's values, or bad input naming the option and the values it takes."""
    if given is None:
        return None
    try:
        return values(given)
    except ValueError:
        allowed = ", ".join(repr(v.value) for v in values)
        raise InvalidInput("arguments", option, f"expected one of {allowed}, got another value") from None


@app.command()
def shred(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    yes_destroy_the_key: Annotated[
        bool,
        typer.Option("--yes-destroy-the-key", help="Confirm: the request's identifiers become unreadable for good."),
    ] = False,
) -> None:
    """Destroy a certified request's data key now, instead of after the grace period."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from domain.states import RequestState
    from workflows.request import SHRED_NOW_UPDATE

    with _errors():
        _check_uuid(request_id)
        if not yes_destroy_the_key:
            raise InvalidInput("arguments", "--yes-destroy-the-key", "is required: shredding cannot be undone")
        config = _config("cli")
        reader = _reader(config)
        try:
            record = reader.ledger.request(request_id)
        finally:
            reader.close()
        if record is None:
            raise ErasureError(f"no request {request_id} in the ledger")
        state = RequestState(record.state)
        if state == RequestState.CLOSED:
            raise ErasureError(f"request {request_id} is already shredded: its data key is destroyed")
        if state != RequestState.CERTIFIED:
            raise ErasureError(f"cannot shred while the request is {state}: the certificate comes first")

        async def go() -> str:
            client = await _client(config)
            try:
                result: str = await client.get_workflow_handle(request_id).execute_update(SHRED_NOW_UPDATE)
            except WorkflowUpdateFailedError as exc:
                raise ErasureError(f"cannot shred now: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot shred now: the request's workflow does not answer ({exc.status.name.lower()}): it is "
                    "already shredded, or was never started; see `erasure status`"
                ) from None
            return result

        out.print(_run(go()))
    _exit_now(0)


@app.command()
def review(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    group: Annotated[str | None, typer.Option(help="The group to decide on; without it, list the groups.")] = None,
    decision: Annotated[
        str | None, typer.Option(help="include or exclude (a near-match), confirm_nothing_found (nothing found).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why: it goes into the certificate, so never an identifier.")] = "",
    reviewer: Annotated[
        str | None, typer.Option(help="Who decides (default: $ERASURE_REVIEWER, else the OS user).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a request awaits a reviewer's decision on (near-matches, a subject nobody knows), or record a decision."""
    import getpass
    import os
    import re

    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.contracts import ReviewDecision
    from workflows.request import REVIEW_QUERY, REVIEW_UPDATE

    with _errors():
        _check_uuid(request_id)
        if group is not None:
            if decision not in ("include", "exclude", "confirm_nothing_found"):
                raise InvalidInput("arguments", "--decision", "must be include, exclude or confirm_nothing_found")
            if not reason.strip():
                raise InvalidInput("arguments", "--reason", "is required: the certificate records why")
            if "@" in reason or re.search(r"\d{5}", reason):
                raise InvalidInput(
                    "arguments", "--reason", "must not hold an address or a long number: say why, not who"
                )
        config = _config("cli")
        who = reviewer or os.environ.get("ERASURE_REVIEWER") or getpass.getuser()

        async def go() -> Any:
            client = await _client(config)
            handle = client.get_workflow_handle(request_id)
            try:
                if group is None:
                    return await handle.query(REVIEW_QUERY)
                chosen = ReviewDecision(group=group, decision=decision or "", reason=reason, reviewer=who)
                return await handle.execute_update(REVIEW_UPDATE, chosen, result_type=str)
            except WorkflowUpdateFailedError as exc:
                raise InvalidInput("arguments", "--group", f"decision refused: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot review: the request's workflow does not answer ({exc.status.name.lower()}); "
                    "see `erasure status`"
                ) from None

        answer = _run(go())
        if group is not None:
            out.print(answer)
        elif as_json:
            out.print_json(json.dumps(answer))
        else:
            _print_review(answer)


def _print_review(answer: dict[str, Any]) -> None:
    groups = answer.get("groups", [])
    out.print(f"phase: {answer.get('phase')}; {len(groups)} group(s) to decide")
    table = Table()
    for column in ("group", "kind", "source", "why near", "identifiers", "decision"):
        table.add_column(column)
    for g in groups:
        table.add_row(
            g["group"],
            g["kind"],
            g["source"] or "-",
            ", ".join(f"{kind}: {rule}" for kind, rule in g["rules"].items()) or "-",
            ", ".join(f"{n} {kind}" for kind, n in g["counts"].items()) or "-",
            g.get("decision") or "pending",
        )
    out.print(table)


@app.command()
def extend(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    days: Annotated[int, typer.Option(help="Days to add to the deadline.")],
    reason: Annotated[str, typer.Option(help="Why, in one line: recorded with the extension, so never an identifier.")],
) -> None:
    """Extend a request's deadline, with its reason; recorded as an event with the operator's name."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.contracts import Extension
    from workflows.request import EXTEND_UPDATE, extension_problem

    with _errors():
        _check_uuid(request_id)
        config = _config("cli")
        extension = Extension(days=days, reason=reason, actor=config.operator)
        problem = extension_problem(extension)
        if problem:
            field, _, message = problem.partition(": ")
            raise InvalidInput("arguments", f"--{field}", message)

        async def go() -> str:
            client = await _client(config)
            try:
                deadline: str = await client.get_workflow_handle(request_id).execute_update(EXTEND_UPDATE, extension)
            except WorkflowUpdateFailedError as exc:
                raise ErasureError(f"cannot extend: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot extend: the request's workflow does not answer ({exc.status.name.lower()}); "
                    "see `erasure status`"
                ) from None
            return deadline

        out.print(f"deadline {_run(go())}")


@recipients_app.command("ack")
def recipients_ack(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    recipient: Annotated[str, typer.Option(help="The recipient's name in the catalogue.")],
) -> None:
    """Record that a manual recipient acknowledged the erasure; the operator's name is recorded with it."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.contracts import Acknowledgement
    from workflows.request import ACK_RECIPIENT_UPDATE

    with _errors():
        _check_uuid(request_id)
        config = _config("cli")
        ack = Acknowledgement(recipient=recipient, actor=config.operator)

        async def go() -> str:
            client = await _client(config)
            try:
                answer: str = await client.get_workflow_handle(request_id).execute_update(ACK_RECIPIENT_UPDATE, ack)
            except WorkflowUpdateFailedError as exc:
                raise InvalidInput("arguments", "--recipient", f"acknowledgement refused: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot acknowledge: the request's workflow does not answer ({exc.status.name.lower()}); "
                    "see `erasure status`"
                ) from None
            return answer

        out.print(_run(go()), highlight=False)


@app.command(name="verify-authority")
def verify_authority(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    method: Annotated[
        str,
        typer.Option(help="How: document_check, verified_parental_consent, payment_card_check or court_order."),
    ],
    relationship: Annotated[str, typer.Option(help="The guardian's: parent, legal_guardian or other_with_authority.")],
) -> None:
    """Record that a guardian's authority is verified, by the operator; the waiting request then proceeds."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.contracts import AuthorityVerification
    from workflows.request import VERIFY_AUTHORITY_UPDATE, verification_problem

    with _errors():
        _check_uuid(request_id)
        config = _config("cli")
        verification = AuthorityVerification(method=method, relationship=relationship, verifier=config.operator)
        problem = verification_problem(verification)
        if problem:
            field, _, message = problem.partition(": ")
            raise InvalidInput("arguments", f"--{field}" if field != "verifier" else "ERASURE_OPERATOR", message)

        async def go() -> str:
            client = await _client(config)
            handle = client.get_workflow_handle(request_id)
            try:
                deadline: str = await handle.execute_update(VERIFY_AUTHORITY_UPDATE, verification, result_type=str)
            except WorkflowUpdateFailedError as exc:
                raise ErasureError(f"cannot verify authority: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot verify authority: the request's workflow does not answer ({exc.status.name.lower()}); "
                    "see `erasure status`"
                ) from None
            return deadline

        deadline = _run(go())
        out.print(f"authority verified by {escape(config.operator)}; deadline {deadline or '-'}")
    _exit_now(0)


@app.command()
def preview(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a request located before anything is erased: records per system and location, and the near-matches
    identity resolution found; who submitted it (its approver must be someone else)."""
    from erasure.preview import print_preview, request_preview

    with _errors():
        _check_uuid(request_id)
        services = _reader(_config("cli"))
        try:
            shown = request_preview(services.ledger, request_id)
        finally:
            services.close()
        if as_json:
            out.print_json(json.dumps(shown.to_json()))
        else:
            print_preview(out, shown)


@app.command()
def approve(request_id: Annotated[str, typer.Argument(help="The request id.")]) -> None:
    """Approve a previewed request as a second operator ($ERASURE_OPERATOR, else the OS user): it is then erased."""
    from workflows.request import APPROVE_UPDATE

    _decide(request_id, APPROVE_UPDATE, "approve", reason="")


@app.command()
def reject(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    reason: Annotated[str, typer.Option(help="Why, in one line: recorded and signed, so never an identifier.")],
) -> None:
    """Reject a previewed request: it ends `rejected` with the reason, nothing erased."""
    from workflows.request import REJECT_UPDATE

    _decide(request_id, REJECT_UPDATE, "reject", reason=reason)


@app.command()
def cancel(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    reason: Annotated[str, typer.Option(help="Why, in one line: recorded and signed, so never an identifier.")],
) -> None:
    """Cancel a request before anything is erased: it ends `cancelled` with the reason."""
    from workflows.request import CANCEL_UPDATE

    _decide(request_id, CANCEL_UPDATE, "cancel", reason=reason)


def _decide(request_id: str, update: str, verb: str, *, reason: str) -> None:
    """An operator's decision through the workflow's update: its validator refuses what may not be decided."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.contracts import OperatorDecision
    from workflows.request import decision_problem

    with _errors():
        _check_uuid(request_id)
        config = _config("cli")
        decision = OperatorDecision(actor=config.operator, reason=reason)
        problem = decision_problem(decision, need_reason=update != "approve")
        if problem:
            field, _, message = problem.partition(": ")
            raise InvalidInput("arguments", f"--{field}", message)

        async def go() -> str:
            client = await _client(config)
            try:
                answer: str = await client.get_workflow_handle(request_id).execute_update(
                    update, decision, result_type=str
                )
            except WorkflowUpdateFailedError as exc:
                raise ErasureError(f"cannot {verb}: {exc.cause}") from None
            except RPCError as exc:
                raise ErasureError(
                    f"cannot {verb}: the request's workflow does not answer ({exc.status.name.lower()}); "
                    "see `erasure status`"
                ) from None
            return answer

        out.print(_run(go()), highlight=False)
    _exit_now(0)


# -- processes --------------------------------------------------------------------------------------------------


@app.command()
def worker() -> None:
    """Run a worker: the workflows and activities, until SIGTERM."""
    from erasure.worker import run_worker

    with _errors():  # the worker migrates the ledger before it starts
        _run(run_worker(_config("worker")))


@app.command(name="codec-server")
def codec_server(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 7242,
    ui_origin: Annotated[
        str, typer.Option(help="The Temporal UI's origin, allowed by CORS.")
    ] = "http://127.0.0.1:8233",
) -> None:
    """Serve /encode and /decode for the Temporal UI and CLI, to callers with the bearer token only.

    The token is ERASURE_CODEC_TOKEN's value.
    """
    import uvicorn

    from erasure.codec_server import create_app
    from stores.codec import CodecKeys

    with _errors():
        config = _config("codec-server")
        if not config.codec_token:
            raise InvalidInput("environment", "ERASURE_CODEC_TOKEN", "must hold the bearer token callers must present")
        uvicorn.run(
            create_app(CodecKeys(config.keys_dir).codec(), config.codec_token, [ui_origin]),
            host=host,
            port=port,
            log_level="warning",
        )


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 7243,
    catalogue: Annotated[Path, typer.Option(help="The catalogue of systems orders are checked against.")] = (
        DEFAULT_CATALOGUE
    ),
    insecure_cookies: Annotated[
        bool, typer.Option(help="Session cookies without Secure, for plain HTTP on loopback only.")
    ] = False,
) -> None:
    """Serve the HTTP API (/api, OpenAPI at /openapi.json) and the dashboard, on the CLI's stores and Temporal."""
    import uvicorn

    from erasure.web.app import create_app

    with _errors():
        if insecure_cookies and host not in ("127.0.0.1", "localhost", "::1"):
            raise InvalidInput("arguments", "--insecure-cookies", "is for loopback only: serve HTTPS elsewhere")
        application = create_app(_config("serve"), catalogue, secure_cookies=not insecure_cookies)
        # no access log: the operator's own log line per action is enough, and a URL is nobody's business
        uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


@operator_app.command("add")
def operator_add(
    name: Annotated[str, typer.Argument(help="A short name for the operator (a role or handle, not an email).")],
    role: Annotated[list[str], typer.Option(help="submitter, approver, reviewer, auditor or admin; repeatable.")],
) -> None:
    """Add an operator and print their token, once: only its hash is stored."""
    from stores.operators import Operators, Role

    with _errors():
        roles = [_choice(Role, r, "--role") for r in role]
        services = _services(_config("cli"))
        try:
            operator, token = Operators(services.pool).add(name, roles)
        finally:
            services.close()
        err.print(f"operator {operator.name} ({', '.join(sorted(roles))}): the token below is shown once")
        out.print(token, highlight=False, soft_wrap=True)


@codec_app.command("rotate")
def codec_rotate() -> None:
    """Make a new current codec key; older keys stay to decrypt older payloads. Restart workers afterwards."""
    from stores.codec import CodecKeys

    with _errors():
        out.print(f"new codec key {CodecKeys(_config('cli').keys_dir).rotate()}")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the ledger's pending migrations (`dev up` and the worker's start do this too)."""
    from erasure.services import migrate_ledger

    with _errors(), _ledger_errors():
        applied = migrate_ledger(_config("cli"))
        out.print(f"applied: {', '.join(applied)}" if applied else "the ledger is up to date", soft_wrap=True)


@dev_app.command("up")
def dev_up() -> None:
    """Start the stack in the background, with all state under $ERASURE_HOME."""
    from erasure import devstack

    with _errors():
        stack = devstack.up(_config("dev", read_stack_file=False))
        _print_stack(stack.report(), as_json=False)


@dev_app.command("down")
def dev_down() -> None:
    """Stop exactly what `dev up` started."""
    from erasure import devstack

    with _errors():
        stopped = devstack.down(Config.from_env().home)
        out.print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@dev_app.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Each part of the stack, and where the stores are (for an auditor's own tools)."""
    from erasure import devstack

    with _errors():
        home = Config.from_env().home
        stack = devstack.Stack.load(home)
        if stack is None:
            report: dict[str, Any] = {
                "erasure_home": str(home),
                "parts": {},
                "temporal_address": None,
                "temporal_ui": None,
                "database_url": None,
            }
        else:
            report = stack.report()
        _print_stack(report, as_json=as_json)


def _print_stack(report: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(report))
        return
    table = Table(show_header=False)
    for key in (
        "erasure_home",
        "temporal_address",
        "temporal_ui",
        "database_url",
        "s3_endpoint",
        "emulators_url",
        "codec_server",
        "dashboard",
    ):
        table.add_row(key, str(report.get(key) or "-"))
    for name, state in report.get("parts", {}).items():
        table.add_row(f"part: {name}", state)
    out.print(table)


@app.command()
def demo() -> None:
    """The whole job on the embedded stack: a court order for a child on a fictional video app."""
    from erasure.demo import run_demo

    with _errors():
        raise typer.Exit(0 if run_demo(_config("demo"), out) else 1)


# -- evidence ---------------------------------------------------------------------------------------------------


@evidence_app.command("export")
def evidence_export(
    request_id: Annotated[str, typer.Argument(help="The request id.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The bundle to write (.zip).")],
    public_key: Annotated[Path | None, typer.Option(help="Also write the signing public key here.")] = None,
    since: Annotated[
        list[Path] | None,
        typer.Option(
            help="A checkpoint the auditor holds (from an earlier bundle): "
            "the bundle proves the log only grew since; repeatable."
        ),
    ] = None,
) -> None:
    """Write the auditor's bundle: certificate, receipts, proofs, checkpoint, keys, report."""
    from erasure.export import export_bundle, public_key_file

    with _errors():
        _check_uuid(request_id)
        for path, option in ((output, "--output"), (public_key, "--public-key")):
            if path is not None and not path.parent.is_dir():
                raise InvalidInput(str(path), option, "its folder does not exist")
        held = [_read_text(p) for p in since or []]
        services = _services(_config("cli"))
        try:
            bundle = export_bundle(services, request_id, output, since=held)
            if public_key is not None:
                public_key_file(services, public_key)
        finally:
            services.close()
        out.print(f"wrote {output} ({len(bundle.receipts)} receipts)")


@evidence_app.command("verify")
def evidence_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (.zip).")],
    trusted_key: Annotated[
        list[Path] | None, typer.Option(help="The operator's public key (PEM), obtained separately; repeatable.")
    ] = None,
    trusted_keyid: Annotated[
        list[str] | None,
        typer.Option(help="The operator's key id (64 hex), obtained separately; pins a key in the bundle; repeatable."),
    ] = None,
    trust_bundled_key: Annotated[
        bool, typer.Option(help="Trust the bundle's own keys: checks integrity only, not who signed.")
    ] = False,
    previous_checkpoint: Annotated[Path | None, typer.Option(help="A checkpoint seen before.")] = None,
) -> None:
    """Check a bundle offline against the operator's key; exit 0 only if every check passes."""
    from evidence.keys import load_public_key_pem
    from evidence.verify import verify_bundle

    with _errors():
        keys = [load_public_key_pem(_read(p)) for p in trusted_key or []]
        keyids = [_checked_keyid(k) for k in trusted_keyid or []]
        previous = _read_text(previous_checkpoint) if previous_checkpoint else None
        report = verify_bundle(
            bundle,
            trusted_keys=keys,
            trusted_keyids=keyids,
            unsafe_trust_bundled_keys=trust_bundled_key,
            previous_checkpoint=previous,
        )
        for line in report.checks:
            out.print(f"[green]ok[/green] {line}", highlight=False)
        if report.keys_from_bundle:
            err.print(
                "[yellow]warning:[/yellow] --trust-bundled-key: this checked the bundle's integrity only; whoever "
                "made the bundle chose its keys, so nothing here shows who signed it"
            )
        out.print(
            f"bundle verified: request {report.request_id}, outcome {report.outcome}, log size {report.tree_size}"
        )
        for earlier in report.superseded:
            out.print(
                f"certificate {earlier.number} (sha256:{earlier.sha256}, {earlier.outcome}, issued "
                f"{earlier.issued_at}) is superseded"
            )
        if report.superseded:
            out.print(
                f"certificate {len(report.superseded) + 1} is current: it supersedes certificate sha256:"
                f"{report.supersedes}, issued while a legal hold stopped some systems"
            )


@evidence_app.command("verify-proof")
def evidence_verify_proof(
    proof: Annotated[Path, typer.Argument(help="A child's proof (JSON), one system's.")],
    trusted_key: Annotated[
        list[Path], typer.Option(help="The operator's public key (PEM), obtained separately; repeatable.")
    ],
    pseudonym: Annotated[
        str | None, typer.Option(help="The child's pseudonym (64 hex) the operator gave: the proof must be about it.")
    ] = None,
) -> None:
    """Check one child's proof of a class order offline; exit 0 only if every step passes."""
    import re

    from evidence.child_proof import verify_child_proof
    from evidence.keys import load_public_key_pem

    with _errors():
        keys = [load_public_key_pem(_read(p)) for p in trusted_key]
        if pseudonym is not None and not re.fullmatch(r"[0-9a-f]{64}", pseudonym):
            raise InvalidInput("arguments", "--pseudonym", "is not a pseudonym (64 lower-case hex characters)")
        child = bytes.fromhex(pseudonym) if pseudonym is not None else None
        report = verify_child_proof(_read(proof), keys, pseudonym=child)
        for line in report.checks:
            out.print(f"[green]ok[/green] {line}", highlight=False)
        out.print(
            f"proof verified: request {report.request_id}, system {report.system}, batch {report.batch} of "
            f"{report.batch_subjects} subjects, evidence level {report.evidence_level}, log size {report.tree_size}"
        )


@evidence_app.command("prove")
def evidence_prove(
    request_id: Annotated[str, typer.Argument(help="The class order's request id.")],
    email: Annotated[bool, typer.Option("--email", help="The identifier is an email address.")] = False,
    phone: Annotated[bool, typer.Option("--phone", help="The identifier is a phone number.")] = False,
    user_id: Annotated[bool, typer.Option("--user-id", help="The identifier is a user id.")] = False,
    device_id: Annotated[bool, typer.Option("--device-id", help="The identifier is a device id.")] = False,
    advertising_id: Annotated[
        bool, typer.Option("--advertising-id", help="The identifier is an advertising id.")
    ] = False,
    username: Annotated[bool, typer.Option("--username", help="The identifier is a username.")] = False,
    from_file: Annotated[
        Path | None, typer.Option(help="Read the identifier from this file (mode 0600) instead of standard input.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Write <system>.proof.json here instead of printing JSON lines.")
    ] = None,
) -> None:
    """Prove one child of a class order was erased: one proof per system, for `erasure evidence verify-proof`.

    The identifier is read from standard input (without echo on a terminal) or from a 0600 file, never from the
    command line: `erasure evidence prove ID --email < address.txt`. Exit 1 if it is not a subject of the class.
    """
    from domain.identifiers import problem
    from erasure.prove import prove_child

    with _errors():
        _check_uuid(request_id)
        chosen = {
            IdentifierType.EMAIL: email,
            IdentifierType.PHONE: phone,
            IdentifierType.USER_ID: user_id,
            IdentifierType.DEVICE_ID: device_id,
            IdentifierType.ADVERTISING_ID: advertising_id,
            IdentifierType.USERNAME: username,
        }
        kinds = [kind for kind, given in chosen.items() if given]
        if len(kinds) != 1:
            raise InvalidInput(
                "arguments",
                "--email/--phone/--user-id/--device-id/--advertising-id/--username",
                f"expected one type, got {len(kinds)}",
            )
        if out_dir is not None and not out_dir.is_dir():
            raise InvalidInput(str(out_dir), "--out", "is not a folder")
        value = _identifier(from_file)
        found = problem(kinds[0], value)
        if found:
            raise InvalidInput(str(from_file or "standard input"), "identifier", found)
        services = _services(_config("cli"))
        try:
            made = prove_child(services, request_id, kinds[0], value)
        finally:
            services.close()
        if out_dir is None:
            for document in made.proofs.values():
                sys.stdout.write(document.decode("utf-8") + "\n")
            return
        for system, document in made.proofs.items():
            path = out_dir / f"{system}.proof.json"
            path.write_bytes(document)
            out.print(f"wrote {path}", highlight=False)
        out.print(f"the child's pseudonym (for verify-proof --pseudonym): {made.pseudonym.hex()}", highlight=False)


def _checked_keyid(value: str) -> str:
    import re

    if not re.fullmatch(r"[0-9a-f]{64}", value):
        raise InvalidInput("arguments", "--trusted-keyid", "is not a key id (64 lower-case hex characters)")
    return value


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(str(path), "(file)", f"cannot be read: {exc.strerror}") from None


def _read_text(path: Path) -> str:
    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(str(path), "(file)", "is not UTF-8 text (a checkpoint is a UTF-8 signed note)") from None


# -- legal holds ------------------------------------------------------------------------------------------------


@hold_app.command("place")
def hold_place(
    case: Annotated[str, typer.Option(help="The case reference of the litigation hold or preservation order.")],
    request: Annotated[str | None, typer.Option(help="Hold this one request.")] = None,
    subject_file: Annotated[
        Path | None,
        typer.Option(help="Hold a subject: a 0600 YAML file of identifiers shaped like an order's `subject`."),
    ] = None,
    systems: Annotated[str, typer.Option(help="Only these systems (names separated by commas).")] = "",
    categories: Annotated[str, typer.Option(help="Only these data categories (separated by commas).")] = "",
) -> None:
    """Place a legal hold: the systems it covers that have not erased yet are restricted instead, now and in every
    request of the subject to come, until the hold is released. The registry keeps keyed pseudonyms only."""
    from erasure.holds import hold_order, place_hold

    with _errors():
        order = hold_order(case, request, subject_file, systems, categories)
        config = _config("cli")
        services = _services(config)
        try:
            hold_id = place_hold(services, order, config.operator)
        finally:
            services.close()
        out.print(f"hold {hold_id} placed")


@hold_app.command("release")
def hold_release(hold: Annotated[str, typer.Argument(help="The hold id `erasure hold place` printed.")]) -> None:
    """Release a legal hold: the requests it stopped resume in their own workflows and are certified anew."""
    from erasure.holds import check_id, release_hold, resume_released

    with _errors():
        check_id(hold, "HOLD", "a hold id")
        config = _config("cli")
        services = _services(config)
        try:
            requests = release_hold(services, hold, config.operator)
        finally:
            services.close()

        async def go() -> list[str]:
            return await resume_released(await _client(config), requests)

        told = _run(go()) if requests else []
        out.print(f"hold {hold} released; resumed {len(told)} request(s)")
    _exit_now(0)


# -- suppression ------------------------------------------------------------------------------------------------


@suppression_app.command("check")
def suppression_check(
    kind: Annotated[IdentifierType, typer.Argument(help="The identifier's type.", show_choices=True)],
    from_file: Annotated[
        Path | None, typer.Option(help="Read the identifier from this file (mode 0600) instead of standard input.")
    ] = None,
) -> None:
    """Whether an identifier belongs to an erased subject. What is asked is neither stored nor logged.

    Exit status: 0 suppressed (belongs to an erased subject), 3 not suppressed, 2 bad arguments, 1 failure.

    The identifier is read from standard input (without echo on a terminal) or from a 0600 file, never from the
    command line, which shell history and `ps` keep: `erasure suppression check email < address.txt`.
    """
    with _errors():
        value = _identifier(from_file)
        services = _reader(_config("cli"))
        try:
            found = services.suppression().contains(kind, value)
        finally:
            services.close()
        out.print("suppressed: belongs to an erased subject" if found else "not suppressed")
        raise typer.Exit(0 if found else 3)


def _identifier(path: Path | None) -> str:
    """One identifier: the only line of a private file, or of standard input."""
    if path is None:
        where = "standard input"
        data = getpass.getpass("identifier: ").encode() if sys.stdin.isatty() else sys.stdin.buffer.read()
    else:
        where = str(path)
        mode = _stat_mode(path)
        if mode & 0o077:
            raise InvalidInput(where, "(file)", f"expected mode 0600 (others may read it), got {mode & 0o777:04o}")
        data = _read(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(where, "identifier", "is not UTF-8 text") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInput(where, "identifier", f"expected exactly one non-empty line, got {len(lines)}")
    return lines[0]


def _stat_mode(path: Path) -> int:
    try:
        return path.stat().st_mode
    except OSError as exc:
        raise InvalidInput(str(path), "(file)", f"cannot be read: {exc.strerror}") from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
