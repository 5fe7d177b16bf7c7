"""Settings of the gateway simulator, with every default in one place.

Three plain, frozen objects: `PacingConfig` (the published rate limits and the penalty box),
`FaultSpec` (which failures to inject, parsed from the ``--faults`` string) and `SimulatorConfig`
(everything else: address, TLS, seed, clock, auth mode, accounts). They hold data only: nothing
here opens a socket, reads the clock or touches the market. The bearer token is never part of a
repr, so a config can be logged safely.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from typing import Any

DEFAULT_SEED = 42
DEFAULT_MAIN_ACCOUNT = "DU1234567"
DEFAULT_BULK_ACCOUNT = "DU7654321"
LOGIN_MODES = ("individual", "advisor")
"""``individual``: one login, its own account(s) (the default). ``advisor``: a financial
advisor's login, whose /iserver/accounts also lists the group All, a user group and an
allocation profile besides several real sub-accounts (see `ib_pipeline.simulator.real_world`)."""


@dataclass(frozen=True)
class PacingConfig:
    """The gateway's published pacing limits (spec/README.md, "Pacing").

    Rates are token buckets (see `ib_pipeline.simulator.pacing`): ``N per period`` admits a burst
    of N requests and then one every ``period / N`` seconds. Exceeding any limit answers HTTP 429
    and opens the penalty box for ``penalty_box_s`` seconds, during which every request gets 429.
    ``enabled=False`` turns all of it off (CPU benchmarks).
    """

    enabled: bool = True
    global_per_s: float = 10.0
    snapshot_per_s: float = 10.0
    history_concurrency: int = 5
    live_orders_interval_s: float = 5.0
    portfolio_accounts_interval_s: float = 5.0
    tickle_per_s: float = 1.0
    sso_validate_interval_s: float = 60.0
    penalty_box_s: float = 600.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled":
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"PacingConfig.{f.name} must be a positive number, got {value!r}")


# --faults keys -> FaultSpec attribute names, in the order they are documented.
_FAULT_KEYS: dict[str, str] = {
    "5xx": "rate_5xx",
    "429": "rate_429",
    "slow": "rate_slow",
    "slow_s": "slow_s",
    "drop": "rate_drop",
    "truncate": "rate_truncate",
    "session_drop_at": "session_drop_at",
    "accounts_reset_at": "accounts_reset_at",
    "bad_bars": "bad_bars",
    "seed": "seed",
}
_RATE_KEYS = ("5xx", "429", "slow", "drop", "truncate")

FAULT_GRAMMAR = """\
A comma-separated list of KEY=VALUE pairs (no spaces needed; "" or "none" means no faults):
  5xx=R                 rate (0..1) of requests answered 500/503 with a gateway error body
  429=R                 rate of requests answered 429 (one-off; no penalty box)
  slow=R                rate of requests delayed by slow_s seconds before the answer
  slow_s=S              delay of a slow response in seconds (default 3)
  drop=R                rate of requests whose connection is closed without any response
  truncate=R            rate of 200 responses whose JSON body is cut in the middle
  session_drop_at=N     the N-th request (1-based) finds the brokerage session dropped: 401
                        on /iserver/* until POST /iserver/auth/ssodh/init (or reauthenticate)
  accounts_reset_at=N   the N-th request finds the gateway has forgotten /iserver/accounts
                        ("Please query /accounts first" until it is called again)
  bad_bars=R            rate of invalid bars injected into history responses
  seed=N                seed of the fault draws (default 0)
The five per-request rates (5xx, 429, slow, drop, truncate) must sum to at most 1.
Example: 5xx=0.05,429=0.02,slow=0.01,slow_s=3,drop=0.01,truncate=0.01,session_drop_at=120"""


@dataclass(frozen=True)
class FaultSpec:
    """Which failures the simulator injects, deterministically for a given seed and request order.

    Parsed from the ``--faults`` string by `FaultSpec.parse` (grammar in `FAULT_GRAMMAR`);
    ``str(spec)`` gives the string back.
    """

    rate_5xx: float = 0.0
    rate_429: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 3.0
    rate_drop: float = 0.0
    rate_truncate: float = 0.0
    session_drop_at: int | None = None
    accounts_reset_at: int | None = None
    bad_bars: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for key in (*_RATE_KEYS, "bad_bars"):
            value = getattr(self, _FAULT_KEYS[key])
            if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {key}={value!r}: a rate must be between 0 and 1")
        total = sum(getattr(self, _FAULT_KEYS[k]) for k in _RATE_KEYS)
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"fault rates {', '.join(_RATE_KEYS)} sum to {total:g}; they must sum to at most 1"
            )
        if not math.isfinite(self.slow_s) or self.slow_s < 0:
            raise ValueError(f"fault slow_s={self.slow_s!r}: must be a non-negative number")
        for key in ("session_drop_at", "accounts_reset_at"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"fault {key}={value!r}: must be a request number >= 1")

    @property
    def active(self) -> bool:
        """Whether any fault at all is configured."""
        return self != FaultSpec(seed=self.seed, slow_s=self.slow_s)

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """Parse a ``--faults`` string; raise ValueError naming the bad key or value."""
        if text is None or text.strip().lower() in ("", "none"):
            return cls()
        values: dict[str, Any] = {}
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise ValueError(f"fault {item!r} is not KEY=VALUE; valid keys: {_valid_keys()}")
            if key not in _FAULT_KEYS:
                raise ValueError(f"unknown fault key {key!r}; valid keys: {_valid_keys()}")
            if _FAULT_KEYS[key] in values:
                raise ValueError(f"fault key {key!r} given twice")
            values[_FAULT_KEYS[key]] = _parse_value(key, value.strip())
        return cls(**values)

    def __str__(self) -> str:
        parts = []
        default = FaultSpec()
        for key, attr in _FAULT_KEYS.items():
            value = getattr(self, attr)
            if value != getattr(default, attr):
                parts.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
        return ",".join(parts) or "none"


def _check_conids(
    splits: Mapping[int, Sequence[tuple[date, float]]], delayed: frozenset[int]
) -> None:
    """ValueError naming any conid of ``splits`` or ``delayed`` the simulator does not serve."""
    # Imported here: the instrument tables load numpy and the calendars, which the CLI must not
    # pay for before it has parsed its options.
    from ib_pipeline.simulator.instruments import by_conid  # noqa: PLC0415

    for name, conids in (("splits", list(splits)), ("delayed_conids", sorted(delayed))):
        for conid in conids:
            try:
                by_conid(conid)
            except KeyError:
                raise ValueError(f"{name}: unknown conid {conid}") from None


def _valid_keys() -> str:
    return ", ".join(_FAULT_KEYS)


def _parse_value(key: str, text: str) -> int | float:
    integer = key in ("session_drop_at", "accounts_reset_at", "seed")
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"fault {key}={text!r}: expected {kind}") from None


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that shapes one simulator run.

    - ``host``/``port``: where to listen; port 0 picks a free port.
    - ``tls``: serve HTTPS with a fresh self-signed certificate (see `Simulator.ca_file`).
    - ``seed``: the synthetic market's seed (same seed, same bars).
    - ``now``: pin the simulator's clock at this instant (a settable FixedClock); None means the
      wall clock.
    - ``latency_ms``: added to every /v1/api response (slept, so concurrency still works).
    - ``authenticated``: False starts with nobody logged in (auth status all false, 401s) until
      `Simulator.login` or ``POST /sim/login``.
    - ``token``/``token_env``: require ``Authorization: Bearer <token>`` on every /v1/api request;
      the token is given directly or read from the environment variable ``token_env`` names.
    - ``session_timeout_s``: the brokerage session ends after this many seconds without requests,
      measured on the simulator's clock; None never times out.
    - ``main_account``: the trading account; ``bulk_account`` a second account holding
      ``bulk_positions`` small positions so position paging is exercised (0 = no second account).
    - ``login``: ``"individual"`` (default) or ``"advisor"`` (`LOGIN_MODES`): an advisor login
      adds sub-accounts, and /iserver/accounts lists groups and profiles besides the accounts.
    - ``splits``: conid -> [(effective date, ratio)]; history is served split-adjusted as of the
      clock's date, exactly as the real service (empty: no splits).
    - ``delayed_conids``: instruments the account has no market-data subscription for: their
      history and snapshots lag 15 minutes and are flagged delayed (``mdAvailability``, 6509).
    """

    host: str = "127.0.0.1"
    port: int = 0
    tls: bool = False
    seed: int = DEFAULT_SEED
    now: datetime | None = None
    latency_ms: float = 0.0
    faults: FaultSpec = field(default_factory=FaultSpec)
    pacing: PacingConfig = field(default_factory=PacingConfig)
    authenticated: bool = True
    token: str | None = field(default=None, repr=False)
    token_env: str | None = None
    session_timeout_s: float | None = 300.0
    main_account: str = DEFAULT_MAIN_ACCOUNT
    bulk_account: str = DEFAULT_BULK_ACCOUNT
    bulk_positions: int = 250
    starting_cash: float = 1_000_000.0
    login: str = "individual"
    splits: Mapping[int, Sequence[tuple[date, float]]] = field(default_factory=dict, hash=False)
    delayed_conids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if not math.isfinite(self.latency_ms) or self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")
        if self.session_timeout_s is not None and not self.session_timeout_s > 0:
            raise ValueError(f"session_timeout_s must be > 0 or None, got {self.session_timeout_s}")
        if self.now is not None and self.now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got naive {self.now.isoformat()}")
        if self.bulk_positions < 0:
            raise ValueError(f"bulk_positions must be >= 0, got {self.bulk_positions}")
        if self.bulk_positions and self.bulk_account == self.main_account:
            raise ValueError("bulk_account must differ from main_account")
        if self.token is not None and not self.token:
            raise ValueError("token must not be empty")
        if not self.starting_cash > 0:
            raise ValueError(f"starting_cash must be > 0, got {self.starting_cash}")
        if self.login not in LOGIN_MODES:
            raise ValueError(f"login must be one of {', '.join(LOGIN_MODES)}, got {self.login!r}")
        if not isinstance(self.delayed_conids, frozenset):
            object.__setattr__(self, "delayed_conids", frozenset(self.delayed_conids))
        if self.splits or self.delayed_conids:
            _check_conids(self.splits, self.delayed_conids)

    def resolve_token(self) -> str | None:
        """The bearer token to require, or None. Reads ``token_env`` from the environment;
        raises ValueError (naming the variable, never its value) if it is unset or empty."""
        if self.token is not None:
            return self.token
        if self.token_env is None:
            return None
        value = os.environ.get(self.token_env, "")
        if not value:
            raise ValueError(
                f"environment variable {self.token_env} (--token-env) is unset or empty"
            )
        return value

    def with_changes(self, **changes: Any) -> SimulatorConfig:
        """A copy with some settings changed (unknown names raise TypeError)."""
        return replace(self, **changes)
