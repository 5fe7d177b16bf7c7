"""TLS and trading guards, configured the way a user configures the pipeline (the ``ibkr``
resource, ``IB_PIPELINE_*`` variables, ``ib-pipeline backfill``) and exercised end to end.

TLS: verification is on by default (no CA bundle, or another CA's bundle, fails with a
`TlsVerificationError` naming the cause, before any request reaches the gateway and without
retries); insecure mode is refused for any host that is not loopback, before anything is
sent; with the gateway's CA the whole small backfill reaches the simulator's truth over HTTPS.

Trading: placing an order is refused without ``allow_trading``; a live account also needs
``allow_live_trading``; only the confirmation questions the caller accepted are confirmed,
and a refused question leaves nothing at the broker; materialising the pipeline never places
an order, even when trading is allowed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from click.testing import CliRunner
from prove_support import (
    SIM_NOW,
    assert_backfill_equals_truth,
    assert_runs_succeeded,
    backfill_definitions,
    materialise_backfill,
    tree,
)

from assets.definitions import ibkr_resource_from_env
from assets.resources import IbkrClientResource
from assets.runs import run_assets, summarize_run
from ib_pipeline.cli import main
from ib_pipeline.clock import FixedClock
from ib_pipeline.ibkr.errors import (
    ConfigurationError,
    OrderConfirmationRefusedError,
    TlsVerificationError,
    TradingDisabledError,
)
from ib_pipeline.ibkr.orders import PlacedOrder
from ib_pipeline.storage.store import Store

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.slow(30)

AAPL = 265598
PLACE = "POST /iserver/account/{accountId}/orders"
REPLY = "POST /iserver/reply/{replyId}"
ORDER_ENDPOINTS = (PLACE, REPLY)


def requests_to(sim: Simulator, endpoint: str) -> int:
    return int(sim.stats()["endpoints"].get(endpoint, {}).get("requests", 0))


def flat(text: str) -> str:
    return " ".join(text.split())


def backfill_contracts(sim: Simulator, root: Path, **env: str) -> tuple[int, str]:
    """``ib-pipeline backfill --asset contracts`` with the client configured by ``env``."""
    result = CliRunner().invoke(
        main,
        ["backfill", "--asset", "contracts", "--warehouse", str(root), "--ephemeral"],
        env={"IB_PIPELINE_BASE_URL": sim.base_url, "COLUMNS": "200", **env},
        catch_exceptions=False,
    )
    return result.exit_code, result.output


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_sim(make_sim: Callable[..., Simulator]) -> Simulator:
    return make_sim(tls=True)


@pytest.fixture
def other_ca(tmp_path: Path) -> Path:
    """The CA bundle of another authority than the one that signed the gateway."""
    path = tmp_path / "other-ca.pem"
    trustme.CA(organization_name="not the gateway").cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize("trust", ["system", "other CA"])
def test_tls_is_verified_by_default_and_a_failure_names_the_cause(
    tls_sim: Simulator, tmp_path: Path, other_ca: Path, trust: str
) -> None:
    ca_bundle = None if trust == "system" else str(other_ca)
    root = tmp_path / "wh"
    defs = backfill_definitions(tls_sim.base_url, root, tls_sim.clock, ca_bundle=ca_bundle)
    summary = summarize_run(run_assets(defs, ["contracts"], raise_on_error=False))
    assert not summary.success
    (error,) = summary.errors
    assert "TlsVerificationError" in error and "CERTIFICATE_VERIFY_FAILED" in error
    assert "TLS certificate verification failed" in error and "ca_bundle" in error

    env = {"IB_PIPELINE_CA_BUNDLE": str(other_ca)} if ca_bundle else {}
    code, output = backfill_contracts(tls_sim, root, **env)
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in flat(output), output

    resource = IbkrClientResource(base_url=tls_sim.base_url, ca_bundle=ca_bundle)
    with pytest.raises(TlsVerificationError, match="auth_status"), resource.get_sync_client():
        pass
    # the handshake failed each time: no HTTP request reached the gateway, none was retried
    assert tls_sim.stats()["totals"]["requests"] == 0
    assert tree(root) == []


@pytest.mark.parametrize(
    "host",
    ["gateway.example.com", "10.0.0.8", "0.0.0.0", "localhost.evil.example", "127.0.0.1.nip.io",
     "[::ffff:10.0.0.8]"],
)  # fmt: skip
def test_insecure_mode_is_refused_for_a_host_that_is_not_loopback(
    tmp_path: Path, host: str
) -> None:
    base_url = f"https://{host}:5000/v1/api"
    with pytest.raises(ConfigurationError, match="only allowed for loopback hosts"):
        IbkrClientResource(base_url=base_url, insecure=True).settings()
    env = {"IB_PIPELINE_BASE_URL": base_url, "IB_PIPELINE_INSECURE": "true"}
    with pytest.raises(ConfigurationError, match=r"not '\[?[0-9a-z.:\-]+\]?'"):
        ibkr_resource_from_env(env)

    defs = backfill_definitions(base_url, tmp_path / "wh", FixedClock(SIM_NOW), insecure=True)
    summary = summarize_run(run_assets(defs, ["contracts"], raise_on_error=False))
    assert not summary.success
    assert "insecure=True (no TLS verification) is only allowed for loopback" in summary.errors[0]

    result = CliRunner().invoke(
        main,
        ["backfill", "--asset", "contracts", "--warehouse", str(tmp_path / "wh"), "--ephemeral"],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 2 and "only allowed for loopback hosts" in flat(result.output)
    assert tree(tmp_path) == []


def test_a_bad_client_setting_in_the_environment_is_a_usage_error_not_a_traceback(
    tmp_path: Path,
) -> None:
    """A fresh ``ib-pipeline`` process: the definitions read the environment when imported."""
    env = {
        **os.environ,
        "IB_PIPELINE_BASE_URL": "https://gateway.example.com:5000/v1/api",
        "IB_PIPELINE_INSECURE": "true",
    }
    program = str(Path(sys.executable).with_name("ib-pipeline"))
    done = subprocess.run(
        [program, "backfill", "--asset", "contracts", "--warehouse", str(tmp_path / "wh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "Error: insecure=True (no TLS verification) is only allowed" in done.stderr
    assert "not 'gateway.example.com'" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_with_the_gateway_ca_the_pipeline_reaches_the_truth_over_https(
    tls_sim: Simulator, tmp_path: Path
) -> None:
    root = tmp_path / "wh"
    defs = backfill_definitions(
        tls_sim.base_url, root, tls_sim.clock, ca_bundle=str(tls_sim.ca_file)
    )
    assert_runs_succeeded(materialise_backfill(defs))
    assert_backfill_equals_truth(root, tls_sim)

    code, output = backfill_contracts(
        tls_sim, tmp_path / "cli-wh", IB_PIPELINE_CA_BUNDLE=str(tls_sim.ca_file)
    )
    assert code == 0, output
    assert (tmp_path / "cli-wh" / "contracts" / "part.parquet").is_file()
    # insecure is allowed on loopback, and works
    insecure = backfill_definitions(
        tls_sim.base_url.replace("127.0.0.1", "localhost"),
        tmp_path / "insecure-wh",
        tls_sim.clock,
        insecure=True,
    )
    assert_runs_succeeded([run_assets(insecure, ["contracts"])])


# --- trading -----------------------------------------------------------------------------------


def limit_order(sim: Simulator, quantity: int, discount: float) -> dict[str, Any]:
    price = sim.truth.quote(AAPL)["last"]
    assert isinstance(price, float)
    return {
        "conid": AAPL,
        "orderType": "LMT",
        "side": "BUY",
        "quantity": quantity,
        "price": round(price * discount, 2),
        "tif": "GTC",
    }


def place(
    resource: IbkrClientResource, order: dict[str, Any], accept: frozenset[str] = frozenset()
) -> PlacedOrder:
    async def run() -> PlacedOrder:
        async with resource.get_client() as client:
            return await client.place_order(order, accept_message_ids=accept)

    return asyncio.run(run())


def confirm(resource: IbkrClientResource, reply_id: str) -> None:
    async def run() -> None:
        async with resource.get_client() as client:
            await client.reply(reply_id, confirmed=True)

    asyncio.run(run())


def env_resource(sim: Simulator, **env: str) -> IbkrClientResource:
    """The ``ibkr`` resource of the definitions, from ``IB_PIPELINE_*`` variables."""
    base = {"IB_PIPELINE_BASE_URL": sim.base_url, "IB_PIPELINE_KEEPALIVE_S": "0"}
    return ibkr_resource_from_env({**base, **env})


def test_orders_need_the_trading_setting_and_live_accounts_the_second_one(
    make_sim: Callable[..., Simulator],
) -> None:
    paper = make_sim()
    order = limit_order(paper, 1, 0.99)
    with pytest.raises(TradingDisabledError, match="IB_PIPELINE_ALLOW_TRADING=true"):
        place(env_resource(paper), order)
    with pytest.raises(TradingDisabledError, match="reply: trading is disabled"):
        confirm(env_resource(paper), "any-id")
    assert all(requests_to(paper, e) == 0 for e in ORDER_ENDPOINTS)
    assert paper.truth.orders() == []

    live = make_sim(main_account="U7777777", bulk_positions=0)
    order = limit_order(live, 1, 0.99)
    allowed = env_resource(live, IB_PIPELINE_ALLOW_TRADING="true")
    with pytest.raises(TradingDisabledError, match=r"U7777777 is a live .*allow_live_trading"):
        place(allowed, order)
    assert requests_to(live, PLACE) == 0 and live.truth.orders() == []
    with pytest.raises(ConfigurationError, match="allow_live_trading=True also needs"):
        env_resource(live, IB_PIPELINE_ALLOW_LIVE_TRADING="true")

    both = env_resource(
        live, IB_PIPELINE_ALLOW_TRADING="true", IB_PIPELINE_ALLOW_LIVE_TRADING="true"
    )
    placed = place(both, order)
    assert placed.account == "U7777777"
    assert [o["order_id"] for o in live.truth.orders()] == [int(placed.order_id)]


def test_only_the_accepted_confirmations_are_confirmed_and_the_pipeline_never_trades(
    sim: Simulator, tmp_path: Path
) -> None:
    """A large order far from the market raises two questions: o383 (size) and o163 (price
    percentage constraint)."""
    resource = env_resource(sim, IB_PIPELINE_ALLOW_TRADING="true")
    order = limit_order(sim, 600, 0.95)
    for accept, refused in ((frozenset(), "o383"), (frozenset({"o383"}), "o163")):
        before = requests_to(sim, REPLY)
        with pytest.raises(OrderConfirmationRefusedError) as info:
            place(resource, order, accept)
        assert info.value.message_ids == (refused,)
        assert requests_to(sim, REPLY) - before == len(accept) + 1  # confirmed, then refused
        assert sim.truth.orders() == []  # the gateway discarded the order

    placed = place(resource, order, frozenset({"o383", "o163"}))
    assert [o["order_id"] for o in sim.truth.orders()] == [int(placed.order_id)]

    # the whole pipeline, trading allowed: it reads the order, it never places one
    orders_sent = requests_to(sim, PLACE), requests_to(sim, REPLY)
    root = tmp_path / "wh"
    defs = backfill_definitions(
        sim.base_url, root, sim.clock, allow_trading=True, allow_live_trading=True
    )
    names = ["contracts", "quotes", "accounts", "positions", "account_summary", "orders"]
    assert_runs_succeeded([run_assets(defs, names)])
    assert (requests_to(sim, PLACE), requests_to(sim, REPLY)) == orders_sent
    assert [o["order_id"] for o in sim.truth.orders()] == [int(placed.order_id)]
    stored = Store(root, clock=sim.clock).read("orders")
    assert stored.column("order_id").to_pylist() == [int(placed.order_id)]
