"""Orders: placement with the gateway's confirmation questions, fills, live orders, cancels.

How the simulated order flow behaves (and why):

- ``POST /iserver/account/{accountId}/orders`` takes ``{"orders": [one order]}``. A malformed body
  (not an object, no ``orders`` list, more than one order: brackets are not simulated) is a 400.
  An order the broker refuses (unknown or non-stock conid, bad side/type/quantity/price/tif,
  duplicate ``cOID``, limit price more than 50% away from the market, not enough buying power)
  is HTTP 200 ``{"error": "..."}``, as the gateway answers rejections.
- Precautionary questions, one per round, each answered by ``POST /iserver/reply/{id}`` with
  ``{"confirmed": true}``: ``o383`` when the size exceeds 500 shares, ``o163`` when a limit price
  is more than 3% away from the last price. ``{"confirmed": false}`` abandons the order.
- The final answer is ``[{"order_id": "...", "order_status": ..., "encrypt_message": "1"}]``.
- Fills happen only while the instrument's session is open: the regular session, or the
  extended one for orders sent with ``outsideRTH: true``. Orders may be placed at any time;
  outside the session they wait as ``PreSubmitted``. A market order fills at `Market.last_price`;
  a limit order fills at the last price as soon as that is at or better than its limit, checked
  on every request the simulator serves (so a test moves the clock and makes any request).
  IOC orders that cannot fill at once are cancelled. DAY orders do not expire (not simulated).
- Orders execute in full (no partial fills) and carry no commission.

Never does HTTP: callers get ``(status, body)`` pairs.
"""

from __future__ import annotations

import math
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ib_pipeline.calendars import calendar_for
from ib_pipeline.simulator.answers import Answer, account_not_found, bad_request, error_body
from ib_pipeline.simulator.broker_contracts import Contract, stock_contract
from ib_pipeline.simulator.epoch import from_ms, to_ms
from ib_pipeline.simulator.instruments import Instrument, by_conid
from ib_pipeline.simulator.params import parse_id

if TYPE_CHECKING:
    from ib_pipeline.simulator.broker import Broker

SIZE_LIMIT = 500
PRICE_CONSTRAINT = 0.03
REJECT_DISTANCE = 0.50
FIRST_ORDER_ID = 1_900_000_001
WORKING = ("PreSubmitted", "Submitted")
_TIFS = ("DAY", "GTC", "IOC")
_ORDER_TYPES = {"MKT": "Market", "LMT": "Limit"}


def rejection(message: str) -> Answer:
    """An order-level refusal: HTTP 200 with an ``error`` key."""
    return 200, error_body(message)


@dataclass(frozen=True)
class OrderTicket:
    """A validated order request."""

    account_id: str
    instrument: Instrument
    contract: Contract
    side: str  # BUY / SELL
    order_type: str  # MKT / LMT
    quantity: float
    limit_price: float | None
    tif: str
    outside_rth: bool
    coid: str | None

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side == "BUY" else -self.quantity

    def describe(self) -> str:
        """``BUY 100 AAPL NASDAQ.NMS @ 165.0`` as the gateway's questions quote an order."""
        price = "MKT" if self.limit_price is None else f"{self.limit_price}"
        return (
            f"{self.side} {self.quantity:g} {self.instrument.symbol} "
            f"{self.instrument.listing_exchange} @ {price}"
        )


@dataclass
class Order:
    order_id: int
    ticket: OrderTicket
    status: str
    submitted_ms: int
    filled: float = 0.0
    avg_fill_price: float | None = None
    last_exec_ms: int | None = None


@dataclass
class _Pending:
    ticket: OrderTicket
    questions: list[tuple[str, str]] = field(default_factory=list)


class OrderBook:
    """Orders of every account of one `Broker`; thread-safe through the broker's lock."""

    def __init__(self, broker: Broker, seed: int) -> None:
        self._broker = broker
        self._lock: threading.RLock = broker.lock
        self._rng = random.Random(f"orders:{seed}")
        self._orders: dict[int, Order] = {}
        self._pending: dict[str, _Pending] = {}
        self._coids: set[str] = set()
        self._next_id = FIRST_ORDER_ID

    # -- placement -----------------------------------------------------------------------------

    def place(self, account_id: str, payload: Any) -> Answer:
        """``POST /iserver/account/{accountId}/orders``."""
        if not self._broker.has_account(account_id):
            return account_not_found(account_id)
        if not isinstance(payload, Mapping) or not isinstance(payload.get("orders"), list):
            return bad_request('the body must be {"orders": [ {order} ]}')
        orders = payload["orders"]
        if len(orders) != 1 or not isinstance(orders[0], Mapping):
            return bad_request("send exactly one order object (bracket orders are not simulated)")
        with self._lock:
            ticket_or_error = self._ticket(account_id, orders[0])
            if not isinstance(ticket_or_error, OrderTicket):
                return rejection(ticket_or_error)
            ticket = ticket_or_error
            try:
                last = self._broker.price(ticket.contract)
            except ValueError as exc:  # not listed yet at the clock's time
                return rejection(f"No market data for {ticket.instrument.symbol}: {exc}")
            refusal = self._refusal(ticket, last)
            if refusal:
                return rejection(refusal)
            if ticket.coid is not None:
                self._coids.add(ticket.coid)
            return self._next_step(_Pending(ticket, self._questions(ticket, last)))

    def reply(self, reply_id: str, payload: Any) -> Answer:
        """``POST /iserver/reply/{replyId}`` with ``{"confirmed": bool}``."""
        if not isinstance(payload, Mapping) or not isinstance(payload.get("confirmed"), bool):
            return bad_request('the body must be {"confirmed": true} or {"confirmed": false}')
        with self._lock:
            pending = self._pending.pop(reply_id, None)
            if pending is None:
                return bad_request(f"reply id {reply_id} is unknown or was already answered")
            if not payload["confirmed"]:
                if pending.ticket.coid is not None:
                    self._coids.discard(pending.ticket.coid)
                return rejection("The order was not confirmed and has been discarded.")
            return self._next_step(pending)

    def _next_step(self, pending: _Pending) -> Answer:
        if pending.questions:
            message_id, text = pending.questions.pop(0)
            reply_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            self._pending[reply_id] = pending
            return 200, [
                {
                    "id": reply_id,
                    "message": [text],
                    "isSuppressed": False,
                    "messageIds": [message_id],
                }
            ]
        order = self._submit(pending.ticket)
        return 200, [
            {"order_id": str(order.order_id), "order_status": order.status, "encrypt_message": "1"}
        ]

    def _submit(self, ticket: OrderTicket) -> Order:
        now = self._broker.clock.now()
        order = Order(self._next_id, ticket, status="PreSubmitted", submitted_ms=to_ms(now))
        self._next_id += 1
        self._orders[order.order_id] = order
        self._try_fill(order, now)
        if order.status in WORKING and ticket.tif == "IOC":
            order.status = "Cancelled"
        return order

    # -- fills ---------------------------------------------------------------------------------

    def match(self) -> int:
        """Fill every working order that can fill now; return how many filled."""
        with self._lock:
            working = [o for o in self._orders.values() if o.status in WORKING]
            if not working:
                return 0
            now = self._broker.clock.now()
            return sum(1 for order in working if self._try_fill(order, now))

    def _try_fill(self, order: Order, now: datetime) -> bool:
        ticket = order.ticket
        if not session_open(ticket.instrument, now, ticket.outside_rth):
            order.status = "PreSubmitted"
            return False
        order.status = "Submitted"
        try:
            last = self._broker.price(ticket.contract)
        except ValueError:  # no price yet (the clock was moved before the listing): keep waiting
            return False
        limit = ticket.limit_price
        if limit is not None and (last > limit if ticket.side == "BUY" else last < limit):
            return False
        self._broker.apply_fill(ticket.account_id, ticket.contract, ticket.signed_quantity, last)
        order.status = "Filled"
        order.filled = ticket.quantity
        order.avg_fill_price = last
        order.last_exec_ms = to_ms(now)
        return True

    # -- cancel and live orders ------------------------------------------------------------------

    def cancel(self, account_id: str, order_id: str) -> Answer:
        """``DELETE /iserver/account/{accountId}/order/{orderId}``."""
        if not self._broker.has_account(account_id):
            return account_not_found(account_id)
        number = parse_id(order_id)
        if number is None:
            return bad_request(f"order id {order_id!r} is not a number")
        with self._lock:
            order = self._orders.get(number)
            if order is None or order.ticket.account_id != account_id:
                return rejection(f"OrderID {number} doesn't exist")
            if order.status not in WORKING:
                return rejection(f"OrderID {number} is {order.status} and cannot be cancelled")
            order.status = "Cancelled"
            return 200, {
                "msg": "Request was submitted",
                "order_id": number,
                "conid": order.ticket.instrument.conid,
                "account": account_id,
            }

    def live_orders(self, filters: str | None = None) -> list[dict[str, Any]]:
        """The orders of this gateway run, newest first, optionally only those whose status is
        in the comma-separated ``filters`` (case-insensitive)."""
        wanted = {f.strip().lower() for f in (filters or "").split(",") if f.strip()}
        with self._lock:
            orders = sorted(self._orders.values(), key=lambda o: -o.order_id)
            return [_order_json(o) for o in orders if not wanted or o.status.lower() in wanted]

    def truth_orders(self) -> list[dict[str, Any]]:
        """Every order as a loader should store it (`ib_pipeline.ibkr.tables.LIVE_ORDERS`
        column names; sizes in shares), oldest first."""
        with self._lock:
            return [
                {
                    "order_id": o.order_id,
                    "account": o.ticket.account_id,
                    "conid": o.ticket.instrument.conid,
                    "ticker": o.ticket.instrument.symbol,
                    "sec_type": o.ticket.instrument.sec_type,
                    "side": o.ticket.side,
                    "order_type": _ORDER_TYPES[o.ticket.order_type],
                    "status": o.status,
                    "total_size": o.ticket.quantity,
                    "filled_quantity": o.filled,
                    "remaining_quantity": o.ticket.quantity - o.filled,
                    "avg_price": o.avg_fill_price,
                    "limit_price": o.ticket.limit_price,
                    "time_in_force": o.ticket.tif,
                    "last_execution_time": o.last_exec_ms,
                    "order_ref": o.ticket.coid,
                }
                for o in sorted(self._orders.values(), key=lambda o: o.order_id)
            ]

    def order(self, order_id: int) -> Order:
        with self._lock:
            return self._orders[order_id]

    # -- validation ----------------------------------------------------------------------------

    def _ticket(self, account_id: str, raw: Mapping[str, Any]) -> OrderTicket | str:
        """A validated ticket, or the rejection message naming what is wrong."""
        conid = parse_id(raw.get("conid"))
        if conid is None:
            return f"Invalid conid {raw.get('conid')!r}: conid must be an integer"
        try:
            instrument = by_conid(conid)
        except KeyError:
            return f"Invalid conid {conid}: no such contract"
        if instrument.sec_type != "STK":
            return f"Orders for {instrument.sec_type} contracts are not supported by the simulator"
        acct = raw.get("acctId")
        if acct is not None and acct != account_id:
            return f"acctId {acct!r} does not match the account in the path ({account_id})"
        side = str(raw.get("side", "")).upper()
        if side not in ("BUY", "SELL"):
            return f"Invalid side {raw.get('side')!r}: use BUY or SELL"
        order_type = str(raw.get("orderType", "")).upper()
        order_type = {"MARKET": "MKT", "LIMIT": "LMT"}.get(order_type, order_type)
        if order_type not in _ORDER_TYPES:
            return f"Invalid orderType {raw.get('orderType')!r}: the simulator supports MKT, LMT"
        quantity = _number(raw.get("quantity"))
        if quantity is None or quantity <= 0 or quantity != int(quantity):
            return f"Invalid quantity {raw.get('quantity')!r}: must be a positive whole number"
        limit = None
        if order_type == "LMT":
            limit = _number(raw.get("price"))
            if limit is None or limit <= 0:
                return f"Invalid price {raw.get('price')!r}: a limit order needs a positive price"
        tif = str(raw.get("tif", "DAY")).upper()
        if tif not in _TIFS:
            return f"Invalid tif {raw.get('tif')!r}: use one of {', '.join(_TIFS)}"
        outside_rth = raw.get("outsideRTH", False)
        if not isinstance(outside_rth, bool):
            return f"Invalid outsideRTH {outside_rth!r}: must be true or false"
        coid = raw.get("cOID")
        if coid is not None:
            coid = str(coid)
            if coid in self._coids:
                return f"Local order ID={coid} is already registered."
        return OrderTicket(
            account_id=account_id,
            instrument=instrument,
            contract=stock_contract(instrument),
            side=side,
            order_type=order_type,
            quantity=float(quantity),
            limit_price=limit,
            tif=tif,
            outside_rth=outside_rth,
            coid=coid,
        )

    def _refusal(self, ticket: OrderTicket, last: float) -> str:
        if (
            ticket.limit_price is not None
            and abs(ticket.limit_price - last) > REJECT_DISTANCE * last
        ):
            return (
                "We cannot accept an order at the limit price you selected. Please submit your "
                "order using a limit price that is closer to the current market price of "
                f"{last:.2f}.  Alternatively, you can convert your order to an Algorithmic Order "
                "(IBALGO)."
            )
        if ticket.side == "BUY":
            price = max(last, ticket.limit_price or 0.0)
            cost = ticket.quantity * price
            power = self._broker.buying_power(ticket.account_id)
            if cost > power:
                return (
                    f"Order rejected: the order value of {cost:,.2f} USD exceeds the buying power "
                    f"of {power:,.2f} USD."
                )
        return ""

    def _questions(self, ticket: OrderTicket, last: float) -> list[tuple[str, str]]:
        questions = []
        if ticket.quantity > SIZE_LIMIT:
            questions.append(
                (
                    "o383",
                    f'The following order "{ticket.describe()}" size exceeds the Size Limit of '
                    f"{SIZE_LIMIT}.\nAre you sure you want to submit this order?",
                )
            )
        if (
            ticket.limit_price is not None
            and abs(ticket.limit_price - last) > PRICE_CONSTRAINT * last
        ):
            questions.append(
                (
                    "o163",
                    f'The following order "{ticket.describe()}" price exceeds \nthe Percentage '
                    f"constraint of {PRICE_CONSTRAINT:.0%}.\nAre you sure you want to submit "
                    "this order?",
                )
            )
        return questions


def session_open(instrument: Instrument, now: datetime, outside_rth: bool) -> bool:
    """Whether ``instrument`` trades at ``now`` (its regular session, or the extended one)."""
    calendar = calendar_for(instrument.trading_hours)
    for session in calendar.sessions_overlapping(now, now + timedelta(seconds=1), outside_rth):
        start, end = session.bounds(outside_rth)
        if start <= now < end:
            return True
    return False


def _order_json(order: Order) -> dict[str, Any]:
    t = order.ticket
    inst = t.instrument
    total, filled = t.quantity, order.filled
    type_name = _ORDER_TYPES[t.order_type]
    if order.status == "Filled":
        verb = "Bought" if t.side == "BUY" else "Sold"
    else:
        verb = "Buy" if t.side == "BUY" else "Sell"
    price_text = f" {t.limit_price:.2f}" if t.limit_price is not None else ""
    body: dict[str, Any] = {
        "acct": t.account_id,
        "conidex": str(inst.conid),
        "conid": inst.conid,
        "account": t.account_id,
        "orderId": order.order_id,
        "cashCcy": inst.currency,
        "sizeAndFills": f"{total:g}" if filled == total else f"{filled:g}/{total:g}",
        "orderDesc": f"{verb} {total:g} {type_name}{price_text}, {t.tif.title()}",
        "description1": inst.symbol,
        "ticker": inst.symbol,
        "secType": inst.sec_type,
        "listingExchange": inst.listing_exchange,
        "remainingQuantity": total - filled,
        "filledQuantity": filled,
        "totalSize": total,
        "companyName": inst.company_name,
        "status": order.status,
        "order_ccp_status": order.status,
        "origOrderType": type_name.upper(),
        "supportsTaxOpt": "1",
        "orderType": type_name,
        "bgColor": "#FFFFFF",
        "fgColor": "#000000",
        "timeInForce": t.tif,
        "side": t.side,
    }
    if t.limit_price is not None:
        body["price"] = f"{t.limit_price:.2f}"
    if order.avg_fill_price is not None:
        body["avgPrice"] = f"{order.avg_fill_price:.2f}"
    if order.last_exec_ms is not None:
        body["lastExecutionTime"] = from_ms(order.last_exec_ms).strftime("%y%m%d%H%M%S")
        body["lastExecutionTime_r"] = order.last_exec_ms
    if t.coid is not None:
        body["order_ref"] = t.coid
    return body


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
