"""Fault injection: the --faults grammar, each fault observable over real HTTP, determinism."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import httpx
import pytest

from ib_pipeline.simulator import FaultSpec, PacingConfig, Simulator

pytestmark = pytest.mark.timing

AAPL = 265598
NO_PACING = PacingConfig(enabled=False)
HISTORY: dict[str, str | int] = {"conid": AAPL, "period": "2d", "bar": "5min"}


def test_the_fault_grammar_parses_every_key_and_prints_back() -> None:
    text = (
        "5xx=0.05,429=0.02,slow=0.01,slow_s=3,drop=0.01,truncate=0.01,"
        "session_drop_at=120,accounts_reset_at=50,bad_bars=0.02,seed=7"
    )
    spec = FaultSpec.parse(text)
    assert spec == FaultSpec(
        rate_5xx=0.05,
        rate_429=0.02,
        rate_slow=0.01,
        slow_s=3.0,
        rate_drop=0.01,
        rate_truncate=0.01,
        session_drop_at=120,
        accounts_reset_at=50,
        bad_bars=0.02,
        seed=7,
    )
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("none") == FaultSpec.parse("") == FaultSpec()
    assert not FaultSpec().active and spec.active


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5xx=0.1,boom=1", "unknown fault key 'boom'; valid keys: 5xx, 429, slow"),
        ("drop", "not KEY=VALUE"),
        ("drop=lots", "drop='lots': expected a number"),
        ("session_drop_at=1.5", "expected an integer"),
        ("session_drop_at=0", "request number >= 1"),
        ("5xx=1.5", "between 0 and 1"),
        ("5xx=0.6,drop=0.6", "sum to 1.2"),
        ("seed=1,seed=2", "given twice"),
    ],
)
def test_bad_fault_specs_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        FaultSpec.parse(text)
    assert message in str(info.value)


def test_5xx_faults_answer_gateway_errors(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="5xx=1,seed=1", pacing=NO_PACING)
    responses = [client_for(simulator).get("/iserver/accounts") for _ in range(12)]
    assert {r.status_code for r in responses} == {500, 503}
    assert all(isinstance(r.json()["error"], str) for r in responses)
    stats = simulator.stats()
    assert stats["totals"]["faults"] == {"5xx": 12} and stats["totals"]["5xx"] == 12
    assert stats["totals"]["internal_errors"] == 0


def test_429_faults_are_one_off_without_a_penalty_box(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="429=1")
    api = client_for(simulator)
    throttled = api.get("/iserver/accounts")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert simulator.stats()["pacing"]["in_penalty_box"] is False
    simulator.set_faults("none")
    assert api.get("/iserver/accounts").status_code == 200


def test_slow_faults_outlast_a_short_client_timeout(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="slow=1,slow_s=0.6", pacing=NO_PACING)
    with pytest.raises(httpx.ReadTimeout):
        client_for(simulator, timeout=0.2).get("/iserver/auth/status")
    patient = client_for(simulator, timeout=5.0).get("/iserver/auth/status")
    assert patient.status_code == 200
    assert patient.elapsed.total_seconds() >= 0.6
    assert simulator.stats()["totals"]["faults"] == {"slow": 2}


def test_drop_faults_close_the_connection_without_an_answer(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="drop=1", pacing=NO_PACING)
    with pytest.raises(httpx.RemoteProtocolError):
        client_for(simulator).get("/iserver/accounts")
    assert simulator.stats()["totals"]["dropped"] == 1


def test_truncate_faults_cut_the_json_body_of_a_valid_http_answer(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="truncate=1", pacing=NO_PACING)
    response = client_for(simulator).get("/iserver/marketdata/history", params=HISTORY)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    simulator.set_faults("none")
    full = client_for(simulator).get("/iserver/marketdata/history", params=HISTORY)
    assert full.content.startswith(response.content)
    assert len(full.content) // 2 == len(response.content)


def test_session_drop_at_n_needs_a_reauthentication(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="session_drop_at=3", pacing=NO_PACING)
    api = client_for(simulator)
    assert [api.get("/iserver/accounts").status_code for _ in range(2)] == [200, 200]
    assert [api.get("/iserver/accounts").status_code for _ in range(2)] == [401, 401]
    assert api.post("/iserver/auth/ssodh/init").json()["authenticated"] is True
    assert api.get("/iserver/accounts").status_code == 200
    assert simulator.stats()["totals"]["faults"] == {"session_drop": 1}


def test_accounts_reset_at_n_makes_the_gateway_ask_for_accounts_again(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="accounts_reset_at=3", pacing=NO_PACING)
    api = client_for(simulator)
    snapshot: dict[str, str | int] = {"conids": AAPL, "fields": "31"}
    assert api.get("/iserver/accounts").status_code == 200
    assert api.get("/iserver/marketdata/snapshot", params=snapshot).status_code == 200
    forgotten = api.get("/iserver/marketdata/snapshot", params=snapshot)
    assert (forgotten.status_code, forgotten.json()) == (
        500,
        {"error": "Please query /accounts first"},
    )
    assert api.get("/iserver/accounts").status_code == 200
    again = api.get("/iserver/marketdata/snapshot", params=snapshot)
    assert again.status_code == 200 and "31" in again.json()[0]  # still past its pre-flight


def _invalid_rows(rows: list[dict[str, float]]) -> int:
    times = [row["t"] for row in rows]
    bad = sum(
        1
        for row in rows
        if any(not math.isfinite(row[k]) for k in "ohlc") or row["h"] < row["l"] or row["v"] < 0
    )
    return bad + len(times) - len(set(times)) + (times != sorted(times))


def test_bad_bars_corrupt_history_responses_until_cleared(
    make_sim: Callable[..., Simulator], client_for: Callable[..., httpx.Client]
) -> None:
    simulator = make_sim(faults="bad_bars=0.3,seed=5", pacing=NO_PACING)
    api = client_for(simulator)
    bad = json.loads(api.get("/iserver/marketdata/history", params=HISTORY).content)
    assert _invalid_rows(bad["data"]) > 0
    simulator.set_faults("none")
    clean = api.get("/iserver/marketdata/history", params=HISTORY).json()
    assert _invalid_rows(clean["data"]) == 0


def _outcomes(simulator: Simulator, count: int) -> list[str]:
    outcomes = []
    with httpx.Client(base_url=simulator.base_url, timeout=5.0) as client:
        for _ in range(count):
            try:
                response = client.get("/iserver/auth/status")
            except httpx.RemoteProtocolError:
                outcomes.append("dropped")
                continue
            try:
                response.json()
            except json.JSONDecodeError:
                outcomes.append(f"{response.status_code}-truncated")
                continue
            outcomes.append(str(response.status_code))
    return outcomes


def test_faults_are_deterministic_for_a_seed_and_restart_on_set_faults(
    make_sim: Callable[..., Simulator],
) -> None:
    spec = "5xx=0.2,429=0.1,drop=0.1,truncate=0.2,seed=7"
    first = make_sim(faults=spec, pacing=NO_PACING)
    second = make_sim(faults=spec, pacing=NO_PACING)
    run = _outcomes(first, 40)
    assert len(set(run)) >= 4, run  # several kinds of fault, and some clean answers
    assert _outcomes(second, 40) == run
    first.set_faults(spec)
    assert _outcomes(first, 40) == run
    first.set_faults(spec.replace("seed=7", "seed=8"))
    assert _outcomes(first, 40) != run
    first.set_faults("none")
    assert set(_outcomes(first, 10)) == {"200"}


def test_faults_can_be_set_over_http(sim: Simulator, api: httpx.Client) -> None:
    answer = httpx.post(sim.url + "/sim/faults", json={"faults": "5xx=1"})
    assert answer.json() == {"faults": "5xx=1"}
    assert api.get("/iserver/auth/status").status_code in (500, 503)
    refused = httpx.post(sim.url + "/sim/faults", json={"faults": "nope=1"})
    assert refused.status_code == 400 and "nope" in refused.json()["error"]
