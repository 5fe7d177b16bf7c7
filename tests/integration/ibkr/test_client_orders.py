"""Orders against the simulator: the trading guards, the confirmation (reply) flow, rejections,
no resending after a timeout, and live orders that equal the simulator's truth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import (
    OrderConfirmationRefusedError,
    OrderRejectedError,
    RequestTimeoutError,
    TradingDisabledError,
)
from ib_pipeline.ibkr.settings import ClientSettings, PacingLimits, RetryPolicy, Timeouts
from ib_pipeline.ibkr.tables import LIVE_ORDERS
from ib_pipeline.simulator import PacingConfig, Simulator

AAPL = 265598
PLACE = "POST /iserver/account/{accountId}/orders"
REPLY = "POST /iserver/reply/{replyId}"


def settings_for(sim: Simulator, **changes: Any) -> ClientSettings:
    base = ClientSettings(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        token_env=None,
        retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05, jitter_s=0),
        pacing=PacingLimits(live_orders_interval_s=0.3, portfolio_accounts_interval_s=0.3),
        allow_trading=True,
    )
    return base.with_changes(**changes)


@pytest.fixture
def order_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    """Published pacing, except one live-orders call per 0.25 s instead of 5 s."""
    return make_sim(
        pacing=PacingConfig(
            live_orders_interval_s=0.25, portfolio_accounts_interval_s=0.25, penalty_box_s=1.0
        )
    )


def requests_to(sim: Simulator, endpoint: str) -> int:
    return int(sim.stats()["endpoints"].get(endpoint, {}).get("requests", 0))


def last_price(sim: Simulator) -> float:
    price = sim.truth.quote(AAPL)["last"]
    assert isinstance(price, float)
    return price


async def test_trading_is_disabled_by_default(order_sim: Simulator) -> None:
    settings = settings_for(order_sim, allow_trading=False)
    async with IbkrClient(settings) as client:
        order = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 1, "tif": "DAY"}
        with pytest.raises(TradingDisabledError, match="allow_trading=True"):
            await client.place_order(order)
        with pytest.raises(TradingDisabledError):
            await client.reply("some-id", confirmed=True)
    assert requests_to(order_sim, PLACE) == 0 and requests_to(order_sim, REPLY) == 0


async def test_live_account_needs_the_second_setting(make_sim: Callable[..., Simulator]) -> None:
    sim = make_sim(main_account="U7777777", bulk_positions=0)
    order = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 1, "tif": "DAY"}
    async with IbkrClient(settings_for(sim)) as client:
        with pytest.raises(TradingDisabledError, match=r"U7777777 is a live.*allow_live_trading"):
            await client.place_order(order)
    assert requests_to(sim, PLACE) == 0
    async with IbkrClient(settings_for(sim, allow_live_trading=True)) as client:
        placed = await client.place_order(order)
    assert placed.account == "U7777777" and placed.order_id


async def test_order_lifecycle_matches_the_truth(order_sim: Simulator) -> None:
    price = last_price(order_sim)
    async with IbkrClient(settings_for(order_sim)) as client:
        market = await client.place_order(
            {
                "conid": AAPL,
                "orderType": "MKT",
                "side": "BUY",
                "quantity": 10,
                "tif": "DAY",
                "cOID": "test-mkt-1",
            }
        )
        limit = await client.place_order(
            {
                "conid": AAPL,
                "orderType": "LMT",
                "side": "BUY",
                "quantity": 5,
                "price": round(price * 0.99, 2),
                "tif": "GTC",
                "cOID": "test-lmt-1",
            }
        )
        settled = await client.live_orders_settled()
    assert market.order_status in ("Filled", "Submitted", "PreSubmitted")
    assert limit.order_id != market.order_id
    assert settled.payload["orders"], "polled past the first empty snapshot:false answer"
    assert requests_to(order_sim, "GET /iserver/account/orders") == 2
    table = normalize.live_orders(settled.payload).sort_by("order_id")
    expected = pa.Table.from_pylist(order_sim.truth.orders(), schema=LIVE_ORDERS)
    assert table.equals(expected)


async def test_accepted_questions_are_confirmed(order_sim: Simulator) -> None:
    price = last_price(order_sim)
    order = {"conid": AAPL, "orderType": "LMT", "side": "BUY", "quantity": 600,
             "price": round(price * 0.95, 2), "tif": "GTC"}  # fmt: skip
    async with IbkrClient(settings_for(order_sim)) as client:
        placed = await client.place_order(order, accept_message_ids={"o383", "o163"})
    assert [r.endpoint for r in placed.responses] == ["place_order", "reply", "reply"]
    assert placed.responses[1].params == {"replyId": placed.responses[0].payload[0]["id"],
                                          "confirmed": True}  # fmt: skip
    assert any(o["order_id"] == int(placed.order_id) for o in order_sim.truth.orders())


async def test_unaccepted_question_is_refused_and_discarded(order_sim: Simulator) -> None:
    price = last_price(order_sim)
    order = {"conid": AAPL, "orderType": "LMT", "side": "BUY", "quantity": 600,
             "price": round(price * 0.95, 2), "tif": "GTC"}  # fmt: skip
    async with IbkrClient(settings_for(order_sim)) as client:
        with pytest.raises(OrderConfirmationRefusedError) as info:
            await client.place_order(order, accept_message_ids={"o383"})
    error = info.value
    assert error.message_ids == ("o163",)
    assert "Percentage constraint of 3%" in error.messages[0]
    assert "o163" in str(error) and "confirmed=false" in str(error)
    assert requests_to(order_sim, REPLY) == 2  # o383 confirmed, then o163 refused
    assert order_sim.truth.orders() == []  # the gateway discarded the order


async def test_rejection_carries_the_gateway_text(order_sim: Simulator) -> None:
    price = last_price(order_sim)
    order = {"conid": AAPL, "orderType": "LMT", "side": "BUY", "quantity": 1,
             "price": round(price * 0.3, 2), "tif": "DAY"}  # fmt: skip
    async with IbkrClient(settings_for(order_sim)) as client:
        with pytest.raises(OrderRejectedError, match="closer to the current market price"):
            await client.place_order(order)


async def test_an_order_is_never_resent_after_a_timeout(order_sim: Simulator) -> None:
    settings = settings_for(order_sim, timeouts=Timeouts(read=0.3))
    order = {"conid": AAPL, "orderType": "MKT", "side": "BUY", "quantity": 1, "tif": "DAY"}
    async with IbkrClient(settings) as client:
        await client.account_id()  # prime before the faults start
        order_sim.set_faults("slow=1,slow_s=0.6")
        with pytest.raises(RequestTimeoutError, match="place_order"):
            await client.place_order(order)
        assert client.stats.requests["place_order"] == 1
        assert client.stats.retries["place_order"] == 0
        async with asyncio.timeout(5):  # let the slow answer finish before stopping
            while requests_to(order_sim, PLACE) < 1:
                await asyncio.sleep(0.01)
    assert requests_to(order_sim, PLACE) == 1
