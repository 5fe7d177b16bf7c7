"""Run every benchmark under bench/ and write bench/RESULTS.md (``make bench``).

Why this module exists: benchmark figures mean little alone. The runner runs each bench in
its own process, one after the other (so they do not compete for the cores), judges the
headline figures against the goals in `bench.goals` (as ratios against baselines measured in
the same run), and writes one Markdown page that also says on what machine, at what commit and
on what date the figures were taken, so that two runs can be compared honestly.

A bench is any ``bench/NAME.py`` other than ``__init__``, this runner and the goal table. It
runs as ``python -m bench.NAME`` with its default arguments, in a new process group (a bench may
start a simulator process of its own; on a timeout the whole group is stopped), with a
per-bench timeout (`DEFAULT_TIMEOUT_S`, or the bench's own in `BENCH_TIMEOUTS_S`). Its stdout
and stderr go to ``bench/logs/NAME.log``; its figures are the JSON object on the last line of
its stdout. A bench that is missing, exits non-zero, times out or
prints no JSON object gets a row saying so, and the runner goes on with the next one.

The runner prints its progress, and on its own last line one JSON object summarising the run
(so it follows the bench convention itself). It exits 1 if any bench failed to run, after
writing RESULTS.md with what it got; a missed goal is reported (MISS) but does not fail the run.

What this module must never do: time anything in its own process (figures come from the
benches), change a bench's figures, or hide why a bench failed.

Run: ``.venv/bin/python -m bench.run_all [--only NAME[,NAME]] [--timeout S] [--output PATH]``.
Without ``--timeout``, each bench gets `DEFAULT_TIMEOUT_S` or its own `BENCH_TIMEOUTS_S`.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.goals import COMPARISONS, GOALS, Goal, Outcome, Verdict, evaluate, not_run

ROOT = Path(__file__).resolve().parent.parent
"""The project folder: benches run with it as their working directory."""
BENCH_PACKAGE = "bench"
NOT_BENCHES = frozenset({"__init__", "run_all", "goals"})
"""Modules of the bench package that are not benchmarks."""
DEFAULT_TIMEOUT_S = 900.0
"""Per bench: generous, since a bench on a loaded 2-core machine can take minutes."""
BENCH_TIMEOUTS_S: Mapping[str, float] = {"scale": 2700.0}
"""Benches that need longer than `DEFAULT_TIMEOUT_S` with their default options, and their
timeout: ``scale`` lands, replays and queries 49M rows (minutes per phase on 2 cores; 3.5 to 15
minutes in all, measured, the longer on a busy machine). An explicit ``--timeout`` applies to
every bench."""
STOP_GRACE_S = 10.0
"""How long a timed-out bench (and whatever it started) gets to exit after SIGTERM."""
KEY_PACKAGES = ("dagster", "duckdb", "pyarrow", "pandera", "pandas", "httpx", "ibind")
"""Packages whose versions move the figures, listed with the machine."""


class Status(enum.Enum):
    """How a bench's run ended."""

    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"
    MISSING = "missing"


@dataclass(frozen=True)
class BenchRun:
    """One bench's run: how it ended, and its figures when it ended well."""

    name: str
    status: Status
    seconds: float = 0.0
    figures: Mapping[str, Any] | None = None
    problem: str = ""
    """Why the bench has no figures, in words (empty when status is OK)."""
    leftovers: tuple[int, ...] = ()
    """Pids of processes the bench started and left running when it exited; the runner
    stopped them."""
    log: Path | None = None


class BenchOutputError(ValueError):
    """A bench's stdout does not end with one JSON object."""


def last_json_object(stdout: str) -> dict[str, Any]:
    """The JSON object on the last non-empty line of ``stdout`` (the bench convention).

    Raises `BenchOutputError` saying what the last line was instead.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise BenchOutputError("printed nothing on stdout, so no JSON object on its last line")
    last = lines[-1].strip()
    try:
        figures = json.loads(last)
    except json.JSONDecodeError as error:
        raise BenchOutputError(
            f"printed no JSON object on its last line ({error.msg}; last line: {_clip(last)!r})"
        ) from error
    if not isinstance(figures, dict):
        raise BenchOutputError(
            f"last line is JSON but a {type(figures).__name__}, not an object: {_clip(last)!r}"
        )
    return figures


def discover(bench_dir: Path) -> list[str]:
    """Names of the bench modules in ``bench_dir``, sorted."""
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"no benchmark folder at {bench_dir}")
    return sorted(
        path.stem
        for path in bench_dir.glob("*.py")
        if path.stem not in NOT_BENCHES and not path.stem.startswith("_")
    )


def run_bench(
    name: str,
    *,
    timeout_s: float,
    log_dir: Path,
    root: Path = ROOT,
    package: str = BENCH_PACKAGE,
) -> BenchRun:
    """Run ``python -m PACKAGE.NAME`` from ``root`` and collect its figures.

    stdout is written to ``log_dir/NAME.log`` as it comes (``tail -f`` works); stderr follows it
    there once the bench has ended, under a marked line, so the last stdout line stays the
    figures.
    """
    if not (root / package / f"{name}.py").is_file():
        return BenchRun(name, Status.MISSING, problem=f"no module {package}/{name}.py")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    command = [sys.executable, "-m", f"{package}.{name}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with (
        log.open("w", encoding="utf-8") as out,
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as err,
    ):
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so that a timeout stops it all
        )
        try:
            code: int | None = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
            _stop_group(process.pid)
            process.wait()
        except KeyboardInterrupt:  # Ctrl-C reaches only the runner's group: stop the bench too
            _stop_group(process.pid)
            raise
        seconds = time.perf_counter() - started
        leftovers = tuple(_stop_group(process.pid))
        err.seek(0)
        stderr = err.read()
    stdout = log.read_text(encoding="utf-8", errors="replace")
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n----- stderr of {' '.join(command)} -----\n{stderr}")
        if leftovers:
            out.write(f"\n----- runner: stopped leftover processes {list(leftovers)} -----\n")
    if code is None:
        problem = f"timed out after {timeout_s:g} s; stopped it"
        return BenchRun(
            name, Status.TIMEOUT, seconds, problem=problem, log=log, leftovers=leftovers
        )
    if code != 0:
        problem = f"exited with code {code}"
        tail = _last_line(stderr) or _last_line(stdout)
        if tail:
            problem += f": {_clip(tail)}"
        return BenchRun(name, Status.FAILED, seconds, problem=problem, log=log, leftovers=leftovers)
    try:
        figures = last_json_object(stdout)
    except BenchOutputError as error:
        return BenchRun(
            name, Status.FAILED, seconds, problem=str(error), log=log, leftovers=leftovers
        )
    return BenchRun(name, Status.OK, seconds, figures=figures, log=log, leftovers=leftovers)


def _live_members(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that are still running (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the process ended while the folder was being listed
        state, _, group = text.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def _stop_group(pgid: int) -> list[int]:
    """Stop every running process of group ``pgid``: SIGTERM, then SIGKILL after a grace.

    Returns the pids that were running, so a bench that leaves a process behind is logged.
    """
    running = _live_members(pgid)
    if not running:
        return []
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _live_members(pgid):
        _signal_group(pgid, signal.SIGKILL)
    return running


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group ended on its own meanwhile
        os.killpg(pgid, signum)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(run: BenchRun, goals: Sequence[Goal]) -> list[Outcome]:
    """The outcomes of a bench's goals in ``run``."""
    if run.figures is None:
        return not_run(goals, f"bench {run.status.value}: {run.problem}")
    figures = run.figures
    return [evaluate(goal, figures) for goal in goals]


# ---- the machine and the commit -------------------------------------------------------------


def machine_info() -> list[tuple[str, str]]:
    """What the figures were measured on, as (label, value) rows."""
    return [
        ("CPU", _cpu_model()),
        ("Cores", _cores()),
        ("Memory", _memory()),
        ("OS", _os_name()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Packages", ", ".join(f"{name} {_version(name)}" for name in KEY_PACKAGES)),
    ]


def _proc_field(path: str, field: str) -> str | None:
    """The value of the first ``field: value`` line of a /proc file, if there is one."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == field:
            return value.strip()
    return None


def _cpu_model() -> str:
    model = _proc_field("/proc/cpuinfo", "model name") or platform.processor()
    return model or "unknown (no model name in /proc/cpuinfo)"


def _cores() -> str:
    logical = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    text = f"{logical} logical"
    return text if usable == logical else f"{text}, {usable} usable by this process"


def _memory() -> str:
    total = _proc_field("/proc/meminfo", "MemTotal")
    if total is None:
        return "unknown (no /proc/meminfo)"
    kib = int(total.split()[0])
    return f"{kib / 1024**2:.1f} GiB"


def _os_name() -> str:
    pretty = ""
    for line in _read_or_empty("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            pretty = value.strip().strip('"')
    kernel = f"{platform.system()} {platform.release()} {platform.machine()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def _read_or_empty(path: str) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit(root: Path) -> str:
    """The commit the benches ran at, flagged when the checkout has uncommitted changes."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return f"unknown (git rev-parse HEAD: {_clip(_last_line(head.stderr))})"
    changes = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    commit = head.stdout.strip()
    if changes.returncode != 0:
        return f"{commit} (git status failed: {_clip(_last_line(changes.stderr))})"
    return f"{commit} (with uncommitted changes)" if changes.stdout.strip() else commit


# ---- rendering ------------------------------------------------------------------------------


def number(value: float) -> str:
    """A figure as the table shows it: thousands separated, three significant digits below 100."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def _with_unit(value: float, goal: Goal) -> str:
    if goal.percent:
        return f"{number(round(100 * value, 2))} %"
    return f"{number(value)} {goal.unit}".strip()


def _ratio(value: float) -> str:
    """Three decimals, so a ratio just under its goal never prints as equal to it."""
    return f"{value:.3f}" if abs(value) < 100 else number(value)


def _goal_text(goal: Goal) -> str:
    if goal.comparison is None or goal.target is None:
        return "report"
    sign = COMPARISONS[goal.comparison]
    if goal.baseline is not None:
        return f"ratio {sign} {number(goal.target)}"
    return f"{sign} {_with_unit(goal.target, goal)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def outcome_row(bench: str, outcome: Outcome) -> str:
    """One line of the headline table."""
    goal = outcome.goal
    measured = "—" if outcome.value is None else _with_unit(outcome.value, goal)
    if goal.baseline is None:
        baseline = "—"
    elif outcome.baseline_value is None:
        baseline = goal.baseline.name
    else:
        baseline = f"{_with_unit(outcome.baseline_value, goal)} ({goal.baseline.name})"
    ratio = "—" if outcome.ratio is None else f"{_ratio(outcome.ratio)}×"
    result = outcome.verdict.value
    if outcome.reason:
        result += f": {outcome.reason}"
    cells = (bench, goal.figure, measured, baseline, ratio, _goal_text(goal), f"**{result}**")
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def run_row(run: BenchRun, root: Path) -> str:
    """One line of the table of runs."""
    status = run.status.value if run.status is Status.OK else run.status.value.upper()
    if run.problem:
        status += f": {run.problem}"
    if run.leftovers:
        status += f" (left {len(run.leftovers)} process(es) running; the runner stopped them)"
    seconds = f"{run.seconds:.1f} s" if run.status is not Status.MISSING else "—"
    log = "—" if run.log is None else f"`{_relative(run.log, root)}`"
    return "| " + " | ".join(_cell(c) for c in (run.name, status, seconds, log)) + " |"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def render(
    runs: Sequence[BenchRun],
    outcomes: Mapping[str, Sequence[Outcome]],
    *,
    machine: Sequence[tuple[str, str]],
    commit: str,
    generated_at: datetime,
    timeout_s: float,
    root: Path = ROOT,
    timeouts: Mapping[str, float] | None = None,
) -> str:
    """The whole RESULTS.md page (``timeouts``: benches run with a timeout of their own)."""
    own = "".join(f", {name}: {seconds:g} s" for name, seconds in sorted((timeouts or {}).items()))
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run_all`); see `bench/README.md` for what",
        "each bench measures. Ratios are against a baseline measured in the same run. A MISS is",
        "a goal not met, not a failed run. Figures vary with the load of the machine.",
        "",
        f"- Date: {generated_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"- Commit: `{commit}`",
        f"- Timeout per bench: {timeout_s:g} s{own}",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {label} | {_cell(value)} |" for label, value in machine),
        "",
        "## Headline figures",
        "",
        "| Bench | Figure | Measured | Baseline | Ratio | Goal | Result |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for run in runs:
        lines.extend(outcome_row(run.name, outcome) for outcome in outcomes.get(run.name, ()))
    ungoaled = [run.name for run in runs if run.figures is not None and not outcomes.get(run.name)]
    if ungoaled:
        lines += [
            "",
            f"No goals listed in `bench/goals.py` for: {', '.join(ungoaled)} "
            "(their figures are under *All figures*).",
        ]
    lines += [
        "",
        "## Runs",
        "",
        "| Bench | Status | Time | Log |",
        "|---|---|---:|---|",
        *(run_row(run, root) for run in runs),
        "",
        "## All figures",
        "",
        "The JSON object each bench printed on its last line.",
    ]
    for run in runs:
        lines += ["", f"### {run.name}", ""]
        if run.figures is None:
            lines.append(f"No figures: {run.status.value}: {run.problem}")
        else:
            lines += ["```json", json.dumps(run.figures, indent=2), "```"]
    return "\n".join(lines) + "\n"


def summary(
    runs: Sequence[BenchRun], outcomes: Mapping[str, Sequence[Outcome]], output: Path
) -> dict[str, Any]:
    """The runner's own figures: the JSON object on its last line."""
    counts = {verdict: 0 for verdict in Verdict}
    missed: list[str] = []
    for name, judged in outcomes.items():
        for outcome in judged:
            counts[outcome.verdict] += 1
            if outcome.verdict is Verdict.MISS:
                missed.append(f"{name}: {outcome.goal.figure}")
    return {
        "benchmark": "run_all",
        "benches": len(runs),
        "ok": sum(run.status is Status.OK for run in runs),
        "failed": [
            f"{run.name} ({run.status.value})" for run in runs if run.status is not Status.OK
        ],
        "goals_passed": counts[Verdict.PASS],
        "goals_missed": missed,
        "figures_missing": counts[Verdict.NO_FIGURE],
        "seconds": round(sum(run.seconds for run in runs), 1),
        "runs": {
            run.name: {"status": run.status.value, "seconds": round(run.seconds, 1)} for run in runs
        },
        "output": _relative(output, ROOT),
    }


# ---- the command ----------------------------------------------------------------------------


def run_all(
    only: Sequence[str] | None,
    *,
    timeout_s: float,
    output: Path,
    root: Path = ROOT,
    package: str = BENCH_PACKAGE,
    log_dir: Path | None = None,
    goals: Mapping[str, Sequence[Goal]] = GOALS,
    timeouts: Mapping[str, float] = BENCH_TIMEOUTS_S,
) -> int:
    """Run the benches (all of them, or ``only`` these), write ``output``, print the summary.
    Each bench may take ``timeout_s``, or its own timeout in ``timeouts``.

    Returns the exit code: 0 when every bench ran, 1 when one was missing, failed or timed out.
    """
    names = list(only) if only else sorted(set(discover(root / package)) | set(goals))
    logs = log_dir if log_dir is not None else root / package / "logs"
    runs: list[BenchRun] = []
    outcomes: dict[str, list[Outcome]] = {}
    for index, name in enumerate(names, start=1):
        limit = timeouts.get(name, timeout_s)
        print(f"[{index}/{len(names)}] {name}: running (timeout {limit:g} s) ...", flush=True)
        run = run_bench(name, timeout_s=limit, log_dir=logs, root=root, package=package)
        runs.append(run)
        outcomes[name] = judge(run, goals.get(name, ()))
        ended = "ok" if run.status is Status.OK else f"{run.status.value.upper()}: {run.problem}"
        if run.leftovers:
            ended += f" (stopped processes it left running: {list(run.leftovers)})"
        if run.log is not None:
            ended += f" in {run.seconds:.1f} s (log {_relative(run.log, root)})"
        print(f"[{index}/{len(names)}] {name}: {ended}", flush=True)
        for outcome in outcomes[name]:
            print(f"    {outcome.verdict.value:9} {outcome.goal.figure}", flush=True)
    page = render(
        runs,
        outcomes,
        machine=machine_info(),
        commit=git_commit(root),
        generated_at=datetime.now(UTC),
        timeout_s=timeout_s,
        root=root,
        timeouts={name: timeouts[name] for name in names if name in timeouts},
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    print(f"wrote {output}", flush=True)
    print(json.dumps(summary(runs, outcomes, output)), flush=True)
    return 0 if all(run.status is Status.OK for run in runs) else 1


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no bench name in {value!r}")
    for name in names:
        if not name.isidentifier():
            raise argparse.ArgumentTypeError(f"{name!r} is not a bench module name")
    return names


def _positive(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive seconds, not {value!r}")
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run_all",
        description="Run the benchmarks under bench/ and write bench/RESULTS.md.",
    )
    parser.add_argument(
        "--only",
        type=_names,
        action="extend",
        metavar="NAME[,NAME]",
        help="run only these benches (bench/NAME.py); repeatable",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        metavar="S",
        help=f"seconds each bench may take before it is stopped (default {DEFAULT_TIMEOUT_S:g}, "
        + ", ".join(f"{name}: {limit:g}" for name, limit in sorted(BENCH_TIMEOUTS_S.items()))
        + "); given, it applies to every bench",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / BENCH_PACKAGE / "RESULTS.md",
        metavar="PATH",
        help="where to write the results page (default bench/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    if args.timeout is None:
        return run_all(args.only, timeout_s=DEFAULT_TIMEOUT_S, output=args.output)
    return run_all(args.only, timeout_s=args.timeout, output=args.output, timeouts={})


if __name__ == "__main__":
    sys.exit(main())
