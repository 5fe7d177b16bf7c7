"""Every ``IB_PIPELINE_*`` variable, declared once as a pydantic-settings model, read by one rule.

The rule (`ib_pipeline.settings.environment_value`): an empty value, or spaces only, means
unset, so the default of the settings object applies; any other value is stripped and must
parse as the field's type, or the error names the variable, the value and what it expects (the
field's description). A field of None means "not set": the defaults live in the settings
objects (`WarehouseSettings`, `ClientSettings`), not here.

`EnvironmentSettings.read` builds a model from a mapping (``os.environ`` by default, any
mapping in tests) through one settings source that sees only the model's own variables, so a
token or any other variable never enters a model. The universe file's variable,
``IB_PIPELINE_UNIVERSE``, is a path read by the same rule (`ib_pipeline.universe.universe_path`).

Why a module of its own: pydantic-settings takes ~0.3 s to import, and the CLI must print its
help without paying it; `ib_pipeline.settings` and `ib_pipeline.ibkr.settings` import this
module only when they read the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ib_pipeline.settings import ENV_PREFIX, environment_value

FLAG = "true/false (1/0, yes/no, on/off)"
"""What an on/off variable expects."""


class _Variables(PydanticBaseSettingsSource):
    """The settings source: the model's variables in a mapping, by the one rule."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        name = variable_name(field_name)
        return environment_value(name, self._environ), name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        found = {name: self.get_field_value(f, name)[0] for name, f in fields.items()}
        return {name: value for name, value in found.items() if value is not None}


def variable_name(field_name: str) -> str:
    """The environment variable of a model field: ``timeout_s`` -> ``IB_PIPELINE_TIMEOUT_S``."""
    return f"{ENV_PREFIX}{field_name.upper()}"


class EnvironmentSettings(BaseSettings):
    """Base of the models: frozen, ``IB_PIPELINE_`` variables only, read by `_Variables`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Variables(settings_cls, os.environ)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every variable the model reads, with what it expects."""
        return {variable_name(n): f.description or "" for n, f in cls.model_fields.items()}

    @classmethod
    def read(cls, environ: Mapping[str, str] | None, error: Callable[[str], Exception]) -> Self:
        """The model from ``environ`` (default ``os.environ``); a bad value raises ``error``
        naming the variable, the value and what it expects."""
        source = _Variables(cls, os.environ if environ is None else environ)
        try:
            # _build_sources: BaseSettings' argument for pre-built sources (mypy sees the fields)
            return cls(_build_sources=((source,), {}))  # type: ignore[call-arg]
        except ValidationError as invalid:
            raise error(_describe(cls, invalid)) from None

    def given(self) -> dict[str, Any]:
        """The fields whose variables were set."""
        return self.model_dump(exclude_none=True)


def _describe(model: type[BaseSettings], invalid: ValidationError) -> str:
    problems = []
    for problem in invalid.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        info = model.model_fields.get(field)
        expects = info.description if info is not None else problem["msg"]
        problems.append(f"{variable_name(field)}={problem['input']!r}: expected {expects}")
    return "; ".join(problems)


def read_flag(name: str, text: str) -> bool:
    """``text`` as an on/off value, as the models read one; ValueError naming ``name``."""
    try:
        return TypeAdapter(bool).validate_python(text.strip())
    except ValidationError:
        raise ValueError(f"{name}={text!r}: expected {FLAG}") from None


class WarehouseEnvironment(EnvironmentSettings):
    """The variables of `ib_pipeline.settings.WarehouseSettings`."""

    warehouse: str | None = Field(None, description="a folder or an fsspec URL (s3://bucket/wh)")
    raw_zone: bool | None = Field(None, description=FLAG)
    replay_workers: int | None = Field(None, ge=1, description="a positive integer (processes)")


class ClientEnvironment(EnvironmentSettings):
    """The variables of `ib_pipeline.ibkr.settings.ClientSettings.from_env`. The access token
    is not one of them: only the name of its variable (``token_env``) is."""

    base_url: str | None = Field(
        None, description="the gateway's API root, such as https://localhost:5000/v1/api"
    )
    ca_bundle: Path | None = Field(None, description="the path of a PEM CA bundle")
    insecure: bool | None = Field(None, description=FLAG)
    account: str | None = Field(None, description="an account id such as DU1234567")
    token_env: str | None = Field(
        None, description="the name of the variable holding the bearer token"
    )
    timeout_s: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="a number of seconds greater than 0"
    )
    allow_trading: bool | None = Field(None, description=FLAG)
    allow_live_trading: bool | None = Field(None, description=FLAG)
    global_rate: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="a number of requests per second above 0"
    )
    history_concurrency: int | None = Field(
        None, ge=1, description="an integer of at least 1 (requests in flight)"
    )
    keepalive_s: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="a number of seconds (0 turns it off)"
    )
    max_response_mb: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="a size in MiB greater than 0 (the largest response body read; default 64)",
    )
