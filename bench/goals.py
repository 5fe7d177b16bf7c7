"""The goals of the benchmarks, and how a bench's JSON figures are judged against them.

Why this module exists: the issue states its performance goals as figures of particular
benchmarks, several of them as ratios against a baseline measured in the same run (the pacing
ceiling, ibind, a native DuckDB table). Keeping them in one table, apart from the runner, makes
a goal easy to read, move or add without touching how benches are run or reported.

A goal names a key of the JSON object a bench prints on its last line (a dotted path reaches
into nested objects, e.g. ``published_limits.bars_per_s``). With a `Baseline`, the figure
judged is the ratio ``key / baseline.key``, both taken from that same JSON object. A goal
without a comparison is reported as it is (INFO), never judged.

What this module must never do: run benchmarks, read files, or decide the runner's exit code;
it only maps figures to verdicts. A figure that is absent or not a number gives the verdict
NO_FIGURE with the reason; it is never treated as a pass or a miss.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Comparison = Literal[">=", "<=", ">", "<", "=="]
"""How the measured figure (or ratio) must compare with the goal's target."""

COMPARISONS: dict[str, str] = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "="}
"""Every allowed comparison, with the sign the results table prints for it."""


class Verdict(enum.Enum):
    """What became of one goal in one run."""

    PASS = "PASS"
    """The figure met its goal."""
    MISS = "MISS"
    """The figure was measured and missed its goal (reported, does not fail the run)."""
    INFO = "INFO"
    """A figure reported for information: it has no goal to meet."""
    NO_FIGURE = "NO FIGURE"
    """The bench ran but its output lacks the figure (or its baseline), or holds a non-number."""
    NOT_RUN = "NOT RUN"
    """The bench did not run to completion (missing, failed or timed out)."""


@dataclass(frozen=True)
class Baseline:
    """What a figure is divided by: another figure of the same bench, measured in the same run,
    so that both saw the same machine and load."""

    name: str
    """The baseline in words, e.g. "pacing ceiling", "ibind", "native DuckDB table"."""
    key: str
    """Dotted path of the baseline figure in the bench's JSON object."""


@dataclass(frozen=True)
class Goal:
    """One headline figure of one bench, and the goal it must meet (if any)."""

    figure: str
    """What is measured, in words, as the results table shows it."""
    key: str
    """Dotted path of the measured figure in the bench's JSON object."""
    comparison: Comparison | None = None
    """How the figure (or its ratio to the baseline) must compare with `target`; None to report
    the figure without judging it."""
    target: float | None = None
    """The goal: a value for the figure, or for the ratio when there is a `baseline`."""
    unit: str = ""
    """Unit of the measured figure (and of its baseline), e.g. "bars/s"."""
    baseline: Baseline | None = None
    """When set, the goal is about ``key / baseline.key`` rather than about ``key``."""
    percent: bool = False
    """Show the figure (a share between 0 and 1) and its target as percentages."""

    def __post_init__(self) -> None:
        if (self.comparison is None) != (self.target is None):
            raise ValueError(
                f"goal {self.figure!r}: give both a comparison and a target, or neither "
                f"(got comparison={self.comparison!r}, target={self.target!r})"
            )
        if self.comparison is not None and self.comparison not in COMPARISONS:
            raise ValueError(
                f"goal {self.figure!r}: unknown comparison {self.comparison!r}; "
                f"use one of {', '.join(COMPARISONS)}"
            )
        if not self.key:
            raise ValueError(f"goal {self.figure!r}: the JSON key is empty")


@dataclass(frozen=True)
class Outcome:
    """A goal judged against one bench's figures."""

    goal: Goal
    verdict: Verdict
    value: float | None = None
    """The measured figure, when the output held it."""
    baseline_value: float | None = None
    """The baseline figure, when the goal has a baseline and the output held it."""
    ratio: float | None = None
    """``value / baseline_value``, when both are known and the baseline is not zero."""
    reason: str = ""
    """Why there is no verdict on the figure (NO_FIGURE, NOT_RUN), in words."""


class FigureError(ValueError):
    """A figure is absent from a bench's JSON object, or is not a number."""


def lookup(figures: Mapping[str, object], path: str) -> float:
    """The number at dotted ``path`` in ``figures``; booleans count as 1 and 0.

    Raises `FigureError` naming the missing key or the non-number found there.
    """
    node: object = figures
    walked: list[str] = []
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            where = f"under `{'.'.join(walked)}`" if walked else "in the output"
            raise FigureError(f"`{path}` is not {where} (no key `{part}`)")
        node = node[part]
        walked.append(part)
    if isinstance(node, bool):
        return float(node)
    if not isinstance(node, int | float) or math.isnan(node):
        raise FigureError(f"`{path}` is {node!r}, not a number")
    return float(node)


def _meets(measured: float, comparison: Comparison, target: float) -> bool:
    if comparison == ">=":
        return measured >= target
    if comparison == "<=":
        return measured <= target
    if comparison == ">":
        return measured > target
    if comparison == "<":
        return measured < target
    return measured == target


def evaluate(goal: Goal, figures: Mapping[str, object]) -> Outcome:
    """Judge ``goal`` against the JSON object a bench printed."""
    try:
        value = lookup(figures, goal.key)
    except FigureError as error:
        return Outcome(goal, Verdict.NO_FIGURE, reason=str(error))
    ratio: float | None = None
    baseline_value: float | None = None
    if goal.baseline is not None:
        try:
            baseline_value = lookup(figures, goal.baseline.key)
        except FigureError as error:
            return Outcome(goal, Verdict.NO_FIGURE, value=value, reason=f"baseline {error}")
        if baseline_value == 0:
            return Outcome(
                goal,
                Verdict.NO_FIGURE,
                value=value,
                baseline_value=baseline_value,
                reason=f"baseline `{goal.baseline.key}` is 0: no ratio",
            )
        ratio = value / baseline_value
    if goal.comparison is None or goal.target is None:
        return Outcome(goal, Verdict.INFO, value, baseline_value, ratio)
    judged = value if ratio is None else ratio
    verdict = Verdict.PASS if _meets(judged, goal.comparison, goal.target) else Verdict.MISS
    return Outcome(goal, verdict, value, baseline_value, ratio)


def not_run(goals: Sequence[Goal], reason: str) -> list[Outcome]:
    """The outcomes of the goals of a bench that did not run to completion."""
    return [Outcome(goal, Verdict.NOT_RUN, reason=reason) for goal in goals]


_CEILING = Baseline("pacing ceiling", "ceiling_bars_per_s")
_NATIVE = "native DuckDB table"
_NATIVE_FILE = "native DuckDB table (file)"

GOALS: Mapping[str, Sequence[Goal]] = {
    "sim_market": (
        Goal("1000-bar history responses built + encoded, cold", "cold_responses_per_s",
             unit="responses/s"),
        Goal("same, warm (sessions cached)", "warm_responses_per_s", unit="responses/s"),
    ),
    "sim_throughput": (
        Goal("history responses/s over HTTP, 1000 bars, pacing off", "history_responses_per_s",
             ">=", 200, unit="responses/s"),
        Goal("errors", "errors", "==", 0),
    ),
    "history_ingest": (
        Goal("1-min bars ingested vs the pacing ceiling (client defaults)", "bars_per_s",
             ">=", 0.95, unit="bars/s", baseline=_CEILING),
        Goal("same, at exactly the published limits", "published_limits.bars_per_s",
             ">=", 0.95, unit="bars/s", baseline=_CEILING),
        Goal("HTTP 429 answers from the gateway", "server_429", "==", 0),
        Goal("requests issued vs the minimum", "requests", "<=", 1.05, unit="requests",
             baseline=Baseline("minimum requests", "min_requests")),
        Goal("every expected bar fetched (1 = yes)", "complete", "==", 1),
        Goal("bars/s vs ibind (sequential, as its users page)", "bars_per_s", unit="bars/s",
             baseline=Baseline("ibind", "ibind_bars_per_s")),
    ),
    "replay_throughput": (
        Goal("raw responses -> validated Parquet, end to end", "rows_per_s", ">=", 1_000_000,
             unit="rows/s"),
        Goal("validation share of a live partition load (fetch at the pacing ceiling)",
             "validation_share_of_live_load", "<", 0.10, percent=True),
        Goal("validation share of a replay (no fetch; 2 processes)", "validation_share_of_load",
             percent=True),
        Goal("validation share of a replay (no fetch; 1 process)",
             "validation_share_of_load_sequential", percent=True),
        Goal("warehouse part only (validate + write)", "warehouse_rows_per_s", unit="rows/s"),
    ),
    "query_latency": (
        Goal("daily OHLCV of all symbols, via the views", "daily_ohlcv_all_symbols_ms", "<=", 2,
             unit="ms", baseline=Baseline(_NATIVE, "daily_ohlcv_all_symbols_native_ms")),
        Goal("VWAP of one day, via the views", "vwap_one_day_ms", "<=", 2,
             unit="ms", baseline=Baseline(_NATIVE, "vwap_one_day_native_ms")),
        Goal("one symbol, last 5 days, via the views", "one_symbol_last_5_days_ms", "<=", 2,
             unit="ms", baseline=Baseline(_NATIVE, "one_symbol_last_5_days_native_ms")),
        Goal("VWAP of one day through a view of the one file it reads (DuckDB's floor)",
             "vwap_one_day_one_file_ms", unit="ms",
             baseline=Baseline(_NATIVE, "vwap_one_day_native_ms")),
        Goal("what each other file the views name adds to that query", "listed_file_us",
             unit="µs"),
    ),
    "scale": (
        Goal("49M one-minute bars: replay vs the floor (orjson -> Arrow -> zstd Parquet)",
             "replay_rows_per_s", ">=", 0.6, unit="rows/s",
             baseline=Baseline("floor, same run", "floor_rows_per_s")),
        Goal("replay's peak memory (RSS, process + workers, summed)", "replay_peak_rss_mb",
             "<=", 1024, unit="MB"),
        Goal("queries' peak memory (RSS of the process, views and native)", "query_peak_rss_mb",
             "<=", 1024, unit="MB"),
        Goal("daily OHLCV of all symbols at 49M rows, via the views",
             "daily_ohlcv_all_symbols_ms", "<=", 2, unit="ms",
             baseline=Baseline(_NATIVE_FILE, "daily_ohlcv_all_symbols_native_ms")),
        Goal("VWAP of one day at 49M rows, via the views", "vwap_one_day_ms", "<=", 2,
             unit="ms", baseline=Baseline(_NATIVE_FILE, "vwap_one_day_native_ms")),
        Goal("one symbol, last 5 days at 49M rows, via the views", "one_symbol_last_5_days_ms",
             "<=", 2, unit="ms",
             baseline=Baseline(_NATIVE_FILE, "one_symbol_last_5_days_native_ms")),
        Goal("VWAP of one day at 49M rows through a view of the one file it reads",
             "vwap_one_day_one_file_ms", unit="ms",
             baseline=Baseline(_NATIVE_FILE, "vwap_one_day_native_ms")),
        Goal("what each other file the views name adds to that query (252 files)",
             "listed_file_us", unit="µs"),
        Goal("same, in CPU work (floor CPU s / replay CPU s; blind to machine load)",
             "replay_vs_floor_cpu"),
        Goal("rows replayed", "rows", unit="rows"),
        Goal("replay throughput", "replay_rows_per_s", unit="rows/s"),
        Goal("floor throughput", "floor_rows_per_s", unit="rows/s"),
        Goal("replay's peak memory, proportional (PSS: shared pages once)",
             "replay_peak_pss_mb", unit="MB"),
    ),
    "cli_latency": (
        Goal("ib-pipeline --help, wall time", "help_s", "<=", 0.5, unit="s"),
        Goal("ib-pipeline query 'select 1', wall time", "query_s", "<=", 1.5, unit="s"),
        Goal("--help vs bare interpreter start-up", "help_s", unit="s",
             baseline=Baseline("python -c pass", "python_s")),
    ),
    "dagster_backfill": (
        Goal("Dagster overhead per partition", "overhead_ms_per_partition", "<=", 30,
             unit="ms"),
        Goal("backfill through Dagster vs the same work without it", "dagster_s", unit="s",
             baseline=Baseline("without Dagster", "baseline_s")),
        Goal("peak memory (resident, during the Dagster runs)", "peak_memory_mb", unit="MB"),
    ),
}  # fmt: skip
"""Headline figures by bench module name (``bench/NAME.py``). Edit freely: a key the bench does
not print shows as NO FIGURE in the results with the missing key named."""
