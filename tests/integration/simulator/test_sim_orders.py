"""Orders over HTTP: the reply/confirm flow, rejections, fills that move positions, cash and the
summary, resting limit orders that fill when the clock reaches a marketable price, live orders."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ib_pipeline.clock import FixedClock
from ib_pipeline.simulator import Simulator

AAPL = 265598
EUR_USD = 12087792


@pytest.fixture
def desk(
    free_sim: Simulator, free_api: httpx.Client, prime: Callable[[httpx.Client], str]
) -> tuple[Simulator, httpx.Client, str]:
    """A primed, unpaced simulator, its client and the trading account."""
    account = prime(free_api)
    assert free_api.get("/iserver/account/orders").json()["snapshot"] is False
    return free_sim, free_api, account


def order(**fields: Any) -> dict[str, Any]:
    base = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 10, "tif": "DAY"}
    return {"orders": [{**base, **fields}]}


def place(api: httpx.Client, account: str, body: dict[str, Any]) -> tuple[Any, list[str]]:
    """Place an order, confirming every question; return the final answer and the message ids
    that were asked."""
    answer = api.post(f"/iserver/account/{account}/orders", json=body)
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    asked: list[str] = []
    while isinstance(payload, list) and "id" in payload[0]:
        question = payload[0]
        assert question["isSuppressed"] is False and question["message"][0]
        asked.extend(question["messageIds"])
        payload = api.post(f"/iserver/reply/{question['id']}", json={"confirmed": True}).json()
    return payload, asked


def live(api: httpx.Client) -> dict[int, dict[str, Any]]:
    body = api.get("/iserver/account/orders").json()
    assert body["snapshot"] is True
    return {o["orderId"]: o for o in body["orders"]}


def position(api: httpx.Client, account: str, conid: int) -> float:
    rows = api.get(f"/portfolio/{account}/positions/0").json()
    return next((row["position"] for row in rows if row["conid"] == conid), 0.0)


def price_at(simulator: Simulator, moment: datetime, conid: int = AAPL) -> float:
    clock = simulator.clock
    assert isinstance(clock, FixedClock)
    now = clock.now()
    clock.set(moment)
    try:
        return simulator.market.last_price(conid)
    finally:
        clock.set(now)


def test_live_orders_start_empty_and_unsnapshotted_in_each_session(
    free_api: httpx.Client, free_sim: Simulator, prime: Callable[[httpx.Client], str]
) -> None:
    prime(free_api)
    assert free_api.get("/iserver/account/orders").json() == {"orders": [], "snapshot": False}
    assert free_api.get("/iserver/account/orders").json() == {"orders": [], "snapshot": True}
    free_sim.drop_session()
    free_api.post("/iserver/auth/ssodh/init")
    prime(free_api)
    assert free_api.get("/iserver/account/orders").json()["snapshot"] is False


def test_a_market_order_fills_and_moves_positions_cash_and_summary(
    desk: tuple[Simulator, httpx.Client, str],
) -> None:
    simulator, api, account = desk
    truth = simulator.truth
    last = simulator.market.last_price(AAPL)
    held_before = position(api, account, AAPL)
    cash_before = truth.cash(account)
    answer, asked = place(api, account, order(quantity=10, cOID="mkt-1"))
    assert asked == []
    assert answer[0]["order_status"] == "Filled" and answer[0]["encrypt_message"] == "1"
    order_id = int(answer[0]["order_id"])
    assert position(api, account, AAPL) == held_before + 10
    assert truth.cash(account) == pytest.approx(cash_before - 10 * last)
    summary = api.get(f"/portfolio/{account}/summary").json()
    assert summary["totalcashvalue"]["amount"] == pytest.approx(truth.cash(account), abs=0.01)
    assert summary["netliquidation"]["amount"] == truth.summary(account)["netliquidation"]
    filled = live(api)[order_id]
    assert filled["status"] == "Filled" and filled["avgPrice"] == f"{last:.2f}"
    assert (filled["filledQuantity"], filled["remainingQuantity"]) == (10.0, 0.0)
    assert filled["order_ref"] == "mkt-1" and filled["side"] == "BUY"
    assert filled["lastExecutionTime_r"] == int(simulator.clock.now().timestamp() * 1000)
    assert truth.orders()[-1]["status"] == "Filled"


def test_a_large_order_asks_a_question_and_fills_once_confirmed(
    desk: tuple[Simulator, httpx.Client, str],
) -> None:
    _, api, account = desk
    answer, asked = place(api, account, order(quantity=600, side="SELL"))
    assert asked == ["o383"]
    assert answer[0]["order_status"] == "Filled"


def test_questions_come_one_round_at_a_time(desk: tuple[Simulator, httpx.Client, str]) -> None:
    simulator, api, account = desk
    limit = round(simulator.market.last_price(AAPL) * 0.95, 2)
    answer, asked = place(api, account, order(quantity=600, orderType="LMT", price=limit))
    assert asked == ["o383", "o163"]
    assert answer[0]["order_status"] == "Submitted"  # resting: the limit is below the market
    resting = live(api)[int(answer[0]["order_id"])]
    assert resting["status"] == "Submitted" and resting["price"] == f"{limit:.2f}"
    assert "avgPrice" not in resting


def test_declining_a_question_discards_the_order(desk: tuple[Simulator, httpx.Client, str]) -> None:
    simulator, api, account = desk
    question = api.post(f"/iserver/account/{account}/orders", json=order(quantity=700)).json()
    reply_id = question[0]["id"]
    declined = api.post(f"/iserver/reply/{reply_id}", json={"confirmed": False})
    assert declined.status_code == 200 and "error" in declined.json()
    assert simulator.truth.orders() == []
    again = api.post(f"/iserver/reply/{reply_id}", json={"confirmed": True})
    assert again.status_code == 400  # a reply id is answered once


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"orderType": "LMT", "price": 1.0}, "We cannot accept an order at the limit price"),
        ({"quantity": 10_000_000}, "exceeds the buying power"),
        ({"side": "HOLD"}, "Invalid side"),
        ({"quantity": -5}, "Invalid quantity"),
        ({"quantity": 1.5}, "Invalid quantity"),
        ({"orderType": "STP"}, "Invalid orderType"),
        ({"orderType": "LMT"}, "Invalid price"),
        ({"tif": "FOREVER"}, "Invalid tif"),
        ({"conid": 1}, "Invalid conid 1"),
        ({"conid": EUR_USD}, "not supported by the simulator"),
    ],
)
def test_refused_orders_are_http_200_errors(
    desk: tuple[Simulator, httpx.Client, str], fields: dict[str, Any], message: str
) -> None:
    simulator, api, account = desk
    answer = api.post(f"/iserver/account/{account}/orders", json=order(**fields))
    assert answer.status_code == 200
    assert message in answer.json()["error"]
    assert simulator.truth.orders() == []


def test_a_duplicate_client_order_id_is_refused(desk: tuple[Simulator, httpx.Client, str]) -> None:
    _, api, account = desk
    place(api, account, order(cOID="dup-1"))
    again = api.post(f"/iserver/account/{account}/orders", json=order(cOID="dup-1")).json()
    assert again == {"error": "Local order ID=dup-1 is already registered."}


def test_a_limit_order_rests_then_fills_when_the_clock_reaches_its_price(
    desk: tuple[Simulator, httpx.Client, str],
) -> None:
    simulator, api, account = desk
    now = simulator.clock.now()
    later = now + timedelta(days=1)  # Wednesday 2024-11-27, 13:00 New York: in session
    p_now, p_later = price_at(simulator, now), price_at(simulator, later)
    assert p_now != p_later
    side = "BUY" if p_later < p_now else "SELL"  # a limit at p_later is not marketable now
    answer, _ = place(api, account, order(orderType="LMT", price=p_later, side=side, tif="GTC"))
    order_id = int(answer[0]["order_id"])
    assert answer[0]["order_status"] == "Submitted"
    held = position(api, account, AAPL)
    assert live(api)[order_id]["status"] == "Submitted"  # checked again: still not marketable
    simulator.clock.set(later)  # type: ignore[attr-defined]
    filled = live(api)[order_id]  # any request lets resting orders meet the new price
    assert filled["status"] == "Filled"
    assert float(filled["avgPrice"]) == pytest.approx(p_later)
    assert filled["lastExecutionTime_r"] == int(later.timestamp() * 1000)
    signed = 10 if side == "BUY" else -10
    assert position(api, account, AAPL) == held + signed


def test_orders_outside_the_session_wait_as_presubmitted(
    desk: tuple[Simulator, httpx.Client, str],
) -> None:
    simulator, api, account = desk
    saturday = datetime(2024, 11, 30, 15, 0, tzinfo=UTC)
    simulator.clock.set(saturday)  # type: ignore[attr-defined]
    answer, _ = place(api, account, order())
    order_id = int(answer[0]["order_id"])
    assert answer[0]["order_status"] == "PreSubmitted"
    simulator.clock.set(datetime(2024, 12, 2, 15, 0, tzinfo=UTC))  # type: ignore[attr-defined]
    filled = live(api)[order_id]
    assert filled["status"] == "Filled"
    assert float(filled["avgPrice"]) == pytest.approx(simulator.market.last_price(AAPL))


def test_cancel_a_resting_order_and_ioc_orders_never_rest(
    desk: tuple[Simulator, httpx.Client, str],
) -> None:
    simulator, api, account = desk
    limit = round(simulator.market.last_price(AAPL) * 0.98, 2)
    resting, _ = place(api, account, order(orderType="LMT", price=limit))
    order_id = int(resting[0]["order_id"])
    cancelled = api.delete(f"/iserver/account/{account}/order/{order_id}").json()
    assert cancelled == {
        "msg": "Request was submitted",
        "order_id": order_id,
        "conid": AAPL,
        "account": account,
    }
    assert live(api)[order_id]["status"] == "Cancelled"
    again = api.delete(f"/iserver/account/{account}/order/{order_id}").json()
    assert "cannot be cancelled" in again["error"]
    ioc, _ = place(api, account, order(orderType="LMT", price=limit, tif="IOC"))
    assert ioc[0]["order_status"] == "Cancelled"
    statuses = {o["status"] for o in live(api).values()}
    assert statuses == {"Cancelled"}
    filtered = api.get("/iserver/account/orders", params={"filters": "filled"}).json()
    assert filtered["orders"] == []
