"""Warehouse settings and the one rule of every ``IB_PIPELINE_*`` variable: empty means unset,
a bad value is an error naming the variable, the value and what it expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ib_pipeline.environment import WarehouseEnvironment
from ib_pipeline.settings import (
    DEFAULT_WAREHOUSE_ROOT,
    RAW_ZONE_ENV,
    REPLAY_WORKERS_ENV,
    WAREHOUSE_ENV,
    WarehouseSettings,
    environment_value,
)
from ib_pipeline.universe import UNIVERSE_ENV, universe_path

ROOT = Path(__file__).resolve().parents[2]


def test_the_constants_name_the_model_variables() -> None:
    assert set(WarehouseEnvironment.variables()) == {
        WAREHOUSE_ENV,
        RAW_ZONE_ENV,
        REPLAY_WORKERS_ENV,
    }


@pytest.mark.parametrize("name", [WAREHOUSE_ENV, RAW_ZONE_ENV, REPLAY_WORKERS_ENV])
@pytest.mark.parametrize("empty", ["", " ", "\n"])
def test_an_empty_variable_means_unset(name: str, empty: str) -> None:
    assert WarehouseSettings.from_env({name: empty}) == WarehouseSettings()
    assert WarehouseSettings().root == DEFAULT_WAREHOUSE_ROOT


def test_values_are_read_and_stripped() -> None:
    env = {WAREHOUSE_ENV: " s3://b/wh ", RAW_ZONE_ENV: " Off ", REPLAY_WORKERS_ENV: " 3"}
    assert WarehouseSettings.from_env(env) == WarehouseSettings("s3://b/wh", False, 3)


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        (RAW_ZONE_ENV, "maybe", "true/false"),
        (RAW_ZONE_ENV, "2", "true/false"),
        (REPLAY_WORKERS_ENV, "0", "a positive integer"),
        (REPLAY_WORKERS_ENV, "-2", "a positive integer"),
        (REPLAY_WORKERS_ENV, "1.5", "a positive integer"),
        (REPLAY_WORKERS_ENV, "many", "a positive integer"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, expects: str) -> None:
    with pytest.raises(ValueError) as info:
        WarehouseSettings.from_env({name: value})
    assert str(info.value).startswith(f"{name}={value!r}: expected {expects}")


def test_every_bad_variable_is_named_at_once() -> None:
    with pytest.raises(ValueError, match=f"{RAW_ZONE_ENV}='x'.*; {REPLAY_WORKERS_ENV}='y'"):
        WarehouseSettings.from_env({RAW_ZONE_ENV: "x", REPLAY_WORKERS_ENV: "y"})


def test_from_env_reads_os_environ_unless_given_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAREHOUSE_ENV, "memory://wh")
    monkeypatch.setenv(RAW_ZONE_ENV, "")
    assert WarehouseSettings.from_env() == WarehouseSettings("memory://wh", True)
    assert WarehouseSettings.from_env({}) == WarehouseSettings()


def test_the_rule_holds_for_the_universe_path_too() -> None:
    assert environment_value("X", {"X": "  "}) is None
    assert environment_value("X", {"X": " a "}) == "a"
    assert universe_path({UNIVERSE_ENV: " "}) is None
    assert universe_path({UNIVERSE_ENV: " u.yaml "}) == Path("u.yaml")


def test_the_settings_import_pydantic_settings_only_to_read_a_set_variable() -> None:
    code = (
        "import sys; from ib_pipeline.settings import WarehouseSettings as W; "
        "loaded = lambda: print('pydantic_settings' in sys.modules, end=' '); "
        "W.from_env({'IB_PIPELINE_RAW_ZONE': ' '}); loaded(); "
        "W.from_env({'IB_PIPELINE_RAW_ZONE': '1'}); loaded()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False True"
