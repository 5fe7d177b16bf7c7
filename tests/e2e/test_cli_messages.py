"""The ``ib-pipeline`` command as a user meets it: a fast help, one-line errors that say what
to do, tracebacks only with ``--verbose``, and no progress-bar debris when the output is piped.

Each command runs as a real process (``python -m ib_pipeline.cli``), output captured (so not a
terminal), against a simulator over real HTTP where a gateway is needed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from ib_pipeline import cli

if TYPE_CHECKING:
    from ib_pipeline.simulator import Simulator

pytestmark = pytest.mark.slow(40)

UNIVERSE = """\
history_start: 2024-11-01
bar_sizes: [1min]
instruments:
  - {symbol: AAPL, sec_type: STK, exchange: NASDAQ}
  - {symbol: ZZZZQ, sec_type: STK, exchange: NASDAQ}
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IB_PIPELINE_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ib_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=180,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_help_lists_every_command_without_importing_the_heavy_layers() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from ib_pipeline.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = sorted(m for m in ('dagster', 'pandas', 'duckdb', 'pyarrow', 'pandera', 'httpx')"
        " if m in sys.modules)\n"
        "print(result.output)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "HEAVY []" in done.stdout
    for name in cli.COMMANDS:
        assert name in done.stdout


def test_an_unexpected_error_is_one_line_and_the_traceback_needs_verbose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "explode", (f"{__name__}:explode", "Fail on purpose."))
    result = CliRunner().invoke(cli.main, ["explode"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        "Error: unexpected RuntimeError: the disk is on fire (run with --verbose for the traceback)"
    ]
    verbose = CliRunner().invoke(cli.main, ["--verbose", "explode"])
    assert verbose.exit_code == 1
    assert isinstance(verbose.exception, RuntimeError)


def _explode() -> None:
    raise RuntimeError("the disk is on fire")


explode = click.Command("explode", callback=_explode)


def test_backfill_without_a_gateway_says_what_to_do_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/api"
    done = run_cli(
        "backfill", "--asset", "contracts", "--warehouse", str(tmp_path / "wh"), "--ephemeral",
        env={"IB_PIPELINE_BASE_URL": url},
    )  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert url in lines[0] and "ib-pipeline sim" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout

    verbose = run_cli(
        "--verbose", "backfill", "--asset", "contracts", "--warehouse", str(tmp_path / "wh"),
        "--ephemeral", env={"IB_PIPELINE_BASE_URL": url},
    )  # fmt: skip
    assert verbose.returncode != 0
    assert "Traceback" in verbose.stderr


def test_an_unknown_ticker_is_one_line_naming_it(sim: Simulator, tmp_path: Path) -> None:
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE)
    done = run_cli(
        "backfill", "--asset", "contracts", "--universe", str(universe),
        "--warehouse", str(tmp_path / "wh"), "--ephemeral",
        env={"IB_PIPELINE_BASE_URL": sim.base_url},
    )  # fmt: skip
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "ZZZZQ" in output
    assert "Traceback" not in output
    assert len([line for line in done.stderr.splitlines() if line.strip()]) <= 2, output


def test_a_bad_universe_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE.replace("bar_sizes", "bar_sizez"))
    done = run_cli(
        "backfill", "--asset", "contracts", "--universe", str(universe), "--ephemeral",
        "--warehouse", str(tmp_path / "wh"),
    )  # fmt: skip
    assert done.returncode == 2
    assert "bar_sizez" in done.stderr
    assert "Traceback" not in done.stderr


def test_piped_backfill_output_has_no_progress_bar_debris(
    make_sim: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_sim(now=None)
    universe = tmp_path / "universe.yaml"
    universe.write_text(
        UNIVERSE.replace("  - {symbol: ZZZZQ, sec_type: STK, exchange: NASDAQ}\n", "")
    )
    done = run_cli(
        "backfill", "--asset", "bars_1min", "--start", "2025-11-24", "--end", "2025-11-25",
        "--universe", str(universe), "--warehouse", str(tmp_path / "wh"), "--ephemeral",
        env={"IB_PIPELINE_BASE_URL": sim.base_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert "\r" not in output and "\x1b[" not in output
    assert "rows written" in output
