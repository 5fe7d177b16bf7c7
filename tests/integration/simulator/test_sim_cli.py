"""``ib-pipeline sim``: documented options, serving from a subprocess, stopping on SIGTERM."""

from __future__ import annotations

import queue
import re
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ib_pipeline.cli import main

OPTIONS = (
    "--host", "--port", "--tls", "--seed", "--latency-ms", "--faults", "--token-env", "--now",
    "--unauthenticated", "--session-timeout", "--penalty-box", "--no-pacing", "--bulk-positions",
    "--login", "--split", "--delayed",
)  # fmt: skip
CLI = str(Path(sys.executable).parent / "ib-pipeline")
URL = re.compile(r"serving (https?://\S+/v1/api)")


def test_help_lists_every_option_and_the_fault_grammar() -> None:
    result = CliRunner().invoke(main, ["sim", "--help"])
    assert result.exit_code == 0
    for option in OPTIONS:
        assert option in result.output, option
    assert "session_drop_at=N" in result.output and "/sim/stats" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "boom=1"], "unknown fault key 'boom'"),
        (["--now", "tomorrow"], "invalid time 'tomorrow'"),
        (["--token-env", "IB_SIM_CLI_TEST_UNSET_VAR"], "IB_SIM_CLI_TEST_UNSET_VAR"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["sim", *args], env={"IB_SIM_CLI_TEST_UNSET_VAR": ""})
    assert result.exit_code == 2
    assert message in result.output


class Server:
    """An ``ib-pipeline sim`` subprocess whose output lines are read on a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [CLI, "sim", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {pattern.pattern!r} in {self.output}") from None
            found = pattern.search(line)
            if found:
                return found


@pytest.fixture
def start_server() -> Iterator[type[Server]]:
    servers: list[Server] = []

    class Tracked(Server):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            servers.append(self)

    yield Tracked
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_the_cli_serves_the_api_and_stops_on_sigterm(start_server: type[Server]) -> None:
    server = start_server("--now", "2024-11-26T18:00:00Z", "--penalty-box", "1")
    base_url = server.wait_for(URL).group(1)
    status = httpx.post(base_url + "/iserver/auth/status", timeout=10)
    assert status.status_code == 200 and status.json()["authenticated"] is True
    history = httpx.get(
        base_url + "/iserver/marketdata/history",
        params={"conid": 265598, "period": "1d", "bar": "1h"},
        timeout=10,
    )
    assert history.status_code == 200 and history.json()["data"]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0
    assert "simulator stopped" in "".join(server.output)


def test_the_cli_serves_https_with_a_printed_ca_file(start_server: type[Server]) -> None:
    server = start_server("--tls", "--unauthenticated")
    base_url = server.wait_for(URL).group(1)
    ca_file = server.wait_for(re.compile(r"CA certificate \(trust this file\): (\S+)")).group(1)
    context = ssl.create_default_context(cafile=ca_file)
    status = httpx.get(base_url + "/iserver/auth/status", verify=context, timeout=10)
    assert status.json()["authenticated"] is False
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=20) == 0
    assert not Path(ca_file).exists()
