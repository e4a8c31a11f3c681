"""Bad input gets one clear line naming the file and the field, exit status 2, and nothing is stored or started."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from erasure.cli import app
from tests.integration.conftest import court_order
from tests.integration.estate import catalogue

GOOD_ORDER = court_order({"user_id": ["1"], "email": ["child@example.org"]})
GOOD_CATALOGUE = catalogue("app", "clipstream-uploads")
ORDER_TEXT = yaml.safe_dump(GOOD_ORDER, sort_keys=False)
CATALOGUE_TEXT = yaml.safe_dump(GOOD_CATALOGUE, sort_keys=False)
MANUAL_RECIPIENT = {"name": "school_portal", "role": "third_party", "notify": "manual"}


def repeat_line(text: str, starts: str) -> tuple[str, int]:
    """The text with its first line beginning `starts` written twice (in the same mapping), and the repeat's line."""
    lines = text.split("\n")
    index = next(i for i, line in enumerate(lines) if line.lstrip().startswith(starts))
    again = lines[index].replace("- ", "  ", 1)  # the first key of a list item: repeat it inside the item
    return "\n".join([*lines[: index + 1], again, *lines[index + 1 :]]), index + 2


def run_submit(tmp_path: Path, order: Any, systems: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Nothing may be reached: no database, no Temporal. A bad input must be refused before either is touched.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    order_path, catalogue_path = tmp_path / "order.yaml", tmp_path / "systems.yaml"
    for path, data in ((order_path, order), (catalogue_path, systems)):
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True))
    result = CliRunner().invoke(app, ["submit", str(order_path), "--catalogue", str(catalogue_path)])
    assert not (tmp_path / "home").exists(), "nothing may be created for a bad input"
    return result


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()

BAD_ORDERS = [
    ("subject", with_(GOOD_ORDER, "subject", {}), "at least one identifier"),
    ("subject", with_(GOOD_ORDER, "subject", {"email": ["not-an-email"]}), "name@domain"),
    ("subject.user_id[0]", with_(GOOD_ORDER, "subject", {"user_id": ["   "]}), "must not be empty"),
    ("subject.user_id[0]", with_(GOOD_ORDER, "subject", {"user_id": ["a\nb"]}), "control characters"),
    ("subject.shoe_size", with_(GOOD_ORDER, "subject", {"shoe_size": ["9"]}), "extra inputs"),
    ("(top level)", with_(GOOD_ORDER, "deadline", "2020-01-01"), "deadline must not be before received"),
    ("(top level)", with_(GOOD_ORDER, "court_order", _DELETE), "needs a court_order section"),
    ("kind", with_(GOOD_ORDER, "kind", "please_delete"), "input should be"),
    ("deadline", with_(GOOD_ORDER, "deadline", "next tuesday"), "date"),
    ("scope", with_(GOOD_ORDER, "scope", ["app_db", "nowhere"]), "no system named 'nowhere'"),
    ("line 1", "kind: [unclosed", "not valid YAML"),
    # a paste error: YAML would keep the second block and erase someone else
    (
        f"line {ORDER_TEXT.count(chr(10)) + 1}",
        ORDER_TEXT + "subject:\n  user_id: ['10']\n",
        "key 'subject' is repeated",
    ),
    ("line 1", "kind: &k court_order\n" + ORDER_TEXT.split("\n", 1)[1], "anchors and aliases are not allowed"),
    ("line 2", b"kind: court_order\nlegal_basis: caf\xe9\n", "not UTF-8"),
    ("line 2", "kind: court_order\nlegal_basis: a\x00b\n", "control character (U+0000)"),
    ("court_order.party_reference", with_(GOOD_ORDER, "court_order.party_reference", "S\x00MO"), "control characters"),
    ("(file)", ORDER_TEXT + "#" * 1_100_000, "too large"),
    ("subject.email[0]", with_(GOOD_ORDER, "subject", {"email": ["child@example.org "]}), "whitespace"),
    ("subject.user_id[0]", with_(GOOD_ORDER, "subject", {"user_id": [" 1"]}), "whitespace"),
    ("subject.user_id[0]", with_(GOOD_ORDER, "subject", {"user_id": ["1 0"]}), "whitespace"),
    # the Cyrillic "і" (U+0456) of a look-alike address
    ("subject.email[0]", with_(GOOD_ORDER, "subject", {"email": ["ch\u0456ld@example.org"]}), "mixes letters"),
    ("subject.email[0]", with_(GOOD_ORDER, "subject", {"email": ["child\u200b@example.org"]}), "invisible"),
    ("subject.email[0]", with_(GOOD_ORDER, "subject", {"email": ["child@@example.org"]}), "name@domain"),
    ("subject.phone[0]", with_(GOOD_ORDER, "subject", {"phone": ["07700 900123"]}), "e.164"),
    ("subject.advertising_id[0]", with_(GOOD_ORDER, "subject", {"advertising_id": ["idfa-1"]}), "uuid"),
    ("deadline", with_(with_(GOOD_ORDER, "received", "2020-01-01"), "deadline", "2020-01-29"), "allow-past-deadline"),
]


@pytest.mark.parametrize(("field", "order", "message"), BAD_ORDERS, ids=[b[2][:30] for b in BAD_ORDERS])
def test_malformed_orders_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, order: Any, message: str
) -> None:
    result = run_submit(tmp_path, order, GOOD_CATALOGUE, monkeypatch)
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'order.yaml'}: {field}" in result.stderr
    assert message.lower() in result.stderr.lower()
    assert "Traceback" not in result.output + result.stderr


def test_an_identifier_value_never_appears_in_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run_submit(
        tmp_path, with_(GOOD_ORDER, "subject", {"email": ["zed.child-not-an-email"]}), GOOD_CATALOGUE, monkeypatch
    )
    assert result.exit_code == 2
    assert "zed.child" not in result.stderr


BAD_CATALOGUES = [
    ("systems[uploads].connector", with_(GOOD_CATALOGUE, "systems.1.connector", "ftp"), "unknown connector"),
    ("systems", with_(GOOD_CATALOGUE, "systems.1.name", "app_db"), "repeated: app_db"),
    (
        "systems[app_db].identifiers[0]",
        with_(GOOD_CATALOGUE, "systems.0.identifiers", ["shoe_size"]),
        "input should be",
    ),
    (
        "systems[uploads].mapping.buckets[0].bucket",
        with_(GOOD_CATALOGUE, "systems.1.mapping.buckets", [{"bucket": "Bad_Bucket", "keys": ["u/{user_id}/"]}]),
        "string should match",
    ),
    (
        "systems[uploads].mapping.buckets[0].keys",
        with_(GOOD_CATALOGUE, "systems.1.mapping.buckets", [{"bucket": "ok-bucket", "keys": ["uploads/"]}]),
        "exactly one identifier placeholder",
    ),
    ("systems[app_db].connection.dsn_env", with_(GOOD_CATALOGUE, "systems.0.connection", {}), "field required"),
    (
        "systems[app_db].connection.password",
        with_(GOOD_CATALOGUE, "systems.0.connection", {"dsn_env": "X", "password": "hunter2"}),
        "extra inputs",
    ),
    (
        "systems[app_db].mapping",
        with_(
            GOOD_CATALOGUE, "systems.0.mapping.tables", [{"table": "comments", "references": {"video_id": "videos"}}]
        ),
        "not a keyed table",
    ),
    (
        "systems[app_db].connection",
        with_(GOOD_CATALOGUE, "systems.0.connection", {"dsn_env": "${APP_DATABASE_URL}"}),
        "dsn_env: ${...} is not expanded; name the variable in a `*_env` field instead",
    ),
    ("systems", {"systems": []}, "at least 1 item"),
    ("approval.required_for[0]", {**GOOD_CATALOGUE, "approval": {"required_for": ["parking_ticket"]}}, "input should"),
    ("approval.court_orders", {**GOOD_CATALOGUE, "approval": {"court_orders": False}}, "extra inputs"),
    ("line 3", "systems:\n  - name: [oops\n", "not valid YAML"),
    # a repeated key silently redirects a system to whatever its last copy says
    *(
        (f"line {line}", text, "is repeated")
        for text, line in (
            repeat_line(CATALOGUE_TEXT, "connector:"),
            repeat_line(CATALOGUE_TEXT, "- bucket:"),
            repeat_line(CATALOGUE_TEXT, "keys:"),
        )
    ),
    (
        "systems[uploads].identifiers",
        with_(GOOD_CATALOGUE, "systems.1.identifiers", ["user_id", "email"]),
        "declares email, which the mapping never searches",
    ),
    (
        "systems[app_db].mapping",
        with_(GOOD_CATALOGUE, "systems.0.identifiers", ["user_id", "email"]),
        "searches by phone, which identifiers does not declare",
    ),
    *(
        (
            "systems[uploads].mapping.buckets[0].keys",
            with_(GOOD_CATALOGUE, "systems.1.mapping.buckets", [{"bucket": "ok-bucket", "keys": [template]}]),
            "exactly {type}",
        )
        for template in ("uploads/{user_id:}/", "uploads/{user_id!s}/", "avatars/{user_id[0]}.jpg")
    ),
    # recipients of the data: who is told of the erasure, and how
    (
        "systems[app_db].recipients",
        with_(GOOD_CATALOGUE, "systems.0.recipients", [MANUAL_RECIPIENT, MANUAL_RECIPIENT]),
        "recipient names must be unique per system; repeated: school_portal",
    ),
    (
        "systems[app_db].recipients[school_portal].email",
        with_(GOOD_CATALOGUE, "systems.0.recipients", [{**MANUAL_RECIPIENT, "email": "x"}]),
        "extra inputs are not permitted",
    ),
    (
        "systems[app_db].recipients[school_portal].role",
        with_(GOOD_CATALOGUE, "systems.0.recipients", [{**MANUAL_RECIPIENT, "role": "friend"}]),
        "'processor' or 'third_party'",
    ),
    (
        "systems[app_db].recipients[ads]",
        with_(GOOD_CATALOGUE, "systems.0.recipients", [{"name": "ads", "role": "third_party", "notify": "webhook"}]),
        "names the environment variable of its url in url_env",
    ),
    (
        "systems[app_db].recipients[ads].url_env",
        with_(
            GOOD_CATALOGUE,
            "systems.0.recipients",
            [{"name": "ads", "role": "third_party", "notify": "webhook", "url_env": "https://ads.example/hook"}],
        ),
        "should match pattern",
    ),
    # the time budget of a step's attempts must hold at least one attempt
    (
        "systems[app_db].retry",
        with_(GOOD_CATALOGUE, "systems.0.retry", {"start_to_close": "PT10M", "schedule_to_close": "PT5M"}),
        "schedule_to_close: expected at least start_to_close (0:10:00), got 0:05:00",
    ),
]


@pytest.mark.parametrize(("field", "systems", "message"), BAD_CATALOGUES, ids=[b[2][:30] for b in BAD_CATALOGUES])
def test_malformed_catalogues_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, systems: Any, message: str
) -> None:
    result = run_submit(tmp_path, GOOD_ORDER, systems, monkeypatch)
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'systems.yaml'}: {field}" in result.stderr
    assert message.lower() in result.stderr.lower()


def test_the_approval_policy_is_data_and_court_orders_always_wait() -> None:
    from stores.catalogue import ApprovalPolicy

    none = ApprovalPolicy()
    guardians = ApprovalPolicy.model_validate({"required_for": ["guardian_request"]})
    assert [none.requires_approval(k) for k in ("court_order", "guardian_request")] == [True, False]
    assert [guardians.requires_approval(k) for k in ("court_order", "guardian_request", "subject_request")] == [
        True,
        True,
        False,
    ]


def test_a_missing_order_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: (file): cannot be read" in result.stderr


def test_an_export_into_a_missing_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    output = tmp_path / "missing" / "bundle.zip"
    result = CliRunner().invoke(
        app, ["evidence", "export", "0b7c3f4e-9a7e-4d53-9d0e-6f2a4b1c8e10", "--output", str(output)]
    )
    assert result.exit_code == 2, result.output
    assert f"{output}: --output: its folder does not exist" in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize("option", ["--state", "--kind"])
def test_an_unknown_list_filter_is_refused_without_opening_the_ledger(
    option: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["list", option, "done-ish"])
    assert result.exit_code == 2, result.output
    assert f"arguments: {option}: expected one of" in result.stderr
    assert "done-ish" not in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_unreadable_reminder_lead_days_are_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ERASURE_REMINDER_LEAD_DAYS", "7,soon")
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 2, result.output
    assert "environment: ERASURE_REMINDER_LEAD_DAYS: expected days separated by commas" in result.stderr
    assert "Traceback" not in result.output + result.stderr


@pytest.mark.parametrize(
    ("days", "reason", "field"),
    [("0", "vendor backlog", "--days"), ("5", "", "--reason"), ("5", "asked by parent@example.com", "--reason")],
)
def test_a_bad_extension_is_refused_before_temporal_is_asked(
    days: str, reason: str, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    request_id = "0b7c3f4e-9a7e-4d53-9d0e-6f2a4b1c8e10"
    result = CliRunner().invoke(app, ["extend", request_id, "--days", days, "--reason", reason])
    assert result.exit_code == 2, result.output
    assert f"arguments: {field}: expected" in result.stderr
    assert "parent@example.com" not in result.stderr
    assert "Traceback" not in result.output + result.stderr
