"""Issue 13 over real HTTP: advisor logins, splits restated by the clock, futures contract months,
non-US exchanges, delayed data; and the ``ib-pipeline sim`` options that turn them on."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ib_pipeline.calendars import calendar_for
from ib_pipeline.cli import main
from ib_pipeline.simulator import PacingConfig, Simulator
from ib_pipeline.simulator.instruments import by_conid, by_symbol

NO_PACING = PacingConfig(enabled=False)
AAPL = 265598
SPY = 756733
ES = by_symbol("ES", "FUT")[0].conid
CLI = str(Path(sys.executable).parent / "ib-pipeline")
URL = re.compile(r"serving (https?://\S+/v1/api)")


def test_an_advisor_login_serves_groups_profiles_and_sub_accounts(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    sim = make_sim(login="advisor", pacing=NO_PACING)
    api = client_for(sim)
    listing = api.get("/iserver/accounts").json()
    real = [entry["id"] for entry in api.get("/portfolio/accounts").json()]
    assert real == sim.truth.accounts and len(real) == 4
    assert listing["accounts"][0] == "All"
    assert listing["selectedAccount"] == sim.truth.selected_account == real[0]
    not_accounts = set(listing["accounts"]) - set(real)
    assert not_accounts == set(sim.truth.account_groups) | set(sim.truth.account_profiles)
    assert set(listing["groups"]) | set(listing["profiles"]) == not_accounts
    for entry in not_accounts:
        assert not sim.truth.is_real_account(entry)
        for path in (f"/portfolio/{entry}/positions/0", f"/portfolio/{entry}/summary"):
            refused = api.get(path)
            assert refused.status_code == 400, path
            assert "not an account" in refused.json()["error"]
    for account in real:
        assert sim.truth.is_real_account(account)
        positions = api.get(f"/portfolio/{account}/positions/0").json()
        assert {p["conid"] for p in positions} >= {
            p["conid"] for p in sim.truth.positions(account)[:100]
        }
        summary = api.get(f"/portfolio/{account}/summary").json()
        assert summary["netliquidation"]["amount"] == sim.truth.summary(account)["netliquidation"]


def test_the_default_login_is_unchanged(sim: Simulator, api: httpx.Client) -> None:
    listing = api.get("/iserver/accounts").json()
    assert listing["accounts"] == ["DU1234567", "DU7654321"]
    assert listing["groups"] == [] and listing["profiles"] == []
    assert sim.truth.account_groups == [] and sim.truth.account_profiles == []


def test_history_is_restated_once_the_clock_passes_a_split(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    split_day = date(2024, 11, 27)
    sim = make_sim(splits={AAPL: [(split_day, 4.0)]}, pacing=NO_PACING)
    api = client_for(sim)
    params = {
        "conid": str(AAPL),
        "period": "1w",
        "bar": "1d",
        "startTime": "20241126-00:00:00",
    }
    before = api.get("/iserver/marketdata/history", params=params).json()["data"]
    served_before = sim.truth.history_bars(
        AAPL, "1d", datetime(2024, 11, 19, tzinfo=UTC), datetime(2024, 11, 26, tzinfo=UTC)
    )
    assert [b["c"] for b in before] == served_before.column("close").to_pylist()
    sim.advance(timedelta(days=1, hours=12))  # 2024-11-28 06:00 UTC: the split is effective
    after = api.get("/iserver/marketdata/history", params=params).json()["data"]
    assert [b["t"] for b in after] == [b["t"] for b in before] and after
    for old, new in zip(before, after, strict=True):
        assert new["c"] * 4 == pytest.approx(old["c"])
        assert new["l"] * 4 == pytest.approx(old["l"])
        assert new["v"] == pytest.approx(old["v"] * 4)
    window = (datetime(2024, 11, 19, tzinfo=UTC), datetime(2024, 11, 26, tzinfo=UTC))
    truth_now = sim.truth.history_bars(AAPL, "1d", *window)
    truth_then = sim.truth.history_bars(
        AAPL, "1d", *window, as_of=datetime(2024, 11, 26, 18, tzinfo=UTC)
    )
    assert [b["c"] for b in after] == truth_now.column("close").to_pylist()
    assert truth_then.equals(sim.truth.history_bars(AAPL, "1d", *window, as_traded=True))
    assert truth_then.column("close").to_pylist() == [b["c"] for b in before]


def test_futures_months_are_listed_resolved_and_charted(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    sim = make_sim(pacing=NO_PACING)
    api = client_for(sim)
    search = api.post("/iserver/secdef/search", json={"symbol": "ES", "secType": "FUT"}).json()
    assert [int(s["conid"]) for s in search] == [ES]
    listing = api.get("/trsrv/futures", params={"symbols": "ES"})
    assert listing.status_code == 200
    months = listing.json()["ES"]
    assert [m["expirationDate"] for m in months] == [20241220, 20250321, 20250620, 20250919]
    assert all(m["underlyingConid"] == ES and m["symbol"] == "ES" for m in months)
    assert [m["conid"] for m in months] == [m["conid"] for m in sim.truth.futures("ES")]
    info = api.get(
        "/iserver/secdef/info", params={"conid": ES, "sectype": "FUT", "month": "DEC24"}
    ).json()
    assert info[0]["conid"] == months[0]["conid"] and info[0]["maturityDate"] == "20241220"
    history = api.get(
        "/iserver/marketdata/history",
        params={"conid": months[0]["conid"], "period": "2d", "bar": "1h"},
    ).json()
    assert history["data"] and history["symbol"] == "ES"
    truth = sim.truth.served_bars({"conid": str(months[0]["conid"]), "period": "2d", "bar": "1h"})
    assert [b["c"] for b in history["data"]] == truth.column("close").to_pylist()
    assert api.get("/trsrv/futures").status_code == 400


def test_non_us_stocks_resolve_and_chart_inside_their_sessions(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    sim = make_sim(pacing=NO_PACING)
    api = client_for(sim)
    for symbol, exchange, currency in (
        ("SAP", "IBIS", "EUR"),
        ("VOD", "LSE", "GBP"),
        ("7203", "TSEJ", "JPY"),
        ("700", "SEHK", "HKD"),
        ("BHP", "ASX", "AUD"),
        ("RY", "TSE", "CAD"),
    ):
        found = api.post("/iserver/secdef/search", json={"symbol": symbol}).json()
        assert [f["description"] for f in found] == [exchange], symbol
        conid = int(found[0]["conid"])
        info = api.get("/iserver/secdef/info", params={"conid": conid, "sectype": "STK"}).json()
        assert info[0]["currency"] == currency and info[0]["exchange"] == exchange
        body = api.get(
            "/iserver/marketdata/history", params={"conid": conid, "period": "5d", "bar": "1h"}
        ).json()
        assert body["data"] and body["volumeFactor"] == 1, symbol
        cal = calendar_for(by_conid(conid).trading_hours)
        for bar in body["data"]:
            moment = datetime.fromtimestamp(bar["t"] / 1000, UTC)
            sessions = cal.sessions_overlapping(moment, moment + timedelta(minutes=1), False)
            assert sessions, (symbol, moment)


def test_delayed_data_is_flagged_over_http(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    sim = make_sim(delayed_conids=frozenset({SPY}), pacing=NO_PACING)
    api = client_for(sim)
    api.get("/iserver/accounts")
    params = {"conids": f"{SPY},{AAPL}", "fields": "31,6509"}
    api.get("/iserver/marketdata/snapshot", params=params)
    rows = {r["conid"]: r for r in api.get("/iserver/marketdata/snapshot", params=params).json()}
    assert rows[SPY]["6509"] == "DpB" and rows[AAPL]["6509"] == "RpB"
    assert sim.truth.is_delayed(SPY) and sim.truth.quote(SPY)["market_data_availability"] == "DpB"
    history = api.get(
        "/iserver/marketdata/history", params={"conid": SPY, "period": "1h", "bar": "1min"}
    ).json()
    assert history["mdAvailability"] == "D" and len(history["data"]) == 45
    live = api.get(
        "/iserver/marketdata/history", params={"conid": AAPL, "period": "1h", "bar": "1min"}
    ).json()
    assert live["mdAvailability"] == "S" and len(live["data"]) == 60


def test_help_lists_the_new_options_and_bad_values_are_usage_errors() -> None:
    result = CliRunner().invoke(main, ["sim", "--help"])
    assert result.exit_code == 0
    for option in ("--login", "--split", "--delayed"):
        assert option in result.output
    for args, message in (
        (["--login", "fa"], "fa"),
        (["--split", "265598:2024-13-01:4"], "CONID:YYYY-MM-DD:RATIO"),
        (["--split", "265598:2024-11-27:1"], "ratio"),
        (["--delayed", "SPY"], "conids"),
        (["--split", "1:2024-11-27:4"], "unknown conid"),
    ):
        bad = CliRunner().invoke(main, ["sim", *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert message in bad.output, (args, bad.output)


def test_the_cli_serves_an_advisor_login_with_splits_and_delayed_data() -> None:
    process = subprocess.Popen(
        [
            CLI, "sim", "--port", "0", "--now", "2024-11-28T18:00:00Z", "--no-pacing",
            "--login", "advisor", "--split", "265598:2024-11-27:4", "--delayed", "756733",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines: list[str] = []
        base_url = None
        for line in process.stdout:
            lines.append(line)
            found = URL.search(line)
            if found:
                base_url = found.group(1)
            if "login advisor" in line:
                break
        assert base_url is not None, lines
        assert "delayed 756733" in "".join(lines)
        accounts = httpx.get(base_url + "/iserver/accounts", timeout=30).json()
        assert accounts["accounts"][0] == "All" and accounts["groups"]
        history = httpx.get(
            base_url + "/iserver/marketdata/history",
            params={"conid": SPY, "period": "1d", "bar": "1h"},
            timeout=30,
        ).json()
        assert history["mdAvailability"] == "D"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
