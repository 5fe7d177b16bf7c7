"""Shared pieces of the fault-matrix and bad-data tests ("prove it holds", part 1): the
backfill each case materialises, the comparison of the warehouse with the simulator's ground
truth, and the fault table the run writes to ``reports/fault_matrix.md`` and prints in pytest's
terminal summary (tests/e2e/conftest.py).

A plain module imported by name (like ``dagster_support``). It never starts a simulator nor
changes one: the tests do, through the ``sim``/``make_sim`` fixtures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster_support import Pipeline

from assets.resources import IbkrClientResource
from assets.runs import CheckOutcome, RunSummary, run_assets, summarize_run
from ib_pipeline.calendars import Session, calendar_for
from ib_pipeline.ibkr import normalize
from ib_pipeline.ibkr.client import IbkrClient
from ib_pipeline.ibkr.response import ResponseHook
from ib_pipeline.ibkr.tables import HISTORY_BARS
from ib_pipeline.storage.datasets import dataset_spec

if TYPE_CHECKING:
    from ib_pipeline.clock import Clock

CONIDS = {"AAPL": 265598, "SPY": 756733, "EUR.USD": 12087792}
"""The conids of `dagster_support.SMALL_UNIVERSE` in the simulator."""

BARS_ASSET = "bars_1min"
SNAPSHOT_ASSETS = ["quotes", "accounts", "positions", "account_summary"]
"""Unpartitioned, so they run beside the bars backfill, not in it."""

CLIENT_TIMEOUT_S = 1.0
"""The client's read timeout in these tests: a simulated slow answer (2 s) outlasts it, and an
unfaulted one on a loaded machine (two cores, four test processes) stays well inside it."""

REPORT_PATH = Path(__file__).resolve().parents[2] / "reports" / "fault_matrix.md"


# --- the client, observed ----------------------------------------------------------------------

_CLIENTS: dict[str, list[IbkrClient]] = {}


class RecordingIbkrResource(IbkrClientResource):
    """The real ``ibkr`` resource that also remembers every client it builds (by base URL), so
    a test can read their retry counters after a Dagster run."""

    def get_client(
        self, *, on_response: ResponseHook | None = None, clock: Clock | None = None
    ) -> IbkrClient:
        client = super().get_client(on_response=on_response, clock=clock)
        _CLIENTS.setdefault(self.base_url, []).append(client)
        return client


def forget_clients(base_url: str) -> None:
    """Start counting afresh for ``base_url`` (a new simulator may reuse an old one's port)."""
    _CLIENTS.pop(base_url, None)


def client_retries(base_url: str) -> int:
    """Retries of every client built for ``base_url`` so far (all endpoints)."""
    return sum(sum(c.stats.retries.values()) for c in _CLIENTS.get(base_url, []))


def client_recoveries(base_url: str) -> int:
    """Mid-run session re-checks (after a 401) of every client built for ``base_url``."""
    return sum(c.session.recoveries for c in _CLIENTS.get(base_url, []))


# --- the runs ------------------------------------------------------------------------------------


def run_bars(p: Pipeline, keys: tuple[str, str]) -> RunSummary:
    """The single-run backfill of ``keys`` (first, last partition) of one-minute bars."""
    result = run_assets(p.defs, [BARS_ASSET], partition_range=keys, raise_on_error=False)
    return summarize_run(result)


def run_snapshots(p: Pipeline) -> RunSummary:
    """Quotes and the portfolio (accounts, positions, account summary) in one run."""
    return summarize_run(run_assets(p.defs, SNAPSHOT_ASSETS, raise_on_error=False))


def check(summary: RunSummary, asset: str, name: str) -> CheckOutcome:
    """The outcome of check ``name`` on ``asset`` in ``summary`` (AssertionError if absent)."""
    found = [c for c in summary.checks if c.asset == asset and c.check == name]
    assert len(found) == 1, f"check {asset}:{name} not evaluated: {summary.checks}"
    return found[0]


# --- ground truth ---------------------------------------------------------------------------------


def sessions_of(p: Pipeline, symbol: str, keys: tuple[str, str]) -> list[Session]:
    item = next(i for i in p.universe.instruments if i.symbol == symbol)
    first, last = (date.fromisoformat(k) for k in keys)
    return calendar_for(item.trading_hours).sessions(first, last)


def window_ms(p: Pipeline, symbol: str, keys: tuple[str, str]) -> tuple[int, int]:
    """[start, end) in epoch ms of the regular sessions of ``keys`` for ``symbol``."""
    sessions = sessions_of(p, symbol, keys)
    return sessions[0].bounds_ms(False)[0], sessions[-1].bounds_ms(False)[1]


def truth_bars(p: Pipeline, symbol: str, keys: tuple[str, str]) -> pa.Table:
    """Every one-minute bar the simulator serves for ``symbol`` in the sessions of ``keys``."""
    sessions = sessions_of(p, symbol, keys)
    start, end = sessions[0].bounds(False)[0], sessions[-1].bounds(False)[1]
    return p.sim.truth.history_bars(CONIDS[symbol], "1min", start, end).sort_by("ts")


def stored_bars(p: Pipeline, conid: int) -> pa.Table:
    table = p.store().read("bars")
    mine = table.filter(pc.equal(table["conid"], conid))
    return mine.select(HISTORY_BARS.names).cast(HISTORY_BARS).sort_by("ts")


def duplicate_keys(dataset: str, table: pa.Table) -> int:
    """Rows beyond the first of each key of ``dataset`` (0 when every key is unique)."""
    key = list(dataset_spec(dataset).key)
    if table.num_rows == 0:
        return 0
    return int(table.num_rows) - int(table.group_by(key).aggregate([]).num_rows)


@dataclass(frozen=True)
class Tally:
    """Rows the simulator served (expected) against rows the warehouse holds."""

    expected: int
    stored: int
    duplicates: int

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.expected + other.expected,
            self.stored + other.stored,
            self.duplicates + other.duplicates,
        )


def assert_bars_equal_truth(p: Pipeline, keys: tuple[str, str]) -> Tally:
    """Each instrument's stored bars equal the truth, row for row."""
    tally = Tally(0, 0, duplicate_keys("bars", p.store().read("bars")))
    for symbol, conid in CONIDS.items():
        truth, stored = truth_bars(p, symbol, keys), stored_bars(p, conid)
        assert truth.num_rows > 0, symbol
        assert stored.equals(truth), (
            f"{symbol}: {stored.num_rows} bars stored, {truth.num_rows} served"
        )
        tally += Tally(int(truth.num_rows), int(stored.num_rows), 0)
    return tally


def assert_portfolio_equals_truth(p: Pipeline) -> Tally:
    """Positions (every column) and account summaries (every key the gateway served, the
    truth's money amounts) of every account equal the truth."""
    store, truth, sim = p.store(), p.sim.truth, p.sim
    positions, summaries = store.read("positions"), store.read("account_summary")
    tally = Tally(
        0,
        0,
        duplicate_keys("positions", positions) + duplicate_keys("account_summary", summaries),
    )
    for account in truth.accounts:
        expected = truth.positions(account)
        mine = positions.filter(pc.equal(positions["account"], account)).sort_by("conid")
        columns = list(expected[0]) if expected else ["conid"]
        rows = mine.select(columns).to_pylist()
        assert rows == [{k: _plain(v) for k, v in e.items()} for e in expected], account
        served = normalize.account_summary(
            sim.broker.summary_payload(account), account=account, as_of=sim.clock.now()
        )
        held = summaries.filter(pc.equal(summaries["account"], account))
        assert sorted(held["key"].to_pylist()) == sorted(served["key"].to_pylist()), account
        rows_by_key = {row["key"]: row for row in held.to_pylist()}
        for key, amount in truth.summary(account).items():
            row = rows_by_key[key]  # money has an amount; a ratio (cushion) comes as text
            got = float(row["value"]) if row["value"] is not None else row["amount"]
            assert got == amount, (account, key, row)
            if f"{key}-s" in rows_by_key:  # the securities segment is the whole account
                assert rows_by_key[f"{key}-s"]["amount"] == amount, (account, key)
        tally += Tally(len(expected) + served.num_rows, mine.num_rows + held.num_rows, 0)
    return tally


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


QUOTE_COLUMNS = (
    "last",
    "bid",
    "ask",
    "last_size",
    "bid_size",
    "ask_size",
    "volume",
    "open",
    "high",
    "low",
    "close",
    "prior_close",
    "halted",
)


def assert_quotes_equal_truth(p: Pipeline) -> Tally:
    """One snapshot row per instrument, equal to the simulator's quote."""
    quotes = p.store().read("quotes")
    assert sorted(quotes["conid"].to_pylist()) == sorted(CONIDS.values())
    for row in quotes.to_pylist():
        expected = p.sim.truth.quote(row["conid"])
        assert row["as_of"] == p.sim.clock.now()
        for column in QUOTE_COLUMNS:
            assert row[column] == expected[column], (row["conid"], column)
    return Tally(len(CONIDS), int(quotes.num_rows), duplicate_keys("quotes", quotes))


def assert_warehouse_equals_truth(p: Pipeline, keys: tuple[str, str]) -> Tally:
    """Bars, quotes, positions and summaries equal the truth; nothing doubled, nothing
    quarantined (a fault must never turn into a bad row)."""
    tally = assert_bars_equal_truth(p, keys) + assert_quotes_equal_truth(p)
    tally += assert_portfolio_equals_truth(p)
    assert tally.duplicates == 0
    assert tally.stored == tally.expected
    assert p.store().quarantine().num_rows == 0
    return tally


# --- the fault table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MatrixRow:
    """One line of the fault table."""

    fault: str
    spec: str
    fired: str
    requests: int
    retries: int
    rate_limited: int
    penalties: int
    rows_expected: int
    rows_stored: int
    duplicates: int
    outcome: str


MATRIX: dict[str, MatrixRow] = {}
"""The rows the fault tests recorded in this session, by case (rendered at the end)."""

_HEADER = (
    "fault",
    "faults injected",
    "faults fired",
    "requests",
    "retries",
    "429s",
    "penalty boxes",
    "rows expected",
    "rows stored",
    "duplicates",
    "outcome",
)


def render_matrix(rows: Sequence[MatrixRow]) -> str:
    """The fault table as Markdown."""
    lines = [
        "| " + " | ".join(_HEADER) + " |",
        "|" + "---|" * len(_HEADER),
    ]
    for r in rows:
        cells = (
            r.fault,
            f"`{r.spec}`",
            r.fired,
            r.requests,
            r.retries,
            r.rate_limited,
            r.penalties,
            r.rows_expected,
            r.rows_stored,
            r.duplicates,
            r.outcome,
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def write_report(rows: Sequence[MatrixRow], *, cases: int, generated: datetime) -> Path:
    """Write the table of ``rows`` (of ``cases`` in all) to `REPORT_PATH` (the folder is
    git-ignored) and return the path."""
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Fault matrix\n\n"
        "Written by `tests/e2e/test_prove_faults.py`: each fault injected by the simulator "
        "(the `--faults` spec, set afresh before each run) during a three-session, "
        "three-instrument backfill of one-minute bars (one Dagster run) and a run of quotes, "
        "accounts, positions and account summaries; the logout case logs the user out after "
        "the first history range instead. Counts over the whole case, re-runs included: the "
        "simulator's (faults fired, requests, 429 answers, penalty boxes opened) and the "
        "clients' (retries). Rows are bars + quotes + positions + account-summary rows, "
        "expected from the simulator's ground truth and read back from the warehouse.\n\n"
        f"{render_matrix(rows)}\n\n_{len(rows)} of {cases} cases ran; generated "
        f"{generated.isoformat(timespec='seconds')}._\n"
    )
    REPORT_PATH.write_text(text)
    return REPORT_PATH
