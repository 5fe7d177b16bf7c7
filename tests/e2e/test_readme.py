"""Every code block of the README runs, as a reader would run it.

Why: a README whose examples fail is the first thing a new user meets. Each fenced block marked
``python`` or ``sh`` is run against a real warehouse that the demo loads into a temporary
project folder (the reader's working directory); ``text`` blocks are pictures, not code.

How each line of an ``sh`` block runs:
- ``make TARGET``: ``make -n TARGET`` in the repository (the target exists and its recipe
  parses; actually running ``make test`` here would run this suite inside itself);
- ``.venv/bin/ib-pipeline sim ...``: started on a free port, read until it says it serves,
  then stopped (``--help`` runs to the end);
- ``.venv/bin/ib-pipeline ...`` and ``duckdb ...``: run to the end with the project's venv;
  ``duckdb FILE`` is the DuckDB command line from PyPI reading a query from standard input.
A line the test does not know how to run fails it: teach the test, do not hide the line.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(60)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```([a-z]*)\s*$")


def readme_blocks() -> list[tuple[int, str, str]]:
    """(line number, language, text) of every fenced block of the README."""
    blocks: list[tuple[int, str, str]] = []
    lines = (REPO / "README.md").read_text("utf-8").splitlines()
    inside: tuple[int, str] | None = None
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        fence = FENCE.match(line)
        if fence is None:
            if inside is not None:
                body.append(line)
            continue
        if inside is None:
            inside, body = (number, fence.group(1)), []
        else:
            blocks.append((inside[0], inside[1], "\n".join(body)))
            inside = None
    assert inside is None, f"README.md: the block opened at line {inside[0]} is never closed"
    return blocks


BLOCKS = readme_blocks()


def test_every_block_says_what_it_is() -> None:
    unlabelled = [
        number for number, language, _ in BLOCKS if language not in ("python", "sh", "text")
    ]
    assert unlabelled == [], f"README blocks without python/sh/text at lines {unlabelled}"


@pytest.fixture(scope="module")
def project(demo_root: Path) -> Path:
    """A reader's working directory after ``make demo``: ``./warehouse`` holds the demo."""
    return demo_root.parent


def reader_env(project: Path) -> dict[str, str]:
    """The reader's environment: the warehouse the demo loaded is the default one (as after
    ``make demo`` in a checkout), and the venv's commands come first on the PATH."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IB_PIPELINE_")}
    environ["IB_PIPELINE_WAREHOUSE"] = str(project / "warehouse")
    environ["PATH"] = f"{VENV_BIN}{os.pathsep}{environ.get('PATH', '')}"
    return environ


def run_line(line: str, project: Path) -> None:
    words = shlex.split(line, comments=True)
    if not words:
        return
    if words[0].startswith(".venv/bin/"):
        words[0] = str(VENV_BIN / words[0].removeprefix(".venv/bin/"))
    where = f"README line {line!r}"
    if words[0] == "make":
        done = subprocess.run(
            ["make", "-n", *words[1:]], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{where}: {done.stderr}"
    elif Path(words[0]).name == "ib-pipeline" and words[1:2] == ["sim"] and "--help" not in words:
        serve_briefly([*words, "--port", "0"], project, where)
    elif Path(words[0]).name == "ib-pipeline":
        done = subprocess.run(
            words, cwd=project, env=reader_env(project), capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{where}: {done.stdout}\n{done.stderr}"
    elif words[0] == "duckdb":
        done = subprocess.run(
            [str(VENV_BIN / "duckdb"), *words[1:]], cwd=project, env=reader_env(project),
            input="SELECT count(*) AS bars FROM bars;\n", capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{where}: {done.stderr}"
        counts = [int(n) for n in re.findall(r"\b(\d{4,})\b", done.stdout.replace(",", ""))]
        assert counts and counts[0] > 0, f"{where}: {done.stdout}"
    else:
        pytest.fail(f"{where}: the README test does not know how to run {words[0]!r}")


def serve_briefly(words: list[str], project: Path, where: str) -> None:
    process = subprocess.Popen(
        words, cwd=project, env=reader_env(project), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "serving" in first, f"{where}: {first}"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("number", "language", "text"),
    [block for block in BLOCKS if block[1] in ("python", "sh")],
    ids=[f"line-{b[0]}-{b[1]}" for b in BLOCKS if b[1] in ("python", "sh")],
)
def test_readme_block_runs(number: int, language: str, text: str, project: Path) -> None:
    if language == "sh":
        for line in text.splitlines():
            run_line(line, project)
        return
    script = project / f"readme_block_{number}.py"
    script.write_text(text, "utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=project, env=reader_env(project), capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"README block at line {number}:\n{done.stdout}\n{done.stderr}"
