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


def run_submit(tmp_path: Path, order: Any, systems: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # Nothing may be reached: no database, no Temporal. A bad input must be refused before either is touched.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ERASURE_TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    order_path, catalogue_path = tmp_path / "order.yaml", tmp_path / "systems.yaml"
    for path, data in ((order_path, order), (catalogue_path, systems)):
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
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
    ("(top level)", with_(GOOD_ORDER, "deadline", "2026-11-01"), "deadline must not be before received"),
    ("(top level)", with_(GOOD_ORDER, "court_order", _DELETE), "needs a court_order section"),
    ("kind", with_(GOOD_ORDER, "kind", "please_delete"), "input should be"),
    ("deadline", with_(GOOD_ORDER, "deadline", "next tuesday"), "date"),
    ("scope", with_(GOOD_ORDER, "scope", ["app_db", "nowhere"]), "no system named 'nowhere'"),
    ("line 1", "kind: [unclosed", "not valid YAML"),
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
    ("systems", {"systems": []}, "at least 1 item"),
    ("line 3", "systems:\n  - name: [oops\n", "not valid YAML"),
]


@pytest.mark.parametrize(("field", "systems", "message"), BAD_CATALOGUES, ids=[b[0] for b in BAD_CATALOGUES])
def test_malformed_catalogues_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str, systems: Any, message: str
) -> None:
    result = run_submit(tmp_path, GOOD_ORDER, systems, monkeypatch)
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'systems.yaml'}: {field}" in result.stderr
    assert message.lower() in result.stderr.lower()


def test_a_missing_order_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["submit", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: (file): cannot be read" in result.stderr
