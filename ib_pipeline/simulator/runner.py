"""`Simulator`: the gateway simulator as a Python object, served from a background thread.

Tests, benchmarks and the demo need a real HTTP gateway without a separate process: a
`Simulator` runs the aiohttp server on its own event loop in a daemon thread, on 127.0.0.1 and a
free port by default, and stops cleanly (server closed, loop closed, thread joined, temporary TLS
files removed) when its ``with`` block ends. Its attributes give direct access to the run's
clock, market, broker and ground truth, and its methods change the run (faults, bad data, login,
session drop) from the test's thread.

The CLI uses the same pieces (`build_state`, `start_site`) in the foreground instead.

What it must never do: answer requests itself (the server does), or leave a thread, a loop, a
port or a TLS file behind once stopped.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from ib_pipeline.clock import Clock, FixedClock
from ib_pipeline.simulator.bad_data import BadDataSpec
from ib_pipeline.simulator.broker import Broker
from ib_pipeline.simulator.config import FaultSpec, SimulatorConfig
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.routes_base import API_PREFIX
from ib_pipeline.simulator.server import sim_stats, start_site
from ib_pipeline.simulator.state import PositionsPageFault, SimState, build_state
from ib_pipeline.simulator.tls import TlsMaterial, make_tls
from ib_pipeline.simulator.truth import SimulatorTruth

START_TIMEOUT_S = 30.0


class Simulator:
    """A running gateway simulator. Use as a context manager (or call `start`/`stop`)."""

    def __init__(
        self, config: SimulatorConfig | None = None, *, clock: Clock | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self._state: SimState = build_state(self.config, clock)
        self._truth = SimulatorTruth(self._state.market, self._state.broker)
        self._tls: TlsMaterial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._startup_error: BaseException | None = None

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not running"
        return f"Simulator({where}, seed={self.config.seed}, clock={self.clock!r})"

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving; returns once the port is bound (raises what startup raised)."""
        if self._thread is not None:
            raise RuntimeError("this simulator is already running")
        if self.config.tls:
            self._tls = make_tls()
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="ib-gateway-simulator", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the simulator did not start within {START_TIMEOUT_S:g} s")
        if self._startup_error is not None:
            self._thread.join()
            self._cleanup_files()
            self._thread = None
            raise RuntimeError("the simulator failed to start") from self._startup_error

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("no event loop to run the simulator on")
        asyncio.set_event_loop(loop)
        try:
            context = self._tls.server_context if self._tls else None
            self._runner, self._port = loop.run_until_complete(
                start_site(self._state, self.config.host, self.config.port, context)
            )
        except BaseException as exc:  # reported to the starting thread, which re-raises it
            self._startup_error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop serving and release the port, the loop, the thread and the TLS files."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._runner = None
        self._port = None
        self._cleanup_files()

    def _cleanup_files(self) -> None:
        if self._tls is not None:
            shutil.rmtree(self._tls.ca_file.parent, ignore_errors=True)
            self._tls = None

    # -- where -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator is not running")
        return self._port

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:49152``."""
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base a client uses, e.g. ``http://127.0.0.1:49152/v1/api``."""
        return self.url + API_PREFIX

    @property
    def ca_file(self) -> Path:
        """The CA certificate that verifies the server's certificate (TLS runs only)."""
        if self._tls is None:
            raise RuntimeError("ca_file exists only while a TLS simulator runs (tls=True)")
        return self._tls.ca_file

    # -- what it holds -------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self._state.clock

    @property
    def market(self) -> Market:
        return self._state.market

    @property
    def broker(self) -> Broker:
        return self._state.broker

    @property
    def truth(self) -> SimulatorTruth:
        return self._truth

    @property
    def state(self) -> SimState:
        """Everything the server works on (for tools that need more than the shortcuts)."""
        return self._state

    def stats(self) -> dict[str, Any]:
        """The same as ``GET /sim/stats``."""
        return sim_stats(self._state)

    def reset_stats(self) -> None:
        """Zero the counters and empty the penalty box."""
        self._state.reset_stats()

    # -- changing the run ----------------------------------------------------------------------

    def advance(self, delta: timedelta) -> None:
        """Move a fixed clock forward (tests); the wall clock cannot be moved."""
        clock = self._state.clock
        if not isinstance(clock, FixedClock):
            raise TypeError("advance needs a FixedClock: configure SimulatorConfig(now=...)")
        clock.advance(delta)

    def set_faults(self, spec: FaultSpec | str) -> None:
        """Replace the injected faults (a FaultSpec or a ``--faults`` string); numbering and
        draws restart, so the same requests see the same faults again."""
        self._state.set_faults(FaultSpec.parse(spec) if isinstance(spec, str) else spec)

    def set_bad_data(self, spec: BadDataSpec | None) -> None:
        """Corrupt history responses as ``spec`` says; None restores the faults' ``bad_bars``."""
        self._state.set_bad_data(spec)

    def set_positions_fault(
        self, page: int, *, account: str | None = None, rows: int = 0, times: int | None = 1
    ) -> None:
        """Answer positions page ``page`` (of ``account``, or of any account) with only its
        first ``rows`` positions (0: ``[]``) for the next ``times`` requests of it (None:
        always): a truncated listing, as the red team saw the gateway send."""
        self._state.set_positions_fault(PositionsPageFault(page, account, rows, times))

    def clear_positions_faults(self) -> None:
        self._state.set_positions_fault(None)

    def set_quote_values(self, overrides: dict[int, dict[str, object]] | None) -> None:
        """Send these raw snapshot field values for these conids (``{conid: {"31": "N/A"}}``)
        in place of the market's, in every snapshot answer with fields; None stops."""
        self._state.set_quote_overrides(overrides)

    def login(self) -> None:
        """What a user's browser login does: SSO and brokerage sessions start afresh."""
        self._state.session.login()

    def logout(self) -> None:
        self._state.session.logout()

    def drop_session(self) -> None:
        """End the brokerage session now (the SSO session stays), as the gateway does at times."""
        self._state.session.drop_brokerage()
