"""The fault matrix, end to end through Dagster against the simulator over HTTP.

Every fault the simulator injects (429 bursts, 5xx, answers slower than the client's timeout,
dropped connections, truncated JSON, a brokerage session that drops mid-run, a gateway that
forgets ``/iserver/accounts``), a logout that only a browser login repairs, a gateway that
answers 5xx to everything, and a mix of all of them at once, each during the same work: a
three-instrument, three-session backfill of one-minute bars as ONE Dagster run, then a run of
quotes, accounts, positions and account summaries.

Each case ends in one of two ways: both runs complete and the warehouse equals the simulator's
ground truth row for row; or a run fails with an error naming the cause and, once the fault is
cleared, a re-run completes to the ground truth. In every case the client retried each
injected fault (and hardly anything else), nothing is doubled or quarantined, and the gateway's
penalty box never opened. The table of cases goes to reports/fault_matrix.md and to pytest's
terminal summary.

Fault draws are seeded and restart with each run (`Simulator.set_faults`), so the same request
numbers fail in every session; which logical request carries a number can vary slightly with
the timing of concurrent requests, so counts are asserted as lower bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from dagster_support import Pipeline
from prove_fault_support import (
    CLIENT_TIMEOUT_S,
    MATRIX,
    MatrixRow,
    RecordingIbkrResource,
    assert_warehouse_equals_truth,
    client_recoveries,
    client_retries,
    forget_clients,
    run_bars,
    run_snapshots,
    write_report,
)

from assets.progress import NullProgress
from assets.runs import RunSummary
from ib_pipeline.simulator import Simulator

pytestmark = [pytest.mark.timing, pytest.mark.slow(90)]

KEYS = ("2024-11-20", "2024-11-22")
"""Three sessions (Wednesday to Friday) of every instrument, as one single-run backfill."""

PER_REQUEST_FAULTS = ("5xx", "429", "slow", "drop", "truncate")

RETRY_SLACK = 2
"""Retries allowed beyond the injected faults: an unfaulted answer that took longer than the
short test timeout on a loaded machine."""

Stats = dict[str, Any]


def endpoint_status(stats: Stats, endpoint: str, status: str) -> int:
    return int(stats["endpoints"].get(endpoint, {}).get("statuses", {}).get(status, 0))


def recovered_the_session(stats: Stats, sim: Simulator) -> None:
    """The dropped brokerage session was noticed (401) and re-established by the client."""
    assert stats["session"]["drops"] >= 2
    assert stats["totals"]["401"] >= 2
    assert client_recoveries(sim.base_url) >= 2
    assert stats["endpoints"]["POST /iserver/auth/ssodh/init"]["requests"] >= 2


def reprimed_the_accounts(stats: Stats, sim: Simulator) -> None:
    """The gateway asked for /iserver/accounts again (a 500 to a request that needs the
    priming: the second snapshot call when the requests come in their usual order, another
    when a loaded machine reorders them) and the client answered it."""
    answered_500 = sum(endpoint_status(stats, name, "500") for name in stats["endpoints"])
    assert answered_500 >= 1, stats["endpoints"]
    assert stats["endpoints"]["GET /iserver/accounts"]["requests"] >= 3


@dataclass(frozen=True)
class FaultCase:
    """One line of the matrix: ``spec`` is set afresh before each of the two runs."""

    fault: str
    spec: str
    fired: dict[str, int]  # injected-fault counters that must reach at least these counts
    fails_with: str = ""  # every failed run's error matches; then the fault is cleared
    logout_mid_run: bool = False
    max_attempts: int = 5
    also: Callable[[Stats, Simulator], None] | None = field(default=None, compare=False)


CASES = [
    # Each 429 pauses every request for its Retry-After (1 s): seed 13 answers two of the
    # first 18 requests of each run 429, and no others.
    FaultCase("429 bursts", "429=0.15,seed=13", {"429": 4}),
    # Seed 1 at a rate of 0.2 fails 3 of the first 15 requests of each run (and more later).
    FaultCase("5xx", "5xx=0.2,seed=1", {"5xx": 4}),
    FaultCase(
        f"slower than the timeout ({CLIENT_TIMEOUT_S:g} s)",
        "slow=0.2,slow_s=2,seed=1",
        {"slow": 4},
    ),
    FaultCase("dropped connections", "drop=0.2,seed=1", {"drop": 4}),
    FaultCase("truncated JSON", "truncate=0.2,seed=1", {"truncate": 4}),
    FaultCase(
        "brokerage session drops mid-run",
        "session_drop_at=6",
        {"session_drop": 2},
        also=recovered_the_session,
    ),
    # In the snapshot run the portfolio step goes first (10 requests: a positions listing's
    # end is confirmed with one more page); the quotes step then checks the session, searches
    # the 3 contracts, primes /iserver/accounts and asks for snapshots: the run's 17th request
    # is the second snapshot call, which needs that priming.
    FaultCase(
        "gateway needs /accounts again",
        "accounts_reset_at=17",
        {"accounts_reset": 1},
        also=reprimed_the_accounts,
    ),
    FaultCase(
        "logged out mid-run (browser login needed)",
        "none",
        {},
        fails_with=r"not authenticated .*log in at http://127\.0\.0\.1:\d+ in a browser",
        logout_mid_run=True,
    ),
    FaultCase(
        "gateway down (5xx on every request)",
        "5xx=1",
        {"5xx": 6},
        fails_with=r"auth_status \(POST http://127\.0\.0\.1:\d+/v1/api/iserver/auth/status\): "
        r"HTTP 50[03]",
        max_attempts=3,
    ),
    # Seed 52 spreads the five per-request faults over the first 22 requests of each run, never
    # more than two in a row (so no request can run out of attempts).
    FaultCase(
        "all at once",
        "5xx=0.06,429=0.06,slow=0.06,slow_s=2,drop=0.06,truncate=0.06,"
        "session_drop_at=9,accounts_reset_at=16,seed=52",
        {**{kind: 2 for kind in PER_REQUEST_FAULTS}, "session_drop": 2, "accounts_reset": 1},
    ),
]


class LogoutAfterFirstRange(NullProgress):
    """A progress sink that logs the user out of the gateway as soon as the first history range
    has arrived: the session ends in the middle of the backfill, and only a browser login
    (`Simulator.login`) brings it back."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.done = False

    def advance(self, *, ranges: int, requests: int, bars: int) -> None:
        if not self.done:
            self.done = True
            self.sim.logout()


@pytest.fixture(scope="module", autouse=True)
def fault_report() -> Iterator[None]:
    """Write the table of the cases that ran to reports/fault_matrix.md at the end."""
    yield
    if MATRIX:
        write_report(list(MATRIX.values()), cases=len(CASES), generated=datetime.now(UTC))


def describe_error(error: str) -> str:
    """``NotAuthenticatedError: the gateway at ...`` for the table: the error's class and the
    start of its message, ports masked so that the table is the same on every run."""
    found = re.search(r"(\w+Error): (.+)", error)
    text = f"{found[1]}: {found[2]}" if found else error
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)
    return text if len(text) <= 200 else text[:197] + "..."


def both_runs(p: Pipeline, spec: str) -> tuple[RunSummary, RunSummary]:
    """The backfill and the snapshot run, each with the fault draws restarted."""
    p.sim.set_faults(spec)
    bars = run_bars(p, KEYS)
    p.sim.set_faults(spec)
    return bars, run_snapshots(p)


@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
def test_fault_matrix(
    case: FaultCase,
    make_sim: Callable[..., Simulator],
    make_pipeline: Callable[..., Pipeline],
) -> None:
    sim = make_sim()
    forget_clients(sim.base_url)
    ibkr = RecordingIbkrResource(
        base_url=sim.base_url,
        keepalive_interval_s=None,
        timeout_s=CLIENT_TIMEOUT_S,
        max_attempts=case.max_attempts,
    )
    progress = LogoutAfterFirstRange(sim) if case.logout_mid_run else NullProgress()
    p = make_pipeline(sim, bar_sizes=["1min"], resources={"ibkr": ibkr, "progress": progress})

    runs = both_runs(p, case.spec)
    failed = [run for run in runs if not run.success]
    if case.fails_with:
        assert failed and not runs[0].success, "the fault should have failed the backfill"
        for run in failed:
            assert run.errors, run
            for error in run.errors:
                assert re.search(case.fails_with, error), error
        cause = describe_error(failed[0].errors[0])
        sim.set_faults("none")
        sim.login()
        runs = (run_bars(p, KEYS), run_snapshots(p))
        outcome = f"run failed: {cause}; re-run after clearing = truth"
    else:
        assert not failed, [run.errors for run in failed]
        outcome = "completed = truth"
    for run in runs:
        assert run.success and not run.failed_checks, (run.errors, run.failed_checks)

    tally = assert_warehouse_equals_truth(p, KEYS)
    stats = sim.stats()
    faults = stats["totals"]["faults"]
    for kind, least in case.fired.items():
        assert faults.get(kind, 0) >= least, (kind, faults)
    assert stats["pacing"]["penalties"] == 0, stats["pacing"]
    assert stats["totals"]["internal_errors"] == 0
    retries = client_retries(sim.base_url)
    injected = sum(faults.get(kind, 0) for kind in PER_REQUEST_FAULTS)
    if not case.fails_with:
        assert injected <= retries <= injected + RETRY_SLACK, (retries, faults)
    if case.also is not None:
        case.also(stats, sim)
    MATRIX[case.fault] = MatrixRow(
        fault=case.fault,
        spec=case.spec,
        fired=", ".join(f"{kind} x{count}" for kind, count in sorted(faults.items())) or "-",
        requests=int(stats["totals"]["requests"]),
        retries=retries,
        rate_limited=int(stats["totals"]["429"]),
        penalties=int(stats["pacing"]["penalties"]),
        rows_expected=tally.expected,
        rows_stored=tally.stored,
        duplicates=tally.duplicates,
        outcome=outcome,
    )
