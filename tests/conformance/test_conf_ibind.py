"""A real third-party client of the Web API, ibind's IbkrClient, works against the simulator:
the proof that the simulator speaks the gateway's dialect rather than our own client's."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from ib_pipeline.simulator import PacingConfig, Simulator

AAPL = 265598

# ibind logs to files in a temp folder and registers an atexit shutdown by default; keep it quiet.
os.environ.setdefault("IBIND_LOG_TO_FILE", "False")
os.environ.setdefault("IBIND_AUTO_REGISTER_SHUTDOWN", "False")

from ibind import IbkrClient, OrderRequest, QuestionType  # noqa: E402


@pytest.fixture
def ibind_client(make_sim: Callable[..., Simulator]) -> Iterator[tuple[IbkrClient, Simulator]]:
    # ibind does not pace itself: its users call it sequentially, and so does this test, with
    # the simulator's per-endpoint limits (1 per 5 s on live orders) relaxed.
    simulator = make_sim(pacing=PacingConfig(enabled=False))
    client = IbkrClient(url=simulator.base_url + "/", cacert=False, timeout=10, max_retries=1)
    try:
        yield client, simulator
    finally:
        client.close()


def test_ibind_drives_every_endpoint(ibind_client: tuple[IbkrClient, Simulator]) -> None:
    client, simulator = ibind_client

    status = client.authentication_status().data
    assert status["authenticated"] is True and status["connected"] is True
    assert client.tickle().data is not None

    accounts = client.receive_brokerage_accounts().data
    account = accounts["accounts"][0]
    client.account_id = account
    portfolio_accounts = client.portfolio_accounts().data
    assert account in {entry["id"] for entry in portfolio_accounts}

    positions = client.positions(account_id=account, page=0).data
    assert isinstance(positions, list) and all("conid" in p for p in positions)
    summary = client.portfolio_summary(account_id=account).data
    assert "netliquidation" in summary and "amount" in summary["netliquidation"]

    preflight = client.live_marketdata_snapshot(str(AAPL), fields=["31", "84", "86"]).data
    assert preflight[0]["conid"] == AAPL and "31" not in preflight[0]
    snapshot = client.live_marketdata_snapshot(str(AAPL), fields=["31", "84", "86"]).data
    quote = simulator.truth.quote(AAPL)
    assert float(snapshot[0]["31"].lstrip("CH")) == pytest.approx(quote["last"])

    history = client.marketdata_history_by_conid(
        str(AAPL), bar="1h", period="2d", outside_rth=False, start_time=datetime(2024, 11, 26, 16)
    ).data
    assert history["data"] and all(
        {"o", "h", "l", "c", "v", "t"} <= set(bar) for bar in history["data"]
    )

    found = client.search_contract_by_symbol("AAPL").data
    assert any(str(item["conid"]) == str(AAPL) for item in found)

    first = client.live_orders().data
    assert first == {"orders": [], "snapshot": False}, "the first call of a session is empty"

    order = OrderRequest(
        conid=AAPL, side="BUY", quantity=1, order_type="MKT", acct_id=account, tif="DAY"
    )
    answers = {question: True for question in QuestionType}
    placed = client.place_order(order, answers, account_id=account).data
    placed = placed[0] if isinstance(placed, list) else placed
    assert placed["order_id"] and placed["order_status"]

    orders = client.live_orders().data["orders"]
    assert any(str(o["orderId"]) == str(placed["order_id"]) for o in orders), orders
