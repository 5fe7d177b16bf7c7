"""Portfolio payloads: positions paged by 100, the keyed summary, agreement with the truth."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from ib_pipeline.simulator import Simulator

SUMMARY_ENTRY_KEYS = {"amount", "currency", "isNull", "timestamp", "value", "severity"}


def test_a_250_position_account_pages_full_full_short_then_empty(
    free_sim: Simulator, free_api: httpx.Client, prime: Callable[[httpx.Client], str]
) -> None:
    prime(free_api)
    bulk = free_sim.config.bulk_account
    pages = [free_api.get(f"/portfolio/{bulk}/positions/{page}").json() for page in range(4)]
    assert [len(p) for p in pages] == [100, 100, 50, 0]
    rows = [row for page in pages for row in page]
    conids = [row["conid"] for row in rows]
    assert conids == sorted(conids) and len(set(conids)) == 250
    assert {row["acctId"] for row in rows} == {bulk}
    assert {row["assetClass"] for row in rows} == {"STK", "OPT"}
    truth = free_sim.truth.positions(bulk)
    assert [(t["conid"], t["position"], t["mkt_value"]) for t in truth] == [
        (row["conid"], row["position"], row["mktValue"]) for row in rows
    ]
    option = next(row for row in rows if row["assetClass"] == "OPT")
    assert option["multiplier"] == 100.0 and option["putOrCall"] in ("C", "P")
    assert option["mktValue"] == pytest.approx(option["position"] * option["mktPrice"] * 100)


def test_position_rows_carry_the_gateway_fields(
    free_sim: Simulator, free_api: httpx.Client, prime: Callable[[httpx.Client], str]
) -> None:
    account = prime(free_api)
    rows = free_api.get(f"/portfolio/{account}/positions/0").json()
    assert 0 < len(rows) < 100
    expected = {
        "acctId", "conid", "contractDesc", "position", "mktPrice", "mktValue", "currency",
        "avgCost", "avgPrice", "realizedPnl", "unrealizedPnl", "assetClass", "strike",
        "conExchMap", "undConid", "model",
    }  # fmt: skip
    for row in rows:
        assert expected <= row.keys()
        assert row["mktValue"] == pytest.approx(row["position"] * row["mktPrice"], abs=0.01)
        assert row["unrealizedPnl"] == pytest.approx(
            (row["mktPrice"] - row["avgPrice"]) * row["position"], abs=0.01
        )


def test_the_summary_is_keyed_with_segment_variants_and_string_values(
    free_sim: Simulator, free_api: httpx.Client, prime: Callable[[httpx.Client], str]
) -> None:
    account = prime(free_api)
    summary = free_api.get(f"/portfolio/{account}/summary").json()
    assert all(set(entry) == SUMMARY_ENTRY_KEYS for entry in summary.values())
    for key in ("netliquidation", "totalcashvalue", "availablefunds", "equitywithloanvalue"):
        assert {key, f"{key}-c", f"{key}-s"} <= summary.keys()
        assert summary[key]["amount"] == summary[f"{key}-s"]["amount"]
        assert summary[f"{key}-c"]["amount"] == 0.0
        assert summary[key]["currency"] == "USD" and summary[key]["value"] is None
    code = summary["accountcode"]
    assert (code["value"], code["amount"], code["currency"]) == (account, 0, None)
    assert summary["segmenttitle-s"]["value"] == "US Securities"
    stamp = int(free_sim.clock.now().timestamp() * 1000)
    assert {entry["timestamp"] for entry in summary.values()} == {stamp}
    rows = free_api.get(f"/portfolio/{account}/positions/0").json()
    netliq = summary["totalcashvalue"]["amount"] + sum(row["mktValue"] for row in rows)
    assert summary["netliquidation"]["amount"] == pytest.approx(netliq, abs=0.02)
    truth = free_sim.truth.summary(account)
    assert summary["grosspositionvalue"]["amount"] == truth["grosspositionvalue"]


def test_the_bulk_account_can_be_left_out(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(bulk_positions=0)
    api = client_for(simulator)
    assert api.get("/iserver/accounts").json()["accounts"] == [simulator.config.main_account]
    assert simulator.truth.accounts == [simulator.config.main_account]
