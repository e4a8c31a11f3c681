"""The configuration object: every variable read in one place, the Temporal connection through envconfig."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from domain.errors import InvalidInput
from domain.settings.meta_audiences import MetaSettings
from domain.settings.segment import SegmentSettings
from erasure.cli import app
from erasure.config import Config


def test_defaults_name_a_local_dev_server(tmp_path: Path) -> None:
    config = Config.from_env({"ERASURE_HOME": str(tmp_path), "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")})
    connect = config.temporal_profile().to_client_connect_config()
    assert connect == {"target_host": "localhost:7233", "namespace": "default"}  # no TLS for a local server


def test_an_api_key_turns_tls_on(tmp_path: Path) -> None:
    config = Config.from_env(
        {
            "ERASURE_HOME": str(tmp_path),
            "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
            "TEMPORAL_NAMESPACE": "ns.acct",
            "TEMPORAL_API_KEY": "key-from-the-cloud-ui",
        }
    )
    connect = config.temporal_profile().to_client_connect_config()
    assert connect["target_host"] == "ns.acct.tmprl.cloud:7233"
    assert connect["namespace"] == "ns.acct"
    assert connect["api_key"] == "key-from-the-cloud-ui"
    assert connect["tls"] is True


def test_a_profile_file_gives_mtls(tmp_path: Path) -> None:
    for name in ("client.pem", "client.key"):
        (tmp_path / name).write_text("placeholder")  # read at connect time, not here
    (tmp_path / "temporal.toml").write_text(
        '[profile.prod]\naddress = "ns.acct.tmprl.cloud:7233"\nnamespace = "ns.acct"\n'
        f'[profile.prod.tls]\nclient_cert_path = "{tmp_path / "client.pem"}"\n'
        f'client_key_path = "{tmp_path / "client.key"}"\n'
    )
    config = Config.from_env(
        {
            "ERASURE_HOME": str(tmp_path),
            "TEMPORAL_CONFIG_FILE": str(tmp_path / "temporal.toml"),
            "TEMPORAL_PROFILE": "prod",
        }
    )
    assert config.temporal_address == "ns.acct.tmprl.cloud:7233"
    assert config.temporal_tls is not None
    assert config.temporal_tls.client_cert == tmp_path / "client.pem"
    assert config.temporal_tls.client_private_key == tmp_path / "client.key"


def test_the_dev_stack_file_fills_what_the_environment_leaves_open(tmp_path: Path) -> None:
    (tmp_path / "stack.json").write_text('{"database_url": "postgresql:///stack", "temporal_address": "127.0.0.1:9"}')
    env = {"ERASURE_HOME": str(tmp_path)}
    assert Config.from_env(env).temporal_address == "127.0.0.1:9"
    assert Config.from_env(env).database_url == "postgresql:///stack"
    assert Config.from_env({**env, "TEMPORAL_ADDRESS": "elsewhere:7233"}).temporal_address == "elsewhere:7233"
    assert Config.from_env(env, read_stack_file=False).database_url == ""


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("ERASURE_GRACE_DAYS", "thirty", "expected a number, got 'thirty'"),
        ("ERASURE_TEMPORAL_PORT", "72330", "expected a port number, got '72330'"),
        ("TEMPORAL_PROFILE", "nope", "profile 'nope' not found"),
    ],
)
def test_a_bad_variable_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    with pytest.raises(InvalidInput, match=problem):
        Config.from_env({"ERASURE_HOME": str(tmp_path), variable: value})
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: environment: ")
    assert problem in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_a_vendor_host_is_written_or_named_never_both() -> None:
    with pytest.raises(ValidationError, match="exactly one of base_url and base_url_env"):
        SegmentSettings.model_validate({"connection": {"token_env": "T"}})
    with pytest.raises(ValidationError, match="exactly one of base_url and base_url_env"):
        SegmentSettings.model_validate(
            {"connection": {"token_env": "T", "base_url": "https://api.segmentapis.com", "base_url_env": "U"}}
        )
    mapping = {"audiences": [{"id": "1", "schema": ["EMAIL"]}]}
    with pytest.raises(ValidationError, match="base_url or base_url_env, not both"):
        MetaSettings.model_validate(
            {"connection": {"access_token_env": "T", "base_url": "http://x", "base_url_env": "U"}, "mapping": mapping}
        )
    named = MetaSettings.model_validate(
        {"connection": {"access_token_env": "T", "base_url_env": "U"}, "mapping": mapping}
    )
    assert named.connection.base_url_env == "U"


def test_an_unreadable_tls_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_HOME", str(tmp_path))
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path / "missing-ca.pem"))
    # `extend` talks to Temporal only (`shred` reads the ledger first since it answers from the request's state)
    result = CliRunner().invoke(
        app, ["extend", "00000000-0000-4000-8000-000000000000", "--days", "1", "--reason", "more time granted"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: environment: TEMPORAL_TLS_*: cannot read {tmp_path / 'missing-ca.pem'}: No such file or directory"
    )
