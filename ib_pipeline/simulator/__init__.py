"""The bundled IBKR Client Portal Gateway simulator.

A real HTTP server answering the gateway's paths under ``/v1/api`` with the gateway's payload
shapes and quirks, its pacing (429 and the penalty box), its session rules, and injectable faults,
over a deterministic synthetic market. It is the project's embedded default: the demo, the tests
and the benchmarks talk to it over real HTTP.

    from ib_pipeline.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(now=datetime(2024, 11, 26, 18, tzinfo=UTC))) as sim:
        httpx.get(sim.base_url + "/iserver/auth/status")

Exports are loaded lazily so that importing the package (the ``ib-pipeline`` CLI does) stays
cheap; the market and the server load on first use.

The modules, from the outside in:

- Running it: `runner` (`Simulator`, a server on a background thread), `cli` (``ib-pipeline
  sim``), `config` (every setting and default), `state` (what one run holds), `tls`.
- HTTP: `server` (the app and its middleware: pacing, faults, session checks), `routes_base`
  (route table entry, JSON responses), one `routes_*` module per API area.
- Gateway behaviour: `auth` (SSO and brokerage sessions), `pacing` (limits, penalty box),
  `faults` (which request fails, and how), `stats` (counters for tests).
- Payloads, no HTTP: `history`, `snapshot`, `search`, `futures` (``/trsrv/futures``,
  ``/iserver/secdef/info``), `broker` (accounts, portfolio; advisor logins), `broker_orders`,
  `broker_contracts`, `bad_data` (corrupted history rows), `answers` (error bodies, JSON
  encoding), `params` (numbers and flags read from requests).
- The market: `instruments` (the universe), `price_model` (a session's minutes from the seed),
  `bars` (bar containers, exact aggregation), `market` (what is complete at the clock's time,
  quotes), `epoch` (epoch milliseconds).
- Checking a loader: `truth` (`MarketTruth`, `SimulatorTruth`), `spec_deviations` (where the
  real gateway departs from the OpenAPI spec), `real_world` (the one table of what the
  simulator believes about advisor logins, splits, futures months, non-US exchanges and delayed
  data, and why: issue 13's cases, each opt-in through `SimulatorConfig`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ib_pipeline.lazy import lazy_exports

if TYPE_CHECKING:
    from ib_pipeline.simulator.config import (
        FAULT_GRAMMAR,
        FaultSpec,
        PacingConfig,
        SimulatorConfig,
    )
    from ib_pipeline.simulator.runner import Simulator
    from ib_pipeline.simulator.truth import SimulatorTruth

_EXPORTS = {
    "Simulator": "ib_pipeline.simulator.runner",
    "SimulatorConfig": "ib_pipeline.simulator.config",
    "FaultSpec": "ib_pipeline.simulator.config",
    "PacingConfig": "ib_pipeline.simulator.config",
    "FAULT_GRAMMAR": "ib_pipeline.simulator.config",
    "SimulatorTruth": "ib_pipeline.simulator.truth",
}

__all__ = [
    "FAULT_GRAMMAR",
    "FaultSpec",
    "PacingConfig",
    "Simulator",
    "SimulatorConfig",
    "SimulatorTruth",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
