"""What the simulated broker can hold, and what each holding is worth now.

Stocks and ETFs come from the synthetic market's universe and are priced at
`Market.last_price`. A realistic account with hundreds of positions holds options, since the
same stock can be held only once, so when an account needs more positions than the universe has
stocks, the rest are equity options on universe stocks: stable synthetic conids, OCC-style
descriptions, a multiplier of 100, and a deterministic price (intrinsic value plus a time value
that fades with moneyness) derived from the underlying's last price.

Pure valuation: nothing here changes an account.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import date, timedelta

from ib_pipeline.simulator.instruments import UNIVERSE, Instrument, by_conid
from ib_pipeline.simulator.market import Market

OPTION_CONID_BASE = 880_000_000
"""Synthetic option conids are ``OPTION_CONID_BASE + index``: stable for a given account setup
and far from the universe's real-looking conids."""

OPTION_MULTIPLIER = 100


@dataclass(frozen=True)
class Contract:
    """A holdable contract: a universe instrument (``asset_class`` STK) or a synthetic option."""

    conid: int
    symbol: str
    asset_class: str  # "STK", "OPT"
    description: str  # the gateway's contractDesc
    company_name: str
    currency: str
    listing_exchange: str
    multiplier: int
    underlying: int | None = None  # options: the underlying's conid
    strike: float | None = None
    right: str | None = None  # "C" or "P"
    expiry: date | None = None

    @property
    def is_option(self) -> bool:
        return self.asset_class == "OPT"


def stock_contract(instrument: Instrument) -> Contract:
    return Contract(
        conid=instrument.conid,
        symbol=instrument.symbol,
        asset_class=instrument.sec_type,
        description=instrument.symbol,
        company_name=instrument.company_name,
        currency=instrument.currency,
        listing_exchange=instrument.listing_exchange,
        multiplier=1,
    )


def equity_instruments(listed_on: date) -> list[Instrument]:
    """The universe's stocks and ETFs listed by ``listed_on``, by conid: what accounts hold."""
    return sorted(
        (i for i in UNIVERSE if i.sec_type == "STK" and i.first_date <= listed_on),
        key=lambda i: i.conid,
    )


def option_contract(
    index: int, underlying: Instrument, reference_price: float, today: date
) -> Contract:
    """The ``index``-th synthetic option, on ``underlying``: strikes step through 80%..125% of
    ``reference_price``, calls and puts alternate, expiries are the third Friday of the next
    six months after ``today``."""
    step = _strike_step(reference_price)
    moneyness = 0.80 + 0.05 * (index % 10)
    strike = max(step, round(reference_price * moneyness / step) * step)
    right = "C" if (index // 10) % 2 == 0 else "P"
    expiry = _third_friday(today, months_ahead=1 + (index // 20) % 6)
    occ = f"{underlying.symbol:<6}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"
    description = (
        f"{underlying.symbol} {expiry:%b%Y}".upper()
        + f" {strike:g} {right} [{occ} {OPTION_MULTIPLIER}]"
    )
    return Contract(
        conid=OPTION_CONID_BASE + index,
        symbol=underlying.symbol,
        asset_class="OPT",
        description=description,
        company_name=underlying.company_name,
        currency=underlying.currency,
        listing_exchange="AMEX",
        multiplier=OPTION_MULTIPLIER,
        underlying=underlying.conid,
        strike=float(strike),
        right=right,
        expiry=expiry,
    )


def contract_price(market: Market, contract: Contract) -> float:
    """The contract's price per unit (per share for options) at the market's current time."""
    if not contract.is_option:
        return float(market.last_price(contract.conid))
    if contract.underlying is None or contract.strike is None:
        raise ValueError(f"option {contract.conid} lacks its underlying or strike")
    spot = float(market.last_price(contract.underlying))
    strike = contract.strike
    intrinsic = max(0.0, spot - strike) if contract.right == "C" else max(0.0, strike - spot)
    time_value = 0.03 * spot * math.exp(-abs(spot - strike) / (0.08 * spot))
    return max(0.01, round(intrinsic + time_value, 2))


def contract_for(conid: int, options: dict[int, Contract]) -> Contract:
    """The contract with ``conid``: a known synthetic option or a universe instrument (KeyError
    if neither)."""
    if conid in options:
        return options[conid]
    return stock_contract(by_conid(conid))


def _strike_step(price: float) -> float:
    if price < 25:
        return 0.5
    if price < 200:
        return 1.0
    return 5.0


def _third_friday(today: date, months_ahead: int) -> date:
    month_index = today.month - 1 + months_ahead
    year, month = today.year + month_index // 12, month_index % 12 + 1
    first = date(year, month, 1)
    first_friday = first + timedelta(days=(calendar.FRIDAY - first.weekday()) % 7)
    return first_friday + timedelta(weeks=2)
