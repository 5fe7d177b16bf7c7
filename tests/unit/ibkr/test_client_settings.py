"""ClientSettings: defaults, validation, environment variables, and secrets that never show."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ib_pipeline.environment import ClientEnvironment
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import ConfigurationError
from ib_pipeline.ibkr.settings import (
    DEFAULT_BASE_URL,
    ClientSettings,
    PacingLimits,
    RetryPolicy,
    Secret,
    Timeouts,
    is_loopback_host,
)

TOKEN = "tok-5ecr3t-value-do-not-show"


def test_defaults_point_at_the_simulator_with_verification_on() -> None:
    settings = ClientSettings()
    assert settings.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:5000/v1/api"
    assert settings.insecure is False and settings.ca_bundle is None
    assert settings.allow_trading is False and settings.allow_live_trading is False
    assert settings.pacing.global_per_s == 10 and settings.pacing.history_concurrency == 4
    assert settings.origin == "http://127.0.0.1:5000"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("::1", True),
        ("10.0.0.5", False),
        ("gateway.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_insecure_is_refused_for_remote_hosts() -> None:
    assert ClientSettings(base_url="https://localhost:5000/v1/api", insecure=True).insecure
    assert ClientSettings(base_url="https://[::1]:5000/v1/api", insecure=True).insecure
    with pytest.raises(ConfigurationError, match=r"only allowed for loopback.*'10\.1\.2\.3'"):
        ClientSettings(base_url="https://10.1.2.3:5000/v1/api", insecure=True)
    with pytest.raises(ConfigurationError, match=r"loopback.*'api\.ibkr\.com'"):
        ClientSettings(base_url="https://api.ibkr.com/v1/api", insecure=True)


def test_invalid_settings_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="http"):
        ClientSettings(base_url="ftp://localhost/v1/api")
    with pytest.raises(ConfigurationError, match="credentials"):
        ClientSettings(base_url="https://user:pw@localhost:5000/v1/api")
    with pytest.raises(ConfigurationError, match="contradict"):
        ClientSettings(base_url="https://localhost/v1/api", insecure=True, ca_bundle=tmp_path)
    with pytest.raises(ConfigurationError, match="allow_trading"):
        ClientSettings(allow_live_trading=True)
    with pytest.raises(ConfigurationError, match="global_per_s"):
        PacingLimits(global_per_s=0)
    with pytest.raises(ConfigurationError, match="history_concurrency must be an integer"):
        PacingLimits(history_concurrency=2.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="read"):
        Timeouts(read=-1)
    with pytest.raises(ConfigurationError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_missing_or_bad_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    settings = ClientSettings(base_url="https://localhost:5000/v1/api", ca_bundle=tmp_path / "x")
    with pytest.raises(ConfigurationError, match="does not exist"):
        IbkrClient(settings)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="not a PEM"):
        IbkrClient(settings.with_changes(ca_bundle=junk))


def test_secret_never_shows() -> None:
    secret = Secret(TOKEN)
    assert TOKEN not in repr(secret) and TOKEN not in str(secret) and TOKEN not in f"{secret}"
    assert secret.reveal() == TOKEN
    settings = ClientSettings(access_token=secret)
    assert TOKEN not in repr(settings)
    client = IbkrClient(settings)
    assert TOKEN not in repr(client) and "bearer_token=set" in repr(client)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(secret)
    with pytest.raises(ConfigurationError, match="non-empty"):
        Secret("  ")


def test_token_comes_from_the_named_environment_variable() -> None:
    settings = ClientSettings(token_env="MY_TOKEN")
    assert settings.resolve_token({}) is None
    assert settings.resolve_token({"MY_TOKEN": TOKEN}) == Secret(TOKEN)
    with pytest.raises(ConfigurationError, match="MY_TOKEN is set but empty") as info:
        settings.resolve_token({"MY_TOKEN": " "})
    assert TOKEN not in str(info.value)
    assert ClientSettings(token_env=None).resolve_token({"IBKR_ACCESS_TOKEN": TOKEN}) is None


def test_from_env_reads_every_documented_variable(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    env = {
        "IB_PIPELINE_BASE_URL": "https://localhost:5001/v1/api",
        "IB_PIPELINE_CA_BUNDLE": str(bundle),
        "IB_PIPELINE_INSECURE": "false",
        "IB_PIPELINE_ACCOUNT": "DU42",
        "IB_PIPELINE_TOKEN_ENV": "OTHER_TOKEN",
        "IB_PIPELINE_TIMEOUT_S": "12.5",
        "IB_PIPELINE_ALLOW_TRADING": "yes",
        "IB_PIPELINE_ALLOW_LIVE_TRADING": "0",
        "IB_PIPELINE_GLOBAL_RATE": "5",
        "IB_PIPELINE_HISTORY_CONCURRENCY": "2",
        "IB_PIPELINE_KEEPALIVE_S": "30",
        "IB_PIPELINE_MAX_RESPONSE_MB": "1.5",
        "OTHER_TOKEN": TOKEN,
    }
    assert set(ClientEnvironment.variables()) <= set(env)
    settings = ClientSettings.from_env(env)
    assert settings.base_url == "https://localhost:5001/v1/api"
    assert settings.ca_bundle == bundle and settings.insecure is False
    assert settings.account == "DU42" and settings.token_env == "OTHER_TOKEN"
    assert settings.timeouts.read == 12.5
    assert settings.allow_trading is True and settings.allow_live_trading is False
    assert settings.pacing.global_per_s == 5 and settings.pacing.history_concurrency == 2
    assert settings.keepalive_interval_s == 30
    assert settings.max_response_bytes == 1_572_864
    assert settings.resolve_token(env) == Secret(TOKEN)
    assert ClientSettings.from_env({}) == ClientSettings()
    assert ClientSettings.from_env({}, account="U1").account == "U1"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IB_PIPELINE_INSECURE", "maybe", "IB_PIPELINE_INSECURE='maybe': expected true/false"),
        ("IB_PIPELINE_TIMEOUT_S", "soon", "IB_PIPELINE_TIMEOUT_S='soon': expected a number"),
        ("IB_PIPELINE_HISTORY_CONCURRENCY", "4.5", "expected an integer"),
    ],
)
def test_from_env_names_the_bad_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientSettings.from_env({name: value})


def test_insecure_from_env_is_refused_for_remote_hosts() -> None:
    env = {"IB_PIPELINE_BASE_URL": "https://192.168.1.9:5000/v1/api", "IB_PIPELINE_INSECURE": "1"}
    with pytest.raises(ConfigurationError, match="loopback"):
        ClientSettings.from_env(env)


VARIABLES = sorted(ClientEnvironment.variables())


@pytest.mark.parametrize("name", VARIABLES)
@pytest.mark.parametrize("empty", ["", "  ", "\t"])
def test_an_empty_variable_means_unset(name: str, empty: str) -> None:
    assert ClientSettings.from_env({name: empty}) == ClientSettings()


def test_every_variable_is_documented_with_what_it_expects() -> None:
    assert sorted(
        f"IB_PIPELINE_{n}"
        for n in (
            "BASE_URL", "CA_BUNDLE", "INSECURE", "ACCOUNT", "TOKEN_ENV", "TIMEOUT_S",
            "ALLOW_TRADING", "ALLOW_LIVE_TRADING", "GLOBAL_RATE", "HISTORY_CONCURRENCY",
            "KEEPALIVE_S", "MAX_RESPONSE_MB",
        )
    ) == VARIABLES  # fmt: skip
    assert all(ClientEnvironment.variables().values())


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("IB_PIPELINE_INSECURE", "maybe", "true/false"),
        ("IB_PIPELINE_ALLOW_TRADING", "sure", "true/false"),
        ("IB_PIPELINE_ALLOW_LIVE_TRADING", "2", "true/false"),
        ("IB_PIPELINE_TIMEOUT_S", "0", "a number of seconds greater than 0"),
        ("IB_PIPELINE_TIMEOUT_S", "-3", "a number of seconds greater than 0"),
        ("IB_PIPELINE_TIMEOUT_S", "inf", "a number of seconds greater than 0"),
        ("IB_PIPELINE_GLOBAL_RATE", "fast", "a number of requests per second"),
        ("IB_PIPELINE_GLOBAL_RATE", "0", "a number of requests per second"),
        ("IB_PIPELINE_HISTORY_CONCURRENCY", "0", "an integer of at least 1"),
        ("IB_PIPELINE_HISTORY_CONCURRENCY", "two", "an integer of at least 1"),
        ("IB_PIPELINE_KEEPALIVE_S", "-1", "a number of seconds"),
        ("IB_PIPELINE_KEEPALIVE_S", "nan", "a number of seconds"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_it_expects(
    name: str, value: str, expects: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        ClientSettings.from_env({name: f" {value} "})
    assert str(info.value).startswith(f"{name}={value!r}: expected {expects}")


def test_values_are_stripped_and_flags_take_the_usual_spellings() -> None:
    env = {"IB_PIPELINE_ACCOUNT": " DU42 ", "IB_PIPELINE_ALLOW_TRADING": " ON "}
    settings = ClientSettings.from_env(env)
    assert settings.account == "DU42" and settings.allow_trading is True
    for text, flag in (("1", True), ("Yes", True), ("off", False), ("FALSE", False)):
        assert ClientSettings.from_env({"IB_PIPELINE_INSECURE": text}).insecure is flag


def test_an_empty_token_env_keeps_the_default_variable() -> None:
    settings = ClientSettings.from_env({"IB_PIPELINE_TOKEN_ENV": ""})
    assert settings.token_env == "IBKR_ACCESS_TOKEN"
    assert settings.resolve_token({"IBKR_ACCESS_TOKEN": TOKEN}) == Secret(TOKEN)


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_PIPELINE_ACCOUNT", "DU7")
    monkeypatch.setenv("IB_PIPELINE_GLOBAL_RATE", "")
    settings = ClientSettings.from_env()
    assert settings.account == "DU7" and settings.pacing.global_per_s == 10
    assert ClientSettings.from_env({}).account is None  # a given mapping replaces os.environ


def test_the_token_never_enters_the_settings_or_their_errors() -> None:
    env = {"IBKR_ACCESS_TOKEN": TOKEN, "IB_PIPELINE_ACCESS_TOKEN": TOKEN}
    model = ClientEnvironment.read(env, ConfigurationError)
    assert TOKEN not in repr(model) and TOKEN not in repr(model.model_dump())
    settings = ClientSettings.from_env(env)
    assert TOKEN not in repr(settings) and settings.access_token is None
    with pytest.raises(ConfigurationError) as info:
        ClientSettings.from_env({**env, "IB_PIPELINE_TIMEOUT_S": "x"})
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:5000/v1/api", "http://gateway.example.com/v1/api", "http://[fe80::1]/"]
)
def test_a_bearer_token_is_never_sent_over_plain_http_to_a_remote_host(url: str) -> None:
    """Issue 10 item 11: refused at settings time, naming the URL and the fix, never the token."""
    with pytest.raises(ConfigurationError, match="use an https://") as info:
        ClientSettings(base_url=url, access_token=Secret(TOKEN))
    assert url in str(info.value) and TOKEN not in str(info.value)
    env = {"IB_PIPELINE_BASE_URL": url, "IBKR_ACCESS_TOKEN": TOKEN}
    with pytest.raises(ConfigurationError, match="environment variable IBKR_ACCESS_TOKEN"):
        ClientSettings.from_env(env)
    with pytest.raises(ConfigurationError, match="plain HTTP"):
        IbkrClient(ClientSettings(base_url=url), environ={"IBKR_ACCESS_TOKEN": TOKEN})


def test_a_bearer_token_is_allowed_over_https_and_loopback_http() -> None:
    for url in (
        "https://gateway.example.com/v1/api",
        "http://127.0.0.1:5000/v1/api",
        "http://localhost:5000/v1/api",
        "http://[::1]:5000/v1/api",
    ):
        assert ClientSettings(base_url=url, access_token=Secret(TOKEN)).access_token is not None
        client = IbkrClient(ClientSettings(base_url=url), environ={"IBKR_ACCESS_TOKEN": TOKEN})
        assert "bearer_token=set" in repr(client)
    # without a token, plain HTTP to a remote host stays allowed (a cookie session, nothing sent)
    assert ClientSettings(base_url="http://10.0.0.5:5000/v1/api").host == "10.0.0.5"


def test_the_response_size_limit_is_validated() -> None:
    assert ClientSettings().max_response_bytes == 64 * 1024 * 1024
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigurationError, match="max_response_bytes"):
            ClientSettings(max_response_bytes=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="IB_PIPELINE_MAX_RESPONSE_MB='0'"):
        ClientSettings.from_env({"IB_PIPELINE_MAX_RESPONSE_MB": "0"})
