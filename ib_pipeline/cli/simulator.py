"""``ib-pipeline sim``: run the gateway simulator in the foreground until Ctrl-C or SIGTERM.

Only parses options, prints where the server listens, and waits for a signal; the server is the
same one `Simulator` runs in tests. Heavy imports happen inside the command so that
``ib-pipeline --help`` stays fast.

What it must never do: print the bearer token, or serve anything the `Simulator` would not.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TypeVar

import click

from ib_pipeline.clock import parse_instant
from ib_pipeline.simulator.config import (
    FAULT_GRAMMAR,
    LOGIN_MODES,
    FaultSpec,
    PacingConfig,
    SimulatorConfig,
)

T = TypeVar("T")


class _Parsed(click.ParamType[T]):
    """An option value read by ``parse``, whose ValueError becomes click's usage error."""

    def __init__(self, name: str, kind: type[T], parse: Callable[[str], T]) -> None:
        self.name = name
        self._kind = kind
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> T:
        if isinstance(value, self._kind):
            return value
        try:
            return self._parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_split(text: str) -> tuple[int, date, float]:
    """``CONID:YYYY-MM-DD:RATIO`` (e.g. ``265598:2020-08-31:4``) as (conid, date, ratio)."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"split {text!r} is not CONID:YYYY-MM-DD:RATIO (e.g. 265598:2020-08-31:4)")
    try:
        conid, day, ratio = int(parts[0]), date.fromisoformat(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"split {text!r} is not CONID:YYYY-MM-DD:RATIO") from None
    if not ratio > 0 or ratio == 1:
        raise ValueError(f"split {text!r}: the ratio must be > 0 and not 1")
    return conid, day, ratio


def parse_conids(text: str) -> frozenset[int]:
    """A comma-separated list of conids (``265598,756733``); empty or ``none`` for none."""
    if text.strip().lower() in ("", "none"):
        return frozenset()
    try:
        return frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of conids") from None


def splits_mapping(
    splits: Sequence[tuple[int, date, float]],
) -> Mapping[int, list[tuple[date, float]]]:
    mapping: dict[int, list[tuple[date, float]]] = {}
    for conid, day, ratio in splits:
        mapping.setdefault(conid, []).append((day, ratio))
    return mapping


# "\b" keeps click from re-wrapping the grammar's aligned lines.
@click.command("sim", epilog="--faults grammar:\n\n\b\n" + FAULT_GRAMMAR)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--tls",
    is_flag=True,
    help="Serve HTTPS with a fresh self-signed certificate; the CA file to trust is "
    "printed on start.",
)
@click.option(
    "--seed",
    default=42,
    show_default=True,
    type=int,
    help="Seed of the synthetic market (same seed, same bars).",
)
@click.option(
    "--latency-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Milliseconds added to every /v1/api response.",
)
@click.option(
    "--faults",
    "faults",
    default="none",
    show_default=True,
    type=_Parsed("SPEC", FaultSpec, FaultSpec.parse),
    help="Faults to inject, e.g. '5xx=0.05,drop=0.01,seed=7' (grammar below).",
)
@click.option(
    "--token-env",
    metavar="VAR",
    default=None,
    help="Require 'Authorization: Bearer <token>' with the token read from the "
    "environment variable VAR (the token is never printed).",
)
@click.option(
    "--now",
    "now",
    type=_Parsed("ISO", datetime, parse_instant),
    default=None,
    help="Pin the simulator's clock at this UTC instant (e.g. 2024-11-26T18:00:00Z); "
    "default: the wall clock. A pinned clock can be moved with POST /sim/clock.",
)
@click.option(
    "--unauthenticated",
    is_flag=True,
    help="Start with nobody logged in (auth status false, 401s) until POST /sim/login.",
)
@click.option(
    "--session-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds without requests (on the simulator's clock) after which the "
    "brokerage session ends; 0 never ends it.",
)
@click.option(
    "--penalty-box",
    default=600.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds every request gets 429 after a pacing limit is exceeded.",
)
@click.option("--no-pacing", is_flag=True, help="Turn all rate limits off (CPU benchmarks).")
@click.option(
    "--bulk-positions",
    default=250,
    show_default=True,
    type=click.IntRange(min=0),
    help="Positions of the second account (paging); 0 leaves it out.",
)
@click.option(
    "--login",
    type=click.Choice(LOGIN_MODES),
    default="individual",
    show_default=True,
    help="Kind of login: 'advisor' lists the group All, a user group and an allocation "
    "profile besides several sub-accounts in /iserver/accounts.",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    type=_Parsed("CONID:DATE:RATIO", tuple, parse_split),
    help="Seed a split (repeatable), e.g. 265598:2020-08-31:4 for a 4:1 split effective "
    "that date; history is served adjusted as of the clock, as IBKR does.",
)
@click.option(
    "--delayed",
    default="none",
    show_default=True,
    type=_Parsed("CONIDS", frozenset, parse_conids),
    help="Comma-separated conids without a market-data subscription: their data is 15 "
    "minutes late and flagged delayed (mdAvailability D, 6509 DpB).",
)
def sim(
    *,
    host: str,
    port: int,
    tls: bool,
    seed: int,
    latency_ms: float,
    faults: FaultSpec,
    token_env: str | None,
    now: datetime | None,
    unauthenticated: bool,
    session_timeout: float,
    penalty_box: float,
    no_pacing: bool,
    bulk_positions: int,
    login: str,
    splits: tuple[tuple[int, date, float], ...],
    delayed: frozenset[int],
) -> None:
    """Run the IBKR Client Portal Gateway simulator (API under /v1/api) until Ctrl-C/SIGTERM.

    Control and inspection endpoints outside the API: GET /sim/stats, POST /sim/reset-stats,
    POST /sim/login, POST /sim/faults {"faults": SPEC}, GET|POST /sim/clock.
    """
    try:
        config = SimulatorConfig(
            host=host,
            port=port,
            tls=tls,
            seed=seed,
            now=now,
            latency_ms=latency_ms,
            faults=faults,
            pacing=PacingConfig(enabled=not no_pacing, penalty_box_s=penalty_box),
            authenticated=not unauthenticated,
            token_env=token_env,
            session_timeout_s=session_timeout or None,
            bulk_positions=bulk_positions,
            login=login,
            splits=splits_mapping(splits),
            delayed_conids=delayed,
        )
        config.resolve_token()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None


async def _serve(config: SimulatorConfig) -> None:
    # Imported here, not at the top, so that `ib-pipeline --help` does not load the market.
    from ib_pipeline.simulator.routes_base import API_PREFIX  # noqa: PLC0415
    from ib_pipeline.simulator.server import start_site  # noqa: PLC0415
    from ib_pipeline.simulator.state import build_state  # noqa: PLC0415
    from ib_pipeline.simulator.tls import make_tls  # noqa: PLC0415

    state = build_state(config)
    tls = make_tls() if config.tls else None
    runner, port = await start_site(
        state, config.host, config.port, tls.server_context if tls else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    scheme = "https" if tls else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    click.echo(f"IBKR gateway simulator serving {scheme}://{host}:{port}{API_PREFIX}")
    if tls:
        click.echo(f"CA certificate (trust this file): {tls.ca_file}")
    clock = "wall clock" if config.now is None else f"pinned at {config.now.isoformat()}"
    pacing = "on" if config.pacing.enabled else "off"
    click.echo(f"seed {config.seed}, clock {clock}, pacing {pacing}, faults {config.faults}")
    if config.login != "individual" or config.splits or config.delayed_conids:
        delayed = ",".join(str(c) for c in sorted(config.delayed_conids)) or "none"
        click.echo(
            f"login {config.login}, splits on {len(config.splits)} conid(s), delayed {delayed}"
        )
    click.echo("Press Ctrl-C to stop.")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if tls:
            shutil.rmtree(tls.ca_file.parent, ignore_errors=True)
    click.echo("simulator stopped")
