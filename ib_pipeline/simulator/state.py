"""Everything one simulator run holds, bundled for the request handlers.

The route handlers, the middleware and the `Simulator` facade all work on one `SimState`; it is
built once per run by `build_state` from a `SimulatorConfig` (and an optional clock), so the
server has no module-level globals and two simulators in one process never share anything.

What it must never do: hold request logic; it only bundles the run's parts and swaps the fault
and bad-data settings under its lock.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

from ib_pipeline.clock import Clock, FixedClock, SystemClock
from ib_pipeline.simulator.auth import GatewaySession
from ib_pipeline.simulator.bad_data import BadDataSpec
from ib_pipeline.simulator.broker import Broker
from ib_pipeline.simulator.config import FaultSpec, SimulatorConfig
from ib_pipeline.simulator.faults import FaultInjector
from ib_pipeline.simulator.market import Market
from ib_pipeline.simulator.pacing import Pacer
from ib_pipeline.simulator.stats import SimStats


@dataclass
class PositionsPageFault:
    """Answer page ``page`` of the positions listing (of ``account``, or of every account when
    None) with only its first ``rows`` positions (0: ``[]``), ``times`` times (None: always)."""

    page: int
    account: str | None = None
    rows: int = 0
    times: int | None = 1


@dataclass
class SimState:
    """The mutable state of one simulator run (each part is thread-safe on its own)."""

    config: SimulatorConfig
    clock: Clock
    market: Market
    broker: Broker
    session: GatewaySession
    pacer: Pacer
    stats: SimStats
    faults: FaultInjector
    session_id: str
    explicit_bad_data: BadDataSpec | None = None
    positions_faults: list[PositionsPageFault] = field(default_factory=list)
    quote_overrides: dict[int, dict[str, object]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset_stats(self) -> None:
        """Zero the counters and empty the penalty box (``POST /sim/reset-stats``)."""
        self.stats.reset()
        self.pacer.reset()

    def set_faults(self, spec: FaultSpec) -> None:
        """Replace the fault spec; the request numbering and the draws start over."""
        with self._lock:
            self.faults = FaultInjector(spec)

    def set_bad_data(self, spec: BadDataSpec | None) -> None:
        """Corrupt history responses exactly as ``spec`` says (None: back to the faults' rate)."""
        with self._lock:
            self.explicit_bad_data = spec

    def set_positions_fault(self, fault: PositionsPageFault | None) -> None:
        """Add a positions-page fault (None: clear them all)."""
        with self._lock:
            if fault is None:
                self.positions_faults.clear()
            else:
                self.positions_faults.append(fault)

    def positions_page(self, account_id: str, page: int) -> list[dict[str, object]]:
        """The broker's page, cut short if a positions fault is due for it."""
        answer = self.broker.positions_page(account_id, page)
        with self._lock:
            for fault in self.positions_faults:
                due = fault.times is None or fault.times > 0
                if due and fault.page == page and fault.account in (None, account_id):
                    if fault.times is not None:
                        fault.times -= 1
                    return list(answer[: fault.rows])
        return list(answer)

    def set_quote_overrides(self, overrides: dict[int, dict[str, object]] | None) -> None:
        """Replace snapshot fields of some conids with given raw values (None: clear)."""
        with self._lock:
            self.quote_overrides = {int(c): dict(v) for c, v in (overrides or {}).items()}

    def quote_override(self, conid: int) -> dict[str, object]:
        with self._lock:
            return dict(self.quote_overrides.get(conid, {}))

    def history_bad_data(self) -> BadDataSpec | None:
        """The bad-data spec for history responses now: the explicit one if set, else one made
        from the faults' ``bad_bars`` rate, else None (clean data)."""
        with self._lock:
            if self.explicit_bad_data is not None:
                return self.explicit_bad_data
            spec = self.faults.spec
        if spec.bad_bars <= 0:
            return None
        return BadDataSpec.mixed(spec.bad_bars, seed=spec.seed)


def build_state(config: SimulatorConfig, clock: Clock | None = None) -> SimState:
    """Assemble a run's state. ``clock`` overrides ``config.now`` (a FixedClock at ``now``, or the
    wall clock when ``now`` is None)."""
    if clock is None:
        clock = FixedClock(config.now) if config.now is not None else SystemClock()
    market = Market(config.seed, clock, splits=config.splits, delayed_conids=config.delayed_conids)
    broker = Broker(
        market,
        seed=config.seed,
        main_account=config.main_account,
        bulk_account=config.bulk_account if config.bulk_positions else None,
        bulk_positions=config.bulk_positions,
        starting_cash=config.starting_cash,
        advisor=config.login == "advisor",
    )
    session = GatewaySession(
        clock,
        logged_in=config.authenticated,
        timeout_s=config.session_timeout_s,
        token=config.resolve_token(),
    )
    digest = hashlib.sha256(f"sim-session:{config.seed}".encode()).hexdigest()
    return SimState(
        config=config,
        clock=clock,
        market=market,
        broker=broker,
        session=session,
        pacer=Pacer(config.pacing),
        stats=SimStats(),
        faults=FaultInjector(config.faults),
        session_id=f"{digest[:7]}.{digest[7:15]}",
    )
