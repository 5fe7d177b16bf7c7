"""The simulator's instrument universe: what can be searched, quoted and charted, under which conid.

Conids are part of the contract with every client and every stored dataset, so they never change:
the real IBKR conids are used where they are well known (AAPL 265598, SPY 756733, EUR.USD
12087792, ...); every other conid is invented and lives at 900,000,000 and above, a range real
conids have not reached, so an invented id is never mistaken for a real one.

Each instrument also carries the few numbers that shape its synthetic market (a base price, a
daily volatility, an average daily volume, a quoted spread). They are fixed per instrument and do
not depend on the seed: the seed decides the path, these decide its scale.

This module holds data and lookups only. It never generates prices (see `price_model`) and never
speaks HTTP.
"""

from __future__ import annotations

import calendar
import functools
import itertools
from dataclasses import dataclass
from datetime import date, timedelta

from ib_pipeline.calendars import TradingHours, trading_hours_for

HISTORY_START = date(2005, 1, 3)
"""First date of history for instruments that were trading before it (the first 2005 session)."""

_INVENTED_CONID_BASE = 900_000_000
_invented_conids = itertools.count(_INVENTED_CONID_BASE + 1)
"""Hands out invented conids in declaration order, so they are stable while the lists below are
only ever appended to."""


@dataclass(frozen=True)
class Instrument:
    """One tradable contract as the simulated gateway knows it.

    ``lot_size`` is the unit of the gateway's volumes and sizes: 100 for US stocks and ETFs
    (history ``v`` and snapshot sizes are in lots), 1 otherwise. The market itself always counts
    volume in shares (units).
    """

    conid: int
    symbol: str
    sec_type: str  # "STK" (stocks and ETFs), "FUT", "CASH"
    exchange: str  # primary: "NYSE", "NASDAQ", "ARCA", "CME", "IDEALPRO"
    listing_exchange: str  # as the gateway shows it, e.g. "NASDAQ.NMS"
    company_name: str
    currency: str
    is_etf: bool
    lot_size: int
    min_tick: float
    first_date: date
    # Synthetic-market parameters (scale only; the seed decides the path).
    base_price: float
    daily_vol: float  # standard deviation of a session's log return
    avg_daily_volume: int  # regular-session volume of an average day, in shares (units)
    spread_ticks: int  # bid and ask sit this many ticks either side of the last price
    # Dated futures only (None otherwise): the contract's expiration and last trade date, and
    # the conid of its root (the continuous contract whose market the month follows).
    expiry: date | None = None
    last_trade_date: date | None = None
    underlying_conid: int | None = None
    multiplier: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.conid <= 0:
            problems.append("conid must be positive")
        if self.min_tick <= 0 or abs(1 / self.min_tick - round(1 / self.min_tick)) > 1e-6:
            problems.append("min_tick must be positive and divide 1 (0.01, 0.25, 0.00005...)")
        if self.lot_size <= 0:
            problems.append("lot_size must be positive")
        if self.base_price <= 0 or self.daily_vol <= 0 or self.avg_daily_volume <= 0:
            problems.append("base_price, daily_vol and avg_daily_volume must be positive")
        if self.spread_ticks < 1:
            problems.append("spread_ticks must be at least 1")
        if self.last_trade_date is not None and self.last_trade_date < self.first_date:
            problems.append("last_trade_date must not precede first_date")
        if problems:
            raise ValueError(
                f"invalid instrument {self.symbol} ({self.conid}): {'; '.join(problems)}"
            )

    @property
    def is_dated_future(self) -> bool:
        """A futures contract month (its own conid, an expiry), not the continuous root."""
        return self.expiry is not None

    @property
    def trading_hours(self) -> TradingHours:
        """The exchange hours its sessions follow (holidays and half days included)."""
        return trading_hours_for(self.sec_type, self.exchange)

    @property
    def price_decimals(self) -> int:
        """Decimals that write any multiple of ``min_tick`` exactly (0.01 -> 2, 0.00005 -> 5)."""
        return _decimals(self.min_tick)

    @property
    def ticks_per_unit(self) -> int:
        """How many ticks make one unit of price (100 for 0.01): prices are integers over this."""
        return round(1 / self.min_tick)

    @property
    def half_spread(self) -> float:
        """How far the bid and the ask sit from the last price (``spread_ticks`` ticks)."""
        return self.spread_ticks * self.min_tick

    @property
    def price_factor(self) -> int:
        """The gateway's ``priceFactor``: prices times this are integers (used in summaries)."""
        return int(10**self.price_decimals)


def _decimals(tick: float) -> int:
    text = f"{tick:.10f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def _stk(  # noqa: PLR0917 - one row of the table below, read positionally
    conid: int | None,
    symbol: str,
    name: str,
    exchange: str,
    price: float,
    vol: float,
    adv_millions: float,
    first: date = HISTORY_START,
    *,
    etf: bool = False,
    spread: int = 1,
) -> Instrument:
    listing = {"NASDAQ": "NASDAQ.NMS", "NYSE": "NYSE", "ARCA": "ARCA"}[exchange]
    return Instrument(
        conid=conid if conid is not None else next(_invented_conids),
        symbol=symbol,
        sec_type="STK",
        exchange=exchange,
        listing_exchange=listing,
        company_name=name,
        currency="USD",
        is_etf=etf,
        lot_size=100,
        min_tick=0.01,
        first_date=first,
        base_price=price,
        daily_vol=vol,
        avg_daily_volume=int(adv_millions * 1_000_000),
        spread_ticks=spread,
    )


# Known real conids; None means "invent one" (in declaration order: append new instruments at the
# end of the last list, never in between, or the invented conids of later ones would shift).
_STOCKS: tuple[Instrument, ...] = (
    # NASDAQ
    _stk(265598, "AAPL", "APPLE INC", "NASDAQ", 180.0, 0.017, 60),
    _stk(272093, "MSFT", "MICROSOFT CORP", "NASDAQ", 380.0, 0.016, 25),
    _stk(3691937, "AMZN", "AMAZON.COM INC", "NASDAQ", 170.0, 0.020, 45),
    _stk(4815747, "NVDA", "NVIDIA CORP", "NASDAQ", 120.0, 0.030, 250),
    _stk(208813719, "GOOGL", "ALPHABET INC-CL A", "NASDAQ", 150.0, 0.018, 30),
    _stk(
        107113386,
        "META",
        "META PLATFORMS INC-CLASS A",
        "NASDAQ",
        480.0,
        0.025,
        15,
        date(2012, 5, 18),
    ),
    _stk(76792991, "TSLA", "TESLA INC", "NASDAQ", 220.0, 0.035, 100, date(2010, 6, 29)),
    _stk(15124833, "NFLX", "NETFLIX INC", "NASDAQ", 600.0, 0.025, 4),
    _stk(270639, "INTC", "INTEL CORP", "NASDAQ", 35.0, 0.020, 40),
    _stk(4391, "AMD", "ADVANCED MICRO DEVICES", "NASDAQ", 150.0, 0.030, 50),
    _stk(None, "CSCO", "CISCO SYSTEMS INC", "NASDAQ", 50.0, 0.015, 18),
    _stk(None, "ADBE", "ADOBE INC", "NASDAQ", 520.0, 0.020, 3),
    _stk(None, "PEP", "PEPSICO INC", "NASDAQ", 170.0, 0.010, 5),
    _stk(None, "COST", "COSTCO WHOLESALE CORP", "NASDAQ", 800.0, 0.012, 2),
    _stk(None, "AVGO", "BROADCOM INC", "NASDAQ", 160.0, 0.025, 25, date(2009, 8, 6)),
    _stk(None, "QCOM", "QUALCOMM INC", "NASDAQ", 160.0, 0.020, 8),
    _stk(None, "TXN", "TEXAS INSTRUMENTS INC", "NASDAQ", 180.0, 0.015, 5),
    _stk(None, "SBUX", "STARBUCKS CORP", "NASDAQ", 95.0, 0.017, 8),
    _stk(None, "AMGN", "AMGEN INC", "NASDAQ", 290.0, 0.014, 3),
    _stk(None, "GILD", "GILEAD SCIENCES INC", "NASDAQ", 75.0, 0.015, 7),
    _stk(None, "INTU", "INTUIT INC", "NASDAQ", 620.0, 0.018, 1.5),
    _stk(None, "BKNG", "BOOKING HOLDINGS INC", "NASDAQ", 3600.0, 0.018, 0.3, spread=5),
    _stk(None, "ADP", "AUTOMATIC DATA PROCESSING", "NASDAQ", 250.0, 0.011, 2),
    _stk(None, "PYPL", "PAYPAL HOLDINGS INC", "NASDAQ", 65.0, 0.022, 15, date(2015, 7, 6)),
    _stk(None, "ABNB", "AIRBNB INC-CLASS A", "NASDAQ", 140.0, 0.028, 5, date(2020, 12, 10)),
    _stk(None, "ZM", "ZOOM VIDEO COMMUNICATIONS-A", "NASDAQ", 65.0, 0.030, 3, date(2019, 4, 18)),
    _stk(43645865, "IBKR", "INTERACTIVE BROKERS GRO-CL A", "NASDAQ", 110.0, 0.018, 1),
    _stk(None, "QQQ", "INVESCO QQQ TRUST SERIES 1", "NASDAQ", 440.0, 0.012, 40, etf=True),
    # NYSE
    _stk(8314, "IBM", "INTL BUSINESS MACHINES CORP", "NYSE", 180.0, 0.013, 4),
    _stk(None, "JPM", "JPMORGAN CHASE & CO", "NYSE", 190.0, 0.015, 9),
    _stk(None, "BAC", "BANK OF AMERICA CORP", "NYSE", 38.0, 0.018, 40),
    _stk(None, "WMT", "WALMART INC", "NYSE", 65.0, 0.011, 15),
    _stk(None, "KO", "COCA-COLA CO/THE", "NYSE", 62.0, 0.009, 13),
    _stk(None, "XOM", "EXXON MOBIL CORP", "NYSE", 110.0, 0.015, 16),
    _stk(None, "JNJ", "JOHNSON & JOHNSON", "NYSE", 155.0, 0.010, 7),
    _stk(None, "PG", "PROCTER & GAMBLE CO/THE", "NYSE", 165.0, 0.009, 7),
    _stk(None, "DIS", "WALT DISNEY CO/THE", "NYSE", 100.0, 0.016, 10),
    _stk(None, "V", "VISA INC-CLASS A SHARES", "NYSE", 270.0, 0.013, 7, date(2008, 3, 19)),
    _stk(None, "MA", "MASTERCARD INC - A", "NYSE", 460.0, 0.014, 3, date(2006, 5, 25)),
    _stk(None, "HD", "HOME DEPOT INC", "NYSE", 350.0, 0.013, 4),
    _stk(None, "CVX", "CHEVRON CORP", "NYSE", 155.0, 0.015, 8),
    _stk(None, "PFE", "PFIZER INC", "NYSE", 28.0, 0.014, 35),
    _stk(None, "MRK", "MERCK & CO. INC.", "NYSE", 110.0, 0.012, 9),
    _stk(None, "T", "AT&T INC", "NYSE", 20.0, 0.012, 35),
    _stk(None, "VZ", "VERIZON COMMUNICATIONS INC", "NYSE", 40.0, 0.011, 20),
    _stk(None, "UNH", "UNITEDHEALTH GROUP INC", "NYSE", 520.0, 0.014, 4),
    _stk(None, "GS", "GOLDMAN SACHS GROUP INC", "NYSE", 450.0, 0.017, 2.5),
    _stk(None, "NKE", "NIKE INC -CL B", "NYSE", 90.0, 0.016, 10),
    _stk(None, "MCD", "MCDONALD'S CORP", "NYSE", 280.0, 0.010, 3),
    _stk(None, "CAT", "CATERPILLAR INC", "NYSE", 340.0, 0.017, 3),
    _stk(None, "BA", "BOEING CO/THE", "NYSE", 190.0, 0.022, 8),
    _stk(None, "UBER", "UBER TECHNOLOGIES INC", "NYSE", 70.0, 0.028, 20, date(2019, 5, 10)),
    _stk(None, "GE", "GENERAL ELECTRIC CO", "NYSE", 160.0, 0.018, 6),
    _stk(None, "F", "FORD MOTOR CO", "NYSE", 11.0, 0.020, 50),
    # ETFs on ARCA
    _stk(756733, "SPY", "SPDR S&P 500 ETF TRUST", "ARCA", 520.0, 0.010, 70, etf=True),
    _stk(None, "IWM", "ISHARES RUSSELL 2000 ETF", "ARCA", 200.0, 0.014, 30, etf=True),
    _stk(None, "DIA", "SPDR DOW JONES INDUSTRIAL AVERAGE", "ARCA", 390.0, 0.010, 3, etf=True),
    _stk(None, "GLD", "SPDR GOLD SHARES", "ARCA", 210.0, 0.009, 8, etf=True),
    _stk(None, "TLT", "ISHARES 20+ YEAR TREASURY BOND", "ARCA", 92.0, 0.010, 35, etf=True),
    _stk(None, "XLF", "FINANCIAL SELECT SECTOR SPDR", "ARCA", 41.0, 0.013, 40, etf=True),
    _stk(None, "XLE", "ENERGY SELECT SECTOR SPDR", "ARCA", 90.0, 0.015, 15, etf=True),
    _stk(None, "EEM", "ISHARES MSCI EMERGING MARKETS", "ARCA", 41.0, 0.012, 30, etf=True),
    _stk(None, "VTI", "VANGUARD TOTAL STOCK MKT ETF", "ARCA", 255.0, 0.010, 3, etf=True),
    _stk(
        None,
        "HYG",
        "ISHARES IBOXX HIGH YLD CORP",
        "ARCA",
        77.0,
        0.005,
        25,
        date(2007, 4, 11),
        etf=True,
    ),
    _stk(None, "VOO", "VANGUARD S&P 500 ETF", "ARCA", 480.0, 0.010, 5, date(2010, 9, 9), etf=True),
)


def _other(  # noqa: PLR0917 - one row of the table below, read positionally
    conid: int | None,
    symbol: str,
    sec_type: str,
    exchange: str,
    name: str,
    currency: str,
    tick: float,
    price: float,
    vol: float,
    adv: int,
    spread: int = 1,
) -> Instrument:
    return Instrument(
        conid=conid if conid is not None else next(_invented_conids),
        symbol=symbol,
        sec_type=sec_type,
        exchange=exchange,
        listing_exchange=exchange,
        company_name=name,
        currency=currency,
        is_etf=False,
        lot_size=1,
        min_tick=tick,
        first_date=HISTORY_START,
        base_price=price,
        daily_vol=vol,
        avg_daily_volume=adv,
        spread_ticks=spread,
    )


_OTHERS: tuple[Instrument, ...] = (
    # Futures: one continuous contract per root (the simulator does not roll expiries).
    _other(None, "ES", "FUT", "CME", "E-mini S&P 500", "USD", 0.25, 5000.0, 0.010, 1_500_000),
    _other(None, "NQ", "FUT", "CME", "E-mini NASDAQ 100", "USD", 0.25, 18000.0, 0.013, 600_000),
    # Forex on IDEALPRO: volume is in units of the base currency, not lots.
    _other(
        12087792, "EUR.USD", "CASH", "IDEALPRO", "European Monetary Union Euro", "USD",
        0.00005, 1.08, 0.005, 2_000_000_000,
    ),
    _other(
        None, "GBP.USD", "CASH", "IDEALPRO", "British pound", "USD",
        0.00005, 1.27, 0.006, 1_000_000_000,
    ),
    _other(
        None, "USD.JPY", "CASH", "IDEALPRO", "US dollar", "JPY",
        0.005, 150.0, 0.006, 1_500_000_000,
    ),
)  # fmt: skip


UNIVERSE: tuple[Instrument, ...] = _STOCKS + _OTHERS
"""Every instrument the simulator served before issue 13, in a stable order (the demo, the
accounts' holdings and many tests are built on exactly these)."""


def _non_us(  # noqa: PLR0917 - one row of the table below, read positionally
    symbol: str,
    name: str,
    exchange: str,
    currency: str,
    tick: float,
    price: float,
    vol: float,
    adv_millions: float,
) -> Instrument:
    return Instrument(
        conid=next(_invented_conids),
        symbol=symbol,
        sec_type="STK",
        exchange=exchange,
        listing_exchange=exchange,
        company_name=name,
        currency=currency,
        is_etf=False,
        lot_size=1,
        min_tick=tick,
        first_date=HISTORY_START,
        base_price=price,
        daily_vol=vol,
        avg_daily_volume=int(adv_millions * 1_000_000),
        spread_ticks=1,
    )


NON_US_STOCKS: tuple[Instrument, ...] = (
    # Invented conids (no authoritative source for the real ones was at hand: see real_world).
    # Prices in the exchange's quoting unit: LSE in pence (GBp) while the currency reads GBP.
    _non_us("SAP", "SAP SE", "IBIS", "EUR", 0.01, 180.0, 0.016, 1.5),
    _non_us("SIE", "SIEMENS AG-REG", "IBIS", "EUR", 0.01, 170.0, 0.015, 1.2),
    _non_us("VOD", "VODAFONE GROUP PLC", "LSE", "GBP", 0.02, 72.0, 0.016, 60),
    _non_us("7203", "TOYOTA MOTOR CORP", "TSEJ", "JPY", 1.0, 2800.0, 0.017, 25),
    _non_us("700", "TENCENT HOLDINGS LTD", "SEHK", "HKD", 0.2, 380.0, 0.020, 18),
    _non_us("BHP", "BHP GROUP LTD", "ASX", "AUD", 0.01, 45.0, 0.015, 7),
    _non_us("RY", "ROYAL BANK OF CANADA", "TSE", "CAD", 0.01, 140.0, 0.011, 4),
)  # fmt: skip
"""Stocks on IBKR's non-US venues (IBIS, LSE, TSEJ, SEHK, ASX, TSE): sessions from their own
exchange calendars, volumes and sizes in shares (lot 1). Not in `UNIVERSE`, so the default
accounts and every count built on `UNIVERSE` stay as they were; searchable and quotable."""


FUTURE_MONTH_CODES = {3: "H", 6: "M", 9: "U", 12: "Z"}
"""The quarterly cycle of the equity index futures (ES, NQ): March, June, September, December."""

FUTURE_MONTHS_FIRST_YEAR = 2005
FUTURE_MONTHS_LAST_YEAR = 2031
_FUTURE_CONID_BASE = 950_000_000
_FUTURE_ROOTS = {"ES": (1, 50), "NQ": (2, 20)}  # root -> (conid block, multiplier)


def third_friday(year: int, month: int) -> date:
    """The third Friday of a month: the expiration of the CME equity index futures."""
    first = date(year, month, 1)
    first_friday = first + timedelta(days=(calendar.FRIDAY - first.weekday()) % 7)
    return first_friday + timedelta(weeks=2)


def future_month_conid(root: str, year: int, month: int) -> int:
    """The invented conid of a contract month, stable and readable:
    ``950_000_000 + block * 100_000 + (year % 1000) * 100 + month`` (ES Mar 2025 -> 950_102_503)."""
    block = _FUTURE_ROOTS[root][0]
    return _FUTURE_CONID_BASE + block * 100_000 + (year % 1000) * 100 + month


def _future_month(root: Instrument, year: int, month: int) -> Instrument:
    expiry = third_friday(year, month)
    # Listed about a year ahead: from the day after the same month's expiry a year earlier.
    listed = max(HISTORY_START, third_friday(year - 1, month) + timedelta(days=1))
    return Instrument(
        conid=future_month_conid(root.symbol, year, month),
        symbol=root.symbol,
        sec_type="FUT",
        exchange=root.exchange,
        listing_exchange=root.listing_exchange,
        company_name=root.company_name,
        currency=root.currency,
        is_etf=False,
        lot_size=1,
        min_tick=root.min_tick,
        first_date=listed,
        base_price=root.base_price,
        daily_vol=root.daily_vol,
        avg_daily_volume=root.avg_daily_volume,
        spread_ticks=root.spread_ticks,
        expiry=expiry,
        # The business day before expiration, as IBKR's futures listing shows it (ltd).
        last_trade_date=expiry - timedelta(days=1),
        underlying_conid=root.conid,
        multiplier=_FUTURE_ROOTS[root.symbol][1],
    )


FUTURE_MONTHS: tuple[Instrument, ...] = tuple(
    _future_month(root, year, month)
    for root in _OTHERS
    if root.sec_type == "FUT" and root.symbol in _FUTURE_ROOTS
    for year in range(FUTURE_MONTHS_FIRST_YEAR, FUTURE_MONTHS_LAST_YEAR + 1)
    for month in FUTURE_MONTH_CODES
)
"""ES and NQ by contract month, 2005-2031, each with its own (invented) conid; their root (the
existing ES/NQ conid) stays the continuous contract that contract search returns."""

SEARCHABLE: tuple[Instrument, ...] = UNIVERSE + NON_US_STOCKS
"""What contract search and `by_symbol` find (contract months are found via their root)."""

ALL_INSTRUMENTS: tuple[Instrument, ...] = SEARCHABLE + FUTURE_MONTHS
"""Every conid the simulator serves (the market's default universe)."""


@functools.cache
def _index() -> dict[int, Instrument]:
    index: dict[int, Instrument] = {}
    for item in ALL_INSTRUMENTS:
        if item.conid in index:
            raise ValueError(
                f"duplicate conid {item.conid}: {index[item.conid].symbol} and {item.symbol}"
            )
        index[item.conid] = item
    return index


def by_conid(conid: int) -> Instrument:
    """The instrument with this conid; KeyError naming the conid if the simulator has none."""
    try:
        return _index()[conid]
    except KeyError:
        raise KeyError(f"unknown conid {conid!r}: the simulator has no such instrument") from None


def by_symbol(symbol: str, sec_type: str | None = None) -> list[Instrument]:
    """Instruments whose symbol matches ``symbol`` (case-insensitive), optionally of one
    ``sec_type``; an empty list when none does. Contract months are not listed (see
    `future_months`)."""
    wanted = symbol.strip().upper()
    kind = sec_type.strip().upper() if sec_type else None
    return [
        item
        for item in SEARCHABLE
        if item.symbol == wanted and (kind is None or item.sec_type == kind)
    ]


def future_months(root_symbol: str) -> list[Instrument]:
    """Every contract month of a futures root (ES, NQ), by expiry; empty for another symbol."""
    wanted = root_symbol.strip().upper()
    return sorted(
        (item for item in FUTURE_MONTHS if item.symbol == wanted),
        key=lambda item: item.expiry or date.min,
    )
