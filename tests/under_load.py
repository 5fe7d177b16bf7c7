"""Run pytest while CPU burners keep every core busy: the suite must hold on a loaded machine.

Why: CI machines and laptops run other work; a test that passes only on an idle machine is a
test that fails at random. ``make test-under-load`` (run by ``.ci/run`` after ``make test``)
runs the tests marked ``timing`` (pacing, timeouts, kills: the ones whose outcome depends on
real time passing) with one busy-looping process per core beside them.

Usage: ``python tests/under_load.py [pytest arguments]``. The burners stop when pytest ends,
and by themselves after `MAX_SECONDS` whatever happens.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time

MAX_SECONDS = 1500.0
"""The burners give up after this long even if nobody stops them."""


def burn(deadline: float) -> None:
    """Keep one core busy until ``deadline`` (monotonic seconds)."""
    while time.monotonic() < deadline:
        pass


def main(argv: list[str]) -> int:
    cores = os.cpu_count() or 2
    deadline = time.monotonic() + MAX_SECONDS
    burners = [
        multiprocessing.Process(target=burn, args=(deadline,), daemon=True) for _ in range(cores)
    ]
    for burner in burners:
        burner.start()
    print(f"under load: {cores} CPU burner(s) running beside pytest {' '.join(argv)}", flush=True)
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *argv])
    finally:
        for burner in burners:
            burner.terminate()
        for burner in burners:
            burner.join()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
