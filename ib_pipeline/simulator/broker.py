"""The simulated brokerage: accounts, holdings, cash, and their gateway-shaped views.

Orders change what an account holds (`Broker.apply_fill`); everything the portfolio endpoints
answer (positions pages, the summary with its ``-c``/``-s`` segment keys and string-valued keys,
the account lists) is computed here from that state and the market's current prices, so the
numbers always agree with each other and with `Broker.truth_*` (what tests compare a loader's
output with).

The book is generated deterministically from the seed the first time it is needed: a main paper
account with a handful of stock positions, and (optionally) a second account with many small
positions so that clients must page through ``/portfolio/{accountId}/positions/{pageId}``.
Simplifications, on purpose: no commissions, no interest, no dividends; margin is a flat 25%
maintenance / 30% initial of the gross position value; the commodities segment (``-c``) is empty.

Thread-safe: the server loop and test threads share one Broker. Never does HTTP itself.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from ib_pipeline.simulator.auth import SERVER_INFO
from ib_pipeline.simulator.broker_contracts import (
    Contract,
    contract_for,
    contract_price,
    equity_instruments,
    option_contract,
    stock_contract,
)
from ib_pipeline.simulator.broker_orders import OrderBook
from ib_pipeline.simulator.epoch import to_ms
from ib_pipeline.simulator.instruments import Instrument
from ib_pipeline.simulator.market import Market

POSITIONS_PAGE_SIZE = 100
"""The gateway's page size for ``/portfolio/{accountId}/positions/{pageId}``."""

MAINT_MARGIN = 0.25
INIT_MARGIN = 0.30
MAIN_ACCOUNT_POSITIONS = 6
BULK_ACCOUNT_CASH = 50_000.0

ADVISOR_SUB_ACCOUNTS = ("DU2345678", "DU3456789")
"""The sub-accounts an advisor login adds to the main and bulk accounts (a few positions each)."""
ADVISOR_GROUPS = ("All", "GROUP1")
"""What an advisor login's /iserver/accounts lists as groups: the built-in ``All`` and one
user-defined group. Not accounts: no positions, no summary."""
ADVISOR_PROFILES = ("UPRO_BUY_785_20241126_1",)
"""An allocation profile/model id (the long ids real advisor logins show). Not an account."""
SUB_ACCOUNT_CASH = 250_000.0


class UnknownAccountError(KeyError):
    """An account id the broker does not have."""

    def __init__(self, account_id: str, known: list[str]) -> None:
        super().__init__(account_id)
        self.account_id = account_id
        self.known = known

    def __str__(self) -> str:
        return f"unknown account {self.account_id!r}; accounts: {', '.join(self.known)}"


@dataclass
class Holding:
    """A position: ``quantity`` shares (or option contracts), bought at ``avg_price`` per unit."""

    contract: Contract
    quantity: float
    avg_price: float
    realized_pnl: float = 0.0


@dataclass
class Account:
    account_id: str
    alias: str
    cash: float
    holdings: dict[int, Holding] = field(default_factory=dict)
    currency: str = "USD"
    is_paper: bool = True
    opened_ms: int = 1_644_814_800_000
    previous_day_equity: float = 0.0


@dataclass(frozen=True)
class PositionValues:
    """One position valued now: the numbers both the payload and the truth report."""

    contract: Contract
    quantity: float
    mkt_price: float
    mkt_value: float
    avg_cost: float
    avg_price: float
    realized_pnl: float
    unrealized_pnl: float


class Broker:
    """Accounts and their holdings; owns the `OrderBook` (``broker.orders``)."""

    def __init__(
        self,
        market: Market,
        *,
        seed: int,
        main_account: str,
        bulk_account: str | None,
        bulk_positions: int,
        starting_cash: float,
        advisor: bool = False,
    ) -> None:
        self.market = market
        self.advisor = advisor
        self.clock = market.clock
        self._seed = seed
        self._main_id = main_account
        self._bulk_id = bulk_account if bulk_positions > 0 else None
        self._bulk_positions = bulk_positions
        self._starting_cash = starting_cash
        self._lock = threading.RLock()
        self._accounts: dict[str, Account] | None = None
        self._options: dict[int, Contract] = {}
        self.orders = OrderBook(self, seed=seed)

    # -- accounts ------------------------------------------------------------------------------

    @property
    def account_ids(self) -> list[str]:
        """The real accounts (what /portfolio/accounts lists), the trading (main) one first."""
        ids = [self._main_id] + ([self._bulk_id] if self._bulk_id else [])
        if self.advisor:
            ids += [a for a in ADVISOR_SUB_ACCOUNTS if a not in ids]
        return ids

    @property
    def groups(self) -> list[str]:
        """Account groups an advisor login lists (empty for an individual login)."""
        return list(ADVISOR_GROUPS) if self.advisor else []

    @property
    def profiles(self) -> list[str]:
        """Allocation profiles/models an advisor login lists (empty for an individual login)."""
        return list(ADVISOR_PROFILES) if self.advisor else []

    def is_group_or_profile(self, account_id: str) -> bool:
        return account_id in self.groups or account_id in self.profiles

    @property
    def main_account_id(self) -> str:
        return self._main_id

    def has_account(self, account_id: str) -> bool:
        return account_id in self.account_ids

    def account(self, account_id: str) -> Account:
        """The account (its live state: hold the lock to change it); UnknownAccountError."""
        accounts = self._book()
        try:
            return accounts[account_id]
        except KeyError:
            raise UnknownAccountError(account_id, self.account_ids) from None

    def contract(self, conid: int) -> Contract:
        """A holdable contract by conid (KeyError if unknown)."""
        self._book()
        return contract_for(conid, self._options)

    def price(self, contract: Contract) -> float:
        return contract_price(self.market, contract)

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def apply_fill(
        self, account_id: str, contract: Contract, quantity: float, price: float
    ) -> None:
        """Book a fill: ``quantity`` > 0 buys, < 0 sells, at ``price`` per unit."""
        if quantity == 0:
            raise ValueError("a fill needs a non-zero quantity")
        with self._lock:
            account = self.account(account_id)
            account.cash -= quantity * price * contract.multiplier
            holding = account.holdings.get(contract.conid)
            if holding is None:
                account.holdings[contract.conid] = Holding(contract, quantity, price)
                return
            old = holding.quantity
            new = old + quantity
            if old * quantity > 0:  # adding to the position
                holding.avg_price = (holding.avg_price * old + price * quantity) / new
            else:  # reducing, closing or flipping
                closed = min(abs(quantity), abs(old))
                direction = 1.0 if old > 0 else -1.0
                holding.realized_pnl += (
                    (price - holding.avg_price) * closed * direction * contract.multiplier
                )
                if new * old < 0:  # flipped: the remainder opens at the fill price
                    holding.avg_price = price
            holding.quantity = new
            if new == 0:
                del account.holdings[contract.conid]

    def buying_power(self, account_id: str) -> float:
        return self.summary_values(account_id)["buyingpower"]

    # -- valuations ----------------------------------------------------------------------------

    def position_values(self, account_id: str) -> list[PositionValues]:
        """Every position of the account valued at current prices, sorted by conid."""
        with self._lock:
            account = self.account(account_id)
            holdings = sorted(account.holdings.values(), key=lambda h: h.contract.conid)
            return [self._value(h) for h in holdings]

    def _value(self, holding: Holding) -> PositionValues:
        contract = holding.contract
        price = self.price(contract)
        mult = contract.multiplier
        return PositionValues(
            contract=contract,
            quantity=holding.quantity,
            mkt_price=price,
            mkt_value=round(holding.quantity * price * mult, 2),
            avg_cost=holding.avg_price * mult,
            avg_price=holding.avg_price,
            realized_pnl=round(holding.realized_pnl, 2),
            unrealized_pnl=round((price - holding.avg_price) * holding.quantity * mult, 2),
        )

    def summary_values(self, account_id: str) -> dict[str, float]:
        """The money amounts of the summary (securities segment = whole account)."""
        with self._lock:
            account = self.account(account_id)
            positions = self.position_values(account_id)
            cash = account.cash
            previous = account.previous_day_equity
        net_value = sum(p.mkt_value for p in positions)
        gross = sum(abs(p.mkt_value) for p in positions)
        netliq = cash + net_value
        init, maint = INIT_MARGIN * gross, MAINT_MARGIN * gross
        available = netliq - init
        excess = netliq - maint
        return {
            "netliquidation": round(netliq, 2),
            "totalcashvalue": round(cash, 2),
            "grosspositionvalue": round(gross, 2),
            "equitywithloanvalue": round(netliq, 2),
            "initmarginreq": round(init, 2),
            "maintmarginreq": round(maint, 2),
            "availablefunds": round(available, 2),
            "excessliquidity": round(excess, 2),
            "buyingpower": round(max(0.0, available) * 4, 2),
            "sma": round(max(0.0, netliq - 0.5 * gross), 2),
            "regtequity": round(netliq, 2),
            "regtmargin": round(0.5 * gross, 2),
            "previousdayequitywithloanvalue": round(previous, 2),
            "cushion": round(excess / netliq, 6) if netliq else 0.0,
        }

    # -- gateway payloads ----------------------------------------------------------------------

    def iserver_accounts_payload(self, session_id: str) -> dict[str, Any]:
        """``GET /iserver/accounts``. An advisor login lists the group ``All`` first, then the
        real accounts, then user groups and allocation profiles; ``acctProps`` describes the real
        accounts only, ``aliases`` every entry (see `real_world.GUESSES`)."""
        ids = self.account_ids
        entries = ids
        if self.advisor:
            user_groups = [g for g in self.groups if g != "All"]
            entries = ["All", *ids, *user_groups, *self.profiles]
        return {
            "accounts": entries,
            "acctProps": {
                a: {
                    "hasChildAccounts": False,
                    "supportsCashQty": True,
                    "noFXConv": False,
                    "isProp": False,
                    "supportsFractions": True,
                    "allowCustomerTime": False,
                }
                for a in ids
            },
            "aliases": {a: a for a in entries},
            "allowFeatures": {
                "showGFIS": True,
                "showEUCostReport": False,
                "allowEventContract": False,
                "allowFXConv": True,
                "allowFinancialLens": False,
                "allowMTA": True,
                "allowTypeAhead": True,
                "allowEventTrading": False,
                "snapshotRefreshTimeout": 30,
                "liteUser": False,
                "showWebNews": True,
                "research": True,
                "debugPnl": True,
                "showTaxOpt": True,
                "showImpactDashboard": True,
                "allowDynAccount": False,
                "allowCrypto": False,
                "allowedAssetTypes": "STK,OPT,FUT,CASH",
            },
            "chartPeriods": {"STK": ["*"], "FUT": ["*"], "CASH": ["*"]},
            "groups": self.groups,
            "profiles": self.profiles,
            "selectedAccount": self._main_id,
            "serverInfo": dict(SERVER_INFO),
            "sessionId": session_id,
            "isFT": False,
            "isPaper": all(a.startswith("D") for a in ids),
        }

    def portfolio_accounts_payload(self) -> list[dict[str, Any]]:
        """``GET /portfolio/accounts``."""
        with self._lock:
            accounts = [self.account(a) for a in self.account_ids]
            return [
                {
                    "id": a.account_id,
                    "PrepaidCrypto-Z": False,
                    "PrepaidCrypto-P": False,
                    "brokerageAccess": True,
                    "accountId": a.account_id,
                    "accountVan": a.account_id,
                    "accountTitle": "Simulated Account",
                    "displayName": a.alias,
                    "accountAlias": None,
                    "accountStatus": a.opened_ms,
                    "currency": a.currency,
                    "type": "DEMO" if a.is_paper else "INDIVIDUAL",
                    "tradingType": "STKNOPT",
                    "businessType": "IB_PROSERVE",
                    "ibEntity": "IBLLC-US",
                    "faclient": self.advisor,
                    "clearingStatus": "O",
                    "covestor": False,
                    "noClientTrading": False,
                    "trackVirtualFXPortfolio": True,
                    "parent": {
                        "mmc": [],
                        "accountId": "",
                        "isMParent": False,
                        "isMChild": False,
                        "isMultiplex": False,
                    },
                    "desc": a.account_id,
                }
                for a in accounts
            ]

    def positions_page(self, account_id: str, page: int) -> list[dict[str, Any]]:
        """``GET /portfolio/{accountId}/positions/{pageId}``: up to 100 positions, sorted by
        conid; a short or empty page ends the listing."""
        if page < 0:
            raise ValueError(f"page must be >= 0, got {page}")
        values = self.position_values(account_id)
        chunk = values[page * POSITIONS_PAGE_SIZE : (page + 1) * POSITIONS_PAGE_SIZE]
        return [_position_json(account_id, v) for v in chunk]

    def summary_payload(self, account_id: str) -> dict[str, Any]:
        """``GET /portfolio/{accountId}/summary``: every key maps to ``{amount, currency, isNull,
        timestamp, value, severity}``; money keys come with ``-c`` and ``-s`` variants."""
        values = self.summary_values(account_id)
        account = self.account(account_id)
        stamp = to_ms(self.clock.now())
        body: dict[str, Any] = {}

        def money(key: str, amount: float, variants: str = "cs") -> None:
            body[key] = _money(amount, account.currency, stamp)
            if "c" in variants:
                body[f"{key}-c"] = _money(0.0, account.currency, stamp)
            if "s" in variants:
                body[f"{key}-s"] = _money(amount, account.currency, stamp)

        def text(key: str, value: str) -> None:
            body[key] = _text(value, stamp)

        text("accountcode", account_id)
        text("accountready", "true")
        text("accounttype", "INDIVIDUAL")
        for zero in ("accruedcash", "accrueddividend", "guarantee", "indianstockhaircut"):
            money(zero, 0.0)
        for key in ("availablefunds", "fullavailablefunds", "lookaheadavailablefunds"):
            money(key, values["availablefunds"])
        money("buyingpower", values["buyingpower"], variants="")
        text("cushion", f"{values['cushion']:.6f}")
        for offset in ("", "t+1", "t+2", "t+3", "t+4"):
            text(f"daytradesremaining{offset}", "-1")
        text("daytradingstatus-s", ": : false: 0: :false")
        text("depositoncredithold", "null")
        money("equitywithloanvalue", values["equitywithloanvalue"])
        for key in ("excessliquidity", "fullexcessliquidity", "lookaheadexcessliquidity"):
            money(key, values["excessliquidity"])
        for key in ("initmarginreq", "fullinitmarginreq", "lookaheadinitmarginreq"):
            money(key, values["initmarginreq"])
        for key in ("maintmarginreq", "fullmaintmarginreq", "lookaheadmaintmarginreq"):
            money(key, values["maintmarginreq"])
        money("grosspositionvalue", values["grosspositionvalue"], variants="s")
        text("highestseverity", "null")
        gross, netliq = values["grosspositionvalue"], values["netliquidation"]
        text("leverage-s", f"{gross / netliq:.2f}" if netliq else "0.0")
        text("lookaheadnextchange", str(stamp // 1000 + 1200))
        money("netliquidation", netliq)
        money("netliquidationuncertainty", 0.0, variants="")
        text("nlvandmargininreview", "false")
        for zero in (
            "pasharesvalue",
            "physicalcertificatevalue",
            "postexpirationexcess",
            "postexpirationmargin",
            "totaldebitcardpendingcharges",
        ):
            money(zero, 0.0)
        money(
            "previousdayequitywithloanvalue",
            values["previousdayequitywithloanvalue"],
            variants="s",
        )
        money("regtequity", values["regtequity"], variants="s")
        money("regtmargin", values["regtmargin"], variants="s")
        text("segmenttitle-c", "US Commodities")
        text("segmenttitle-s", "US Securities")
        money("sma", values["sma"], variants="s")
        money("totalcashvalue", values["totalcashvalue"])
        text("tradingtype-s", "STKNOPT")
        text("whatifpmenabled", "true")
        return dict(sorted(body.items()))

    # -- ground truth --------------------------------------------------------------------------

    def truth_positions(self, account_id: str) -> list[dict[str, Any]]:
        """What a loader should find in the account's positions, in the units of
        `ib_pipeline.ibkr.tables.POSITIONS` (position in shares or contracts)."""
        return [
            {
                "account": account_id,
                "conid": v.contract.conid,
                "contract_desc": v.contract.description,
                "asset_class": v.contract.asset_class,
                "currency": v.contract.currency,
                "position": v.quantity,
                "mkt_price": v.mkt_price,
                "mkt_value": v.mkt_value,
                "avg_cost": v.avg_cost,
                "avg_price": v.avg_price,
                "realized_pnl": v.realized_pnl,
                "unrealized_pnl": v.unrealized_pnl,
            }
            for v in self.position_values(account_id)
        ]

    def truth_cash(self, account_id: str) -> float:
        with self._lock:
            return self.account(account_id).cash

    # -- the initial book ----------------------------------------------------------------------

    def _book(self) -> dict[str, Account]:
        with self._lock:
            if self._accounts is None:
                self._accounts = self._generate_book()
            return self._accounts

    def _generate_book(self) -> dict[str, Account]:
        rng = random.Random(f"broker-book:{self._seed}")
        equities = equity_instruments(self.clock.now().astimezone(UTC).date())
        if not equities:
            raise RuntimeError("the market universe has no stocks for the simulated accounts")
        main = Account(self._main_id, alias=self._main_id, cash=self._starting_cash)
        for inst in sorted(
            rng.sample(equities, min(MAIN_ACCOUNT_POSITIONS, len(equities))), key=lambda i: i.conid
        ):
            contract = stock_contract(inst)
            quantity = float(rng.randrange(10, 301, 5))
            cost = round(self.price(contract) * rng.uniform(0.75, 1.15), 4)
            main.holdings[contract.conid] = Holding(contract, quantity, cost)
            main.cash -= quantity * cost
        accounts = {main.account_id: main}
        if self._bulk_id is not None:
            accounts[self._bulk_id] = self._generate_bulk(self._bulk_id, rng, equities)
        for account_id in self.account_ids:
            if account_id not in accounts:  # advisor sub-accounts, each from its own draws
                accounts[account_id] = self._generate_sub_account(account_id, equities)
        for account in accounts.values():
            account.previous_day_equity = account.cash + sum(
                h.quantity * h.avg_price * h.contract.multiplier for h in account.holdings.values()
            )
        return accounts

    def _generate_sub_account(self, account_id: str, equities: list[Instrument]) -> Account:
        rng = random.Random(f"broker-sub-account:{self._seed}:{account_id}")
        account = Account(account_id, alias=account_id, cash=SUB_ACCOUNT_CASH)
        for inst in sorted(rng.sample(equities, min(4, len(equities))), key=lambda i: i.conid):
            contract = stock_contract(inst)
            quantity = float(rng.randrange(5, 101, 5))
            cost = round(self.price(contract) * rng.uniform(0.8, 1.2), 4)
            account.holdings[contract.conid] = Holding(contract, quantity, cost)
            account.cash -= quantity * cost
        return account

    def _generate_bulk(
        self, account_id: str, rng: random.Random, equities: list[Instrument]
    ) -> Account:
        bulk = Account(account_id, alias=account_id, cash=BULK_ACCOUNT_CASH)
        stock_count = min(self._bulk_positions, len(equities))
        for inst in equities[:stock_count]:
            contract = stock_contract(inst)
            quantity = float(rng.randint(1, 20))
            cost = round(self.price(contract) * rng.uniform(0.8, 1.2), 4)
            bulk.holdings[contract.conid] = Holding(contract, quantity, cost)
        today = self.clock.now().astimezone(UTC).date()
        spot: dict[int, float] = {}
        for index in range(self._bulk_positions - stock_count):
            underlying = equities[index % len(equities)]
            if underlying.conid not in spot:
                spot[underlying.conid] = float(self.market.last_price(underlying.conid))
            option = option_contract(index, underlying, spot[underlying.conid], today)
            self._options[option.conid] = option
            quantity = float(rng.randint(1, 5))
            cost = round(self.price(option) * rng.uniform(0.6, 1.4), 4)
            bulk.holdings[option.conid] = Holding(option, quantity, cost)
        return bulk


def _position_json(account_id: str, v: PositionValues) -> dict[str, Any]:
    c = v.contract
    return {
        "acctId": account_id,
        "conid": c.conid,
        "contractDesc": c.description,
        "position": v.quantity,
        "mktPrice": v.mkt_price,
        "mktValue": v.mkt_value,
        "currency": c.currency,
        "avgCost": v.avg_cost,
        "avgPrice": v.avg_price,
        "realizedPnl": v.realized_pnl,
        "unrealizedPnl": v.unrealized_pnl,
        "exchs": None,
        "expiry": f"{c.expiry:%Y%m%d}" if c.expiry else None,
        "putOrCall": c.right,
        "multiplier": float(c.multiplier) if c.is_option else None,
        # Types drift in the real payload: the strike comes as a number or as a string.
        "strike": f"{c.strike:g}" if c.strike is not None else 0.0,
        "exerciseStyle": "A" if c.is_option else None,
        "conExchMap": [],
        "assetClass": c.asset_class,
        "undConid": c.underlying or 0,
        "model": "",
        "ticker": c.symbol,
        "name": c.company_name,
        "fullName": c.description,
        "listingExchange": c.listing_exchange,
        "isUS": c.currency == "USD",
        "hasOptions": not c.is_option,
    }


def _money(amount: float, currency: str, stamp: int) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "isNull": False,
        "severity": 0,
        "timestamp": stamp,
        "value": None,
    }


def _text(value: str, stamp: int) -> dict[str, Any]:
    return {
        "amount": 0,
        "currency": None,
        "isNull": False,
        "severity": 0,
        "timestamp": stamp,
        "value": value,
    }
