"""Private scratch folders that a killed process does not leave behind for long.

Why: a process stopped with SIGKILL (a loader killed mid-load) cannot remove its temporary
folders, and nothing else knows they are garbage. Each folder made here is ``flock``-ed by its
owner for as long as it exists; making a new one under the same base first removes every
folder of that prefix whose lock can be taken (its owner is gone), never one a live process
holds. Used for the store's spill files (`storage.spill`) and the catalog builder's copies
(`warehouse`).

A folder is created under a name no sweep matches (``.new-<hex>``), locked, then renamed to
``<prefix><hex>``: a folder with the prefix is always locked while its owner lives.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def make_locked_folder(base: Path, prefix: str, *, sweep: bool = True) -> tuple[Path, int]:
    """A new folder ``<base>/<prefix><hex>`` and the descriptor holding its lock (close it, via
    `release`, once the folder is removed). ``sweep``: remove the orphans of ``prefix`` first."""
    base.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_orphans(base, prefix)
    fresh = base / f".new-{uuid.uuid4().hex}"
    fresh.mkdir()
    fd = os.open(fresh, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = base / f"{prefix}{uuid.uuid4().hex}"
        os.replace(fresh, folder)
    except BaseException:
        os.close(fd)
        raise
    return folder, fd


def release(folder: Path, fd: int) -> None:
    """Remove ``folder`` (made by `make_locked_folder`), then let go of its lock."""
    try:
        shutil.rmtree(folder)
    finally:
        os.close(fd)


@contextmanager
def scratch_folder(base: Path, prefix: str, *, sweep: bool = True) -> Iterator[Path]:
    """`make_locked_folder` for the ``with`` block, removed at its end however it ends."""
    folder, fd = make_locked_folder(base, prefix, sweep=sweep)
    try:
        yield folder
    finally:
        release(folder, fd)


def remove_orphans(base: Path, prefix: str) -> list[str]:
    """Remove the ``<prefix>*`` folders under ``base`` that no live process holds; returns
    their names. A folder whose lock is taken is left alone."""
    removed = []
    for entry in sorted(base.iterdir()) if base.is_dir() else []:
        if not entry.name.startswith(prefix) or not entry.is_dir():
            continue
        try:
            fd = os.open(entry, os.O_RDONLY)
        except FileNotFoundError:  # its owner removed it meanwhile
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            try:
                shutil.rmtree(entry)
            except FileNotFoundError:  # its owner was removing it as it let go of the lock
                continue
            removed.append(entry.name)
        finally:
            os.close(fd)
    return removed
