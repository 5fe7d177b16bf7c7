"""Per-bench timeouts of the runner (`bench.run_all.BENCH_TIMEOUTS_S`): a bench listed there
gets its own timeout unless ``--timeout`` is given, which then applies to every bench; the
results page names them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import run_all as runner
from bench.run_all import BenchRun, Status


def test_a_bench_with_its_own_timeout_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    given: dict[str, float] = {}

    def fake_run(name: str, *, timeout_s: float, **_: Any) -> BenchRun:
        given[name] = timeout_s
        return BenchRun(name, Status.OK, 1.0, figures={"x": 1})

    monkeypatch.setattr(runner, "run_bench", fake_run)
    output = tmp_path / "RESULTS.md"
    code = runner.run_all(
        ["quick", "long"], timeout_s=60, output=output, goals={}, timeouts={"long": 600.0}
    )
    assert code == 0 and given == {"quick": 60, "long": 600}
    printed = capsys.readouterr().out
    assert "[1/2] quick: running (timeout 60 s) ..." in printed
    assert "[2/2] long: running (timeout 600 s) ..." in printed
    assert "- Timeout per bench: 60 s, long: 600 s" in output.read_text()


def test_the_scale_bench_has_a_longer_timeout_unless_one_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert runner.BENCH_TIMEOUTS_S["scale"] > runner.DEFAULT_TIMEOUT_S
    calls: list[dict[str, Any]] = []

    def fake_run_all(only: Any, **kwargs: Any) -> int:
        calls.append(kwargs)
        return 0

    monkeypatch.setattr(runner, "run_all", fake_run_all)
    assert runner.main([]) == 0
    assert calls[-1]["timeout_s"] == runner.DEFAULT_TIMEOUT_S
    assert calls[-1].get("timeouts", runner.BENCH_TIMEOUTS_S) == runner.BENCH_TIMEOUTS_S
    assert runner.main(["--timeout", "30"]) == 0
    assert calls[-1]["timeout_s"] == 30 and calls[-1]["timeouts"] == {}
