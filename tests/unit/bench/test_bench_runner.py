"""The benchmark runner (`bench.run_all`) and the goal table (`bench.goals`).

The real benchmarks never run here: the runner is pointed at a throwaway package of fake
benches in a temporary folder (each a few lines printing known figures, failing, printing no
JSON, or hanging), so every verdict and every row of RESULTS.md is known in advance.
"""

from __future__ import annotations

import json
import platform
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import run_all as runner
from bench.goals import GOALS, Baseline, Goal, Verdict, evaluate, lookup
from bench.run_all import BenchOutputError, BenchRun, Status, last_json_object

BENCH_DIR = Path(runner.__file__).parent
PACKAGE = "fakebench"


def _write_benches(root: Path, benches: dict[str, str]) -> None:
    """A package ``fakebench`` under ``root`` holding one module per bench."""
    package = root / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text('"""Fake benches."""\n')
    for name, source in benches.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))


def _running(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# ---- last-line JSON ------------------------------------------------------------------------


def test_last_json_object_takes_the_last_non_empty_line() -> None:
    stdout = 'progress {"not": "this"}\n{"a": 1}\n{"rows_per_s": 5, "nested": {"x": 2}}\n\n  \n'
    assert last_json_object(stdout) == {"rows_per_s": 5, "nested": {"x": 2}}


def test_last_json_object_names_the_offending_last_line() -> None:
    with pytest.raises(BenchOutputError, match=r"no JSON object on its last line.*'done in 3 s'"):
        last_json_object('{"a": 1}\ndone in 3 s\n')


def test_last_json_object_rejects_empty_output_and_non_objects() -> None:
    with pytest.raises(BenchOutputError, match="printed nothing"):
        last_json_object("\n\n")
    with pytest.raises(BenchOutputError, match="a list, not an object"):
        last_json_object("[1, 2]\n")


# ---- goals ---------------------------------------------------------------------------------


def test_absolute_goals_pass_and_miss_by_their_comparison() -> None:
    at_least = Goal("throughput", "rows_per_s", ">=", 1000, unit="rows/s")
    below = Goal("share", "share", "<", 0.1, percent=True)
    exactly = Goal("429s", "n429", "==", 0)
    figures = {"rows_per_s": 1000, "share": 0.1, "n429": 0}
    assert evaluate(at_least, figures).verdict is Verdict.PASS
    assert evaluate(at_least, {"rows_per_s": 999.9}).verdict is Verdict.MISS
    assert evaluate(below, figures).verdict is Verdict.MISS  # strictly below
    assert evaluate(below, {"share": 0.099}).verdict is Verdict.PASS
    assert evaluate(exactly, figures).verdict is Verdict.PASS
    assert evaluate(exactly, {"n429": 3}).verdict is Verdict.MISS


def test_a_goal_with_a_baseline_judges_the_ratio_from_the_same_output() -> None:
    goal = Goal(
        "views vs native", "q.views_ms", "<=", 4, unit="ms", baseline=Baseline("native", "q.ms")
    )
    passed = evaluate(goal, {"q": {"views_ms": 30.0, "ms": 10.0}})
    assert (passed.verdict, passed.value, passed.baseline_value) == (Verdict.PASS, 30.0, 10.0)
    assert passed.ratio == pytest.approx(3.0)
    missed = evaluate(goal, {"q": {"views_ms": 41.0, "ms": 10.0}})
    assert missed.verdict is Verdict.MISS
    assert missed.ratio == pytest.approx(4.1)


def test_report_only_goals_are_never_judged() -> None:
    goal = Goal("vs ibind", "bars_per_s", baseline=Baseline("ibind", "ibind_bars_per_s"))
    outcome = evaluate(goal, {"bars_per_s": 9000, "ibind_bars_per_s": 3000})
    assert outcome.verdict is Verdict.INFO
    assert outcome.ratio == pytest.approx(3.0)


def test_absent_or_non_numeric_figures_are_named_not_judged() -> None:
    goal = Goal("x", "a.b", ">=", 1, baseline=Baseline("base", "c"))
    absent = evaluate(goal, {"a": {"z": 1}, "c": 1})
    assert absent.verdict is Verdict.NO_FIGURE
    assert "`a.b` is not under `a` (no key `b`)" in absent.reason
    text = evaluate(goal, {"a": {"b": "fast"}, "c": 1})
    assert (text.verdict, text.reason) == (Verdict.NO_FIGURE, "`a.b` is 'fast', not a number")
    no_base = evaluate(goal, {"a": {"b": 2}})
    assert no_base.verdict is Verdict.NO_FIGURE
    assert no_base.reason.startswith("baseline `c` is not in the output")
    zero = evaluate(goal, {"a": {"b": 2}, "c": 0})
    assert (zero.verdict, zero.reason) == (Verdict.NO_FIGURE, "baseline `c` is 0: no ratio")
    assert lookup({"complete": True}, "complete") == 1.0


def test_a_goal_needs_both_a_comparison_and_a_target_or_neither() -> None:
    with pytest.raises(ValueError, match="give both a comparison and a target"):
        Goal("x", "x", ">=")
    with pytest.raises(ValueError, match="unknown comparison '=>'"):
        Goal("x", "x", "=>", 1)  # type: ignore[arg-type]


def _printed_keys(source: str) -> set[str]:
    """The JSON keys a bench's source can print: its quoted names, and the names it builds
    with f-strings like ``f"{name}_native_ms"`` from a quoted ``name``."""
    quoted = set(re.findall(r'"([A-Za-z_]\w*)"', source))
    suffixes = set(re.findall(r'f"\{\w+\}(_\w+)"', source))
    return quoted | {name + suffix for name in quoted for suffix in suffixes}


def test_the_goal_table_names_keys_that_the_existing_benches_print() -> None:
    """Each goal's keys appear in its bench's source, so a renamed figure is caught here rather
    than as NO FIGURE after a long `make bench`. Benches not written yet are reported MISSING by
    the runner instead."""
    checked = 0
    for name, goals in GOALS.items():
        source_file = BENCH_DIR / f"{name}.py"
        if not source_file.is_file():
            continue
        printed = _printed_keys(source_file.read_text())
        for goal in goals:
            keys = [goal.key] + ([goal.baseline.key] if goal.baseline else [])
            for part in (part for key in keys for part in key.split(".")):
                assert part in printed, f"{name}: goal {goal.figure!r} reads `{part}`"
                checked += 1
    assert checked > 0
    required = {"sim_throughput", "history_ingest", "replay_throughput", "query_latency"}
    assert required | {"dagster_backfill", "sim_market"} <= set(GOALS)


def test_printed_keys_include_keys_built_from_names() -> None:
    source = 'QUERIES = {"vwap": 1}\nfigures[f"{name}_native_ms"] = 2\nout = {"rows": 3}\n'
    assert {"vwap", "rows", "vwap_native_ms", "rows_native_ms"} == _printed_keys(source)


# ---- discovery and runs ---------------------------------------------------------------------


def test_discover_lists_every_bench_but_the_runner_and_its_helpers() -> None:
    names = runner.discover(BENCH_DIR)
    assert "sim_market" in names
    assert not {"__init__", "run_all", "goals"} & set(names)
    assert names == sorted(names)


def test_run_all_reports_each_kind_of_failure_and_still_writes_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_benches(
        tmp_path,
        {
            "fast": """
                import json, sys
                print("warming up")
                print("a warning", file=sys.stderr)
                print(json.dumps({"rows_per_s": 1500, "native_ms": 2, "views_ms": 9}))
            """,
            "crash": """
                import sys
                print("about to fail")
                sys.exit("boom: the simulator did not start")
            """,
            "chatty": """
                print('{"rows_per_s": 1}')
                print("finished")
            """,
        },
    )
    goals = {
        "fast": (
            Goal("rows", "rows_per_s", ">=", 1000, unit="rows/s"),
            Goal("views vs native", "views_ms", "<=", 4, unit="ms",
                 baseline=Baseline("native DuckDB table", "native_ms")),
            Goal("peak memory", "peak_mb", unit="MB"),
        ),
        "crash": (Goal("rows", "rows_per_s", ">=", 1),),
        "ghost": (Goal("latency", "ms", "<=", 30, unit="ms"),),
    }  # fmt: skip
    output = tmp_path / "out" / "RESULTS.md"
    code = runner.run_all(
        None,
        timeout_s=60,
        output=output,
        root=tmp_path,
        package=PACKAGE,
        log_dir=tmp_path / "logs",
        goals=goals,
    )
    assert code == 1

    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["benches"] == 4
    assert summary["ok"] == 1
    assert summary["failed"] == ["chatty (failed)", "crash (failed)", "ghost (missing)"]
    assert summary["goals_passed"] == 1
    assert summary["goals_missed"] == ["fast: views vs native"]
    assert summary["figures_missing"] == 1

    page = output.read_text()
    assert "| fast | rows | 1,500 rows/s | — | — | ≥ 1,000 rows/s | **PASS** |" in page
    assert (
        "| fast | views vs native | 9 ms | 2 ms (native DuckDB table) | 4.500× | ratio ≤ 4 "
        "| **MISS** |" in page
    )
    assert "| fast | peak memory | — | — | — | report | **NO FIGURE: `peak_mb` is not in" in page
    assert (
        "| crash | rows | — | — | — | ≥ 1 | **NOT RUN: bench failed: exited with code 1: boom"
        in page
    )
    assert "| ghost | latency | — | — | — | ≤ 30 ms | **NOT RUN: bench missing: no module" in page
    assert re.search(
        r"\| crash \| FAILED: exited with code 1: boom: the simulator did not start", page
    )
    assert "| chatty | FAILED: printed no JSON object on its last line" in page
    assert "last line: 'finished'" in page
    assert "| ghost | MISSING: no module fakebench/ghost.py | — | — |" in page
    assert "No goals listed in `bench/goals.py` for" not in page  # chatty failed: no figures
    assert '"views_ms": 9' in page  # all figures of the benches that ran
    for label in ("CPU", "Cores", "Memory", "OS", "Python", "Packages"):
        assert f"| {label} |" in page
    assert "- Commit: `unknown (git rev-parse HEAD" in page  # tmp_path is no git checkout

    log = (tmp_path / "logs" / "fast.log").read_text()
    assert log.index("warming up") < log.index("----- stderr") < log.index("a warning")
    assert "about to fail" in (tmp_path / "logs" / "crash.log").read_text()
    assert not (tmp_path / "logs" / "ghost.log").exists()


def test_only_runs_the_named_benches_and_exits_zero_when_they_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_benches(
        tmp_path,
        {
            "one": "print('{\"rows_per_s\": 5}')\n",
            "two": "raise SystemExit(2)\n",
        },
    )
    output = tmp_path / "RESULTS.md"
    code = runner.run_all(
        ["one"],
        timeout_s=60,
        output=output,
        root=tmp_path,
        package=PACKAGE,
        log_dir=tmp_path / "logs",
        goals={"one": (Goal("rows", "rows_per_s", ">=", 10),)},
    )
    assert code == 0  # a missed goal does not fail the run
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "[1/1] one: running (timeout 60 s) ..."
    assert json.loads(lines[-1])["goals_missed"] == ["one: rows"]
    page = output.read_text()
    assert "| one | rows | 5 | — | — | ≥ 10 | **MISS** |" in page
    assert "| two |" not in page


def test_a_bench_that_hangs_is_stopped_with_everything_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    _write_benches(
        tmp_path,
        {
            "hang": f"""
                import subprocess, sys, time
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                with open({str(pid_file)!r}, "w") as out:
                    out.write(str(child.pid))
                print("started a server", flush=True)
                time.sleep(120)
            """
        },
    )
    run = runner.run_bench(
        "hang", timeout_s=4, log_dir=tmp_path / "logs", root=tmp_path, package=PACKAGE
    )
    assert run.status is Status.TIMEOUT
    assert run.problem == "timed out after 4 s; stopped it"
    assert run.figures is None
    assert 4 <= run.seconds < 60
    assert pid_file.is_file(), "the fake bench did not start its child within the timeout"
    assert not _running(int(pid_file.read_text()))
    assert "started a server" in (tmp_path / "logs" / "hang.log").read_text()


def test_processes_a_bench_leaves_running_are_stopped_and_reported(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    _write_benches(
        tmp_path,
        {
            "leaky": f"""
                import subprocess, sys
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                with open({str(pid_file)!r}, "w") as out:
                    out.write(str(child.pid))
                print('{{"rows_per_s": 7}}')
            """
        },
    )
    run = runner.run_bench(
        "leaky", timeout_s=60, log_dir=tmp_path / "logs", root=tmp_path, package=PACKAGE
    )
    child = int(pid_file.read_text())
    assert run.status is Status.OK
    assert run.figures == {"rows_per_s": 7}
    assert run.leftovers == (child,)
    assert not _running(child)
    assert "left 1 process(es) running; the runner stopped them" in runner.run_row(run, tmp_path)
    assert (
        f"runner: stopped leftover processes [{child}]" in (tmp_path / "logs/leaky.log").read_text()
    )


# ---- rendering and the command line ---------------------------------------------------------


def test_rows_escape_pipes_and_flatten_newlines() -> None:
    run = BenchRun("b", Status.FAILED, 1.25, problem="exited with code 1: a | b\nc")
    row = runner.run_row(run, Path("/nowhere"))
    assert row == "| b | FAILED: exited with code 1: a \\| b c | 1.2 s | — |"


def test_numbers_read_well_in_the_table() -> None:
    assert [runner.number(v) for v in (1_234_567.0, 200.0, 150.55, 12.345, 0.0123, 0)] == [
        "1,234,567",
        "200",
        "150.6",
        "12.3",
        "0.0123",
        "0",
    ]


def test_render_dates_and_lists_the_machine() -> None:
    page = runner.render(
        [],
        {},
        machine=[("CPU", "Test CPU"), ("Cores", "2 logical")],
        commit="abc123",
        generated_at=datetime(2024, 11, 26, 18, 0, tzinfo=UTC),
        timeout_s=900,
    )
    assert "- Date: 2024-11-26 18:00:00 UTC" in page
    assert "- Commit: `abc123`" in page
    assert "| CPU | Test CPU |" in page


def test_machine_info_and_commit_of_this_checkout() -> None:
    info = dict(runner.machine_info())
    assert info["Python"] == f"{platform.python_implementation()} {platform.python_version()}"
    assert "duckdb " in info["Packages"]
    assert "not installed" not in info["Packages"]
    assert re.match(r"\d+ logical", info["Cores"])
    assert re.match(r"[0-9a-f]{40}", runner.git_commit(runner.ROOT))


def test_the_command_line_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        runner.main(["--timeout", "0"])
    assert exited.value.code == 2
    assert "the timeout must be positive seconds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        runner.main(["--only", "sim-market"])
    assert "'sim-market' is not a bench module name" in capsys.readouterr().err
