"""An advisor (FA) login (issue 13 item 1), pipeline side: the simulator's advisor mode lists
the group ``All``, the real sub-accounts, a user group and an allocation profile. The client's
default account is the gateway's ``selectedAccount``; the portfolio assets, through the real
Dagster definitions, snapshot exactly the real accounts; a universe or setting naming a group
or a profile is refused, naming it and saying what it is."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow.compute as pc
import pytest
from dagster_support import Pipeline

from assets.runs import run_assets, summarize_run
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.errors import ConfigurationError
from ib_pipeline.ibkr.settings import ClientSettings
from ib_pipeline.simulator import Simulator

PORTFOLIO = ["accounts", "positions", "account_summary"]


@pytest.fixture
def advisor(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(login="advisor")


def settings(sim: Simulator, **changes: object) -> ClientSettings:
    base = ClientSettings(base_url=sim.base_url, keepalive_interval_s=None, token_env=None)
    return base.with_changes(**changes)


async def test_the_default_account_is_the_selected_one_never_all(advisor: Simulator) -> None:
    async with IbkrClient(settings(advisor)) as client:
        listing = await client.accounts()
        assert listing["accounts"][0] == "All"
        assert await client.account_id() == listing["selectedAccount"] != "All"
        accounts = await client.account_listing()
    assert list(accounts.real) == advisor.truth.accounts
    assert accounts.not_accounts() == {
        "All": "an account group",
        "GROUP1": "an account group",
        "UPRO_BUY_785_20241126_1": "an allocation profile",
    }


@pytest.mark.parametrize(
    ("entry", "kind"),
    [("GROUP1", "an account group"), ("UPRO_BUY_785_20241126_1", "an allocation profile")],
)
async def test_a_configured_group_or_profile_is_refused(
    advisor: Simulator, entry: str, kind: str
) -> None:
    async with IbkrClient(settings(advisor, account=entry)) as client:
        with pytest.raises(ConfigurationError, match=f"account '{entry}' is {kind}"):
            await client.account_id()
        with pytest.raises(ConfigurationError, match=entry):
            await client.account_summary()


def test_the_portfolio_assets_snapshot_exactly_the_real_accounts(
    advisor: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(advisor)
    summary = summarize_run(run_assets(pipeline.defs, PORTFOLIO))
    assert summary.success and not summary.failed_checks, summary.errors
    real = advisor.truth.accounts
    assert len(real) >= 3
    store = pipeline.store()
    positions = store.read("positions")
    assert set(positions["account"].to_pylist()) == set(real)
    for account in real:
        mine = positions.filter(pc.equal(positions["account"], account)).sort_by("conid")
        assert mine["conid"].to_pylist() == [p["conid"] for p in advisor.truth.positions(account)]
    summaries = store.read("account_summary")
    assert set(summaries["account"].to_pylist()) == set(real)
    assert summary.materialized["accounts"]["instrument_list"] == ", ".join(real)


def test_a_universe_naming_a_group_fails_naming_it(
    advisor: Simulator, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(advisor, accounts=[advisor.truth.accounts[0], "GROUP1"])
    with pytest.raises(Exception, match="'GROUP1' is an account group, not an account"):
        run_assets(pipeline.defs, PORTFOLIO)
    stats = advisor.stats()["endpoints"]
    assert not any("/positions/" in name or "/summary" in name for name in stats), stats
