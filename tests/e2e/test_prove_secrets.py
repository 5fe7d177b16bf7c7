"""The bearer token never leaves the Authorization header: a whole pipeline run against a
gateway that requires it (contracts, bars, quotes, portfolio, orders, and their checks, through
Dagster with an on-disk instance and every log captured), then a few injected faults, and not
one byte of anything it produced holds the token.

Searched: the Python log records and everything printed to stdout/stderr (Dagster's console
log included); every file of the Dagster instance (its SQLite event log, run and schedule
storage, compute logs) and every event of the runs; every file of the warehouse, decoded where
compressed (Parquet rows, raw-zone JSON, the DuckDB catalog's tables and view SQL) and as raw
bytes; the messages, reprs and formatted tracebacks (causes included) of the errors the faults
raised, in Dagster's failure events and from the client directly; and the reprs of the
resource, the settings and the client.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import orjson
import pyarrow.parquet as pq
import pytest
from prove_support import (
    BACKFILL_KEYS,
    BARS_ASSET,
    assert_runs_succeeded,
    backfill_universe,
    files_under,
)

from assets.definitions import build_definitions
from assets.resources import IbkrClientResource, WarehouseResource
from assets.runs import run_assets, summarize_run
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import IbkrError
from ib_pipeline.ibkr.settings import ClientSettings, RetryPolicy
from ib_pipeline.ibkr.sync import SyncIbkrClient
from ib_pipeline.raw_zone import SUFFIX, decompress
from ib_pipeline.warehouse import CATALOG_FILE

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.slow(35)

TOKEN_CORE = "7f3a9c2e41b84d6f9a0e5c1d2b7f8e90"
TOKEN = f"ibkr-oauth-{TOKEN_CORE}-do-not-log"
TOKEN_ENV = "PROVE_IBKR_ACCESS_TOKEN"
NEEDLES = (TOKEN, TOKEN_CORE)
"""The token, and its random core (a partial or reformatted leak still shows it)."""

PIPELINE = ["contracts", "quotes", "accounts", "positions", "account_summary", "orders"]
FAULTS = ("5xx=1", "truncate=1", "drop=1", "429=1")
CONTROLS = {
    "raw zone": '"endpoint":"history"',  # decompressed raw-zone records
    "parquet": "SPDR S&P 500 ETF TRUST",  # contract rows read from Parquet
    "catalog": "read_parquet",  # view SQL from the DuckDB catalog
    "sqlite": "EventLogEntry",  # Dagster's event log rows
    "compute log": "",  # files of the compute log manager
}
"""What decoding must have shown somewhere, so that "no hit" means something."""


def leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [needle for needle in NEEDLES if needle.encode() in data]


def error_texts(error: BaseException) -> list[str]:
    """Everything an error shows: message, repr, attributes, and the formatted traceback with
    every chained cause and context."""
    texts = [str(error), repr(error), repr(vars(error)) if hasattr(error, "__dict__") else ""]
    texts.extend(traceback.format_exception(error))
    current: BaseException | None = error
    while current is not None:
        texts.extend([str(current), repr(current), repr(current.args)])
        current = current.__cause__ or current.__context__
    return texts


def decoded_views(path: Path) -> list[str]:
    """What a file holds once decoded: Parquet rows, raw-zone JSON, a DuckDB file's tables
    (every schema) and view SQL, a SQLite database's rows."""
    name = path.name
    if name.endswith(".parquet"):
        return [orjson.dumps(pq.read_table(path).to_pylist(), default=str).decode()]
    if name.endswith(SUFFIX):
        return [decompress(path.read_bytes()).decode()]
    if name == CATALOG_FILE:
        con = duckdb.connect(str(path), read_only=True)
        try:
            texts = [str(row) for row in con.execute("SELECT sql FROM duckdb_views()").fetchall()]
            tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
            for schema, table in tables:
                rows = con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall()
                texts.append(repr(rows))
            return texts
        finally:
            con.close()
    if name.endswith(".db"):
        con3 = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            texts = []
            tables = con3.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            for (table,) in tables:
                texts.append(repr(con3.execute(f'SELECT * FROM "{table}"').fetchall()))
            return texts
        finally:
            con3.close()
    return []


@pytest.fixture
def token_sim(make_sim: Callable[..., Simulator], monkeypatch: pytest.MonkeyPatch) -> Simulator:
    """A gateway requiring the bearer token, which both sides read from ``TOKEN_ENV``."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    return make_sim(token_env=TOKEN_ENV)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance on disk (SQLite storage, compute logs) under ``tmp_path/dagster``."""
    home = tmp_path / "dagster"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as local:
        yield local


def definitions(sim: Simulator, root: Path, **ibkr: Any) -> dg.Definitions:
    settings: dict[str, Any] = {"token_env": TOKEN_ENV, **ibkr}
    resources = {
        "ibkr": IbkrClientResource(base_url=sim.base_url, keepalive_interval_s=None, **settings),
        "warehouse": WarehouseResource(root=str(root)),
        "clock": sim.clock,
    }
    return build_definitions(backfill_universe(), resources=resources)


def fault_errors(sim: Simulator, root: Path, instance: dg.DagsterInstance) -> list[str]:
    """Each fault, injected on every request: the failure events of a Dagster run, and the
    error the client raises when used directly (two attempts each, so failures come fast)."""
    texts: list[str] = []
    defs = definitions(sim, root, max_attempts=2)
    settings = ClientSettings(
        base_url=sim.base_url,
        token_env=TOKEN_ENV,
        keepalive_interval_s=None,
        retry=RetryPolicy(max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02),
    )
    for fault in FAULTS:
        sim.set_faults(fault)
        result = run_assets(defs, ["contracts"], instance=instance, raise_on_error=False)
        summary = summarize_run(result)
        assert not summary.success, fault
        texts.extend(summary.errors)
        for event in result.get_step_failure_events():
            error = event.step_failure_data.error
            assert error is not None
            texts.append(error.to_string())

        async def call() -> None:
            async with IbkrClient(settings) as client:
                await client.search_contracts("AAPL")

        with pytest.raises(IbkrError) as info:
            asyncio.run(call())
        texts.extend(error_texts(info.value))
    sim.set_faults("none")
    return texts


def auth_errors(sim: Simulator) -> list[str]:
    """A wrong token and no token at all: the gateway answers 401."""
    texts: list[str] = []
    for environ in ({TOKEN_ENV: "not-" + TOKEN}, {}):
        settings = ClientSettings(base_url=sim.base_url, token_env=TOKEN_ENV)
        with pytest.raises(IbkrError) as info, SyncIbkrClient(settings, environ=environ) as ib:
            ib.accounts()
        texts.extend(error_texts(info.value))
    return texts


def test_the_token_is_nowhere_in_what_a_pipeline_run_and_its_faults_produce(
    token_sim: Simulator,
    instance: dg.DagsterInstance,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    root = tmp_path / "warehouse"
    defs = definitions(token_sim, root)
    keys = BACKFILL_KEYS
    runs = [
        run_assets(defs, PIPELINE, instance=instance, log_level="DEBUG"),
        run_assets(defs, [BARS_ASSET], instance=instance, partition_range=keys, log_level="DEBUG"),
    ]
    assert_runs_succeeded(runs)
    # the same token as a Dagster EnvVar, resolved by Dagster inside the run
    via_env_var = definitions(token_sim, root, token_env=None, access_token=dg.EnvVar(TOKEN_ENV))
    assert_runs_succeeded([run_assets(via_env_var, ["contracts"], instance=instance)])
    stats = token_sim.stats()
    assert stats["totals"]["401"] == 0 and stats["session"]["token_required"]

    texts = fault_errors(token_sim, root, instance) + auth_errors(token_sim)
    assert len(texts) > 40
    assert any("HTTP 401" in text for text in texts)  # the faults did reach the errors
    assert [text for text in texts if leaks(text)] == []

    found: dict[str, list[str]] = {}
    for record in caplog.records:
        for text in (record.getMessage(), repr(record.args), record.exc_text or ""):
            if leaks(text):
                found.setdefault("log", []).append(text)
    assert len(caplog.records) > 50
    out, err = capfd.readouterr()
    assert "RUN_SUCCESS" in err and leaks(out + err) == [], "printed output holds the token"
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            if leaks(repr(entry)):
                found.setdefault("event log", []).append(repr(entry)[:300])
    assert len(instance.get_runs()) == 3 + len(FAULTS)

    searched: dict[str, int] = {}
    for path in files_under(tmp_path / "dagster", root):
        decoded = decoded_views(path)
        blobs: list[str | bytes] = [path.read_bytes(), *decoded]
        for blob in blobs:
            if leaks(blob):
                found.setdefault(str(path.relative_to(tmp_path)), []).append("")
        # positive controls: the decoding did expose what the files hold
        joined = "\n".join(decoded)
        for kind, marker in CONTROLS.items():
            if marker in joined or (kind == "compute log" and "compute_logs" in path.parts):
                searched[kind] = searched.get(kind, 0) + 1
    assert set(searched) == set(CONTROLS), searched
    assert found == {}, f"the token leaked into: {sorted(found)}"


def test_no_object_shows_the_token(token_sim: Simulator) -> None:
    """Resources, settings and clients, configured with the token every supported way."""
    env_var = IbkrClientResource(base_url=token_sim.base_url, access_token=dg.EnvVar(TOKEN_ENV))
    literal = IbkrClientResource(base_url=token_sim.base_url, access_token=TOKEN)
    from_env = IbkrClientResource(base_url=token_sim.base_url, token_env=TOKEN_ENV)
    shown: list[str] = []
    for resource in (env_var, literal, from_env):
        settings = resource.settings()
        shown.extend([repr(resource), str(resource), repr(settings), str(settings)])

        async def use(resource: IbkrClientResource = resource) -> list[str]:
            client = resource.get_client()
            seen = [repr(client)]
            async with client:
                await client.accounts()
                seen.extend([repr(client), repr(client.session), repr(vars(client.stats))])
            return seen

        shown.extend(asyncio.run(use()))
        with resource.get_sync_client() as ib:
            shown.append(repr(ib))
    shown.extend([repr(token_sim), repr(token_sim.config)])
    assert token_sim.stats()["totals"]["401"] == 0  # every client did send the token
    assert [text for text in shown if leaks(text)] == []
