"""A warehouse root: a local folder or any fsspec URL, with atomic whole-object writes.

Why: the store must work unchanged on a laptop disk and on an object store. This module is the
only place that knows the difference. Everything above it speaks in root-relative POSIX paths
("bars/bar_size=1min/session_date=2024-11-26/part.parquet") that `paths` built and validated.

Atomicity
---------
- Local disk: the bytes go to a temporary file in the destination folder, named
  ``.<name>.<random>.tmp`` so no reader's ``*.parquet``/``*.json`` glob can ever match it; the
  file is flushed and fsynced, then ``os.replace`` puts it over the old one, and the folder is
  fsynced so the rename survives a power cut. A crash leaves the old file or the new one plus
  possibly a stale temporary file, which the next write to that folder removes.
- Object stores (fsspec URLs): a single object PUT is atomic (S3, GCS, Azure all expose either
  the whole old object or the whole new one), so the object is written in one call.

What it must never do: accept a path that leaves the root. Every relative path is checked
again here (defence in depth), however it was built.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

TEMP_SUFFIX = ".tmp"
_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def check_relative(rel: str) -> str:
    """Return ``rel`` if it is a clean root-relative POSIX path; raise ValueError otherwise."""
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"storage path must be a non-empty string, got {rel!r}")
    if rel.startswith("/") or "\\" in rel or "\x00" in rel:
        raise ValueError(f"storage path {rel!r} must be relative, POSIX, without NUL bytes")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"storage path {rel!r} has an empty, '.' or '..' segment")
    return rel


def temp_name(name: str) -> str:
    """A temporary file name beside ``name`` that no reader glob matches."""
    return f".{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    return _TEMP_RE.match(name) is not None


class LocalRoot:
    """A warehouse root on the local disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path).expanduser().absolute()

    @property
    def url(self) -> str:
        return str(self._path)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def is_local(self) -> bool:
        return True

    def _resolve(self, rel: str) -> Path:
        target = self._path / check_relative(rel)
        if not target.resolve().is_relative_to(self._path.resolve()):
            raise ValueError(f"storage path {rel!r} escapes the warehouse root {self.url}")
        return target

    def full(self, rel: str) -> str:
        return str(self._resolve(rel))

    def write_atomic(self, rel: str, data: bytes) -> None:
        target = self._resolve(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / temp_name(target.name)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)

    def read_bytes(self, rel: str) -> bytes:
        return self._resolve(rel).read_bytes()

    def exists(self, rel: str) -> bool:
        return self._resolve(rel).is_file()

    def size(self, rel: str) -> int:
        return self._resolve(rel).stat().st_size

    def remove(self, rel: str) -> None:
        self._resolve(rel).unlink(missing_ok=True)

    def files(self, rel_dir: str, suffix: str) -> list[str]:
        base = self._path if rel_dir == "" else self._resolve(rel_dir)
        if not base.is_dir():
            return []
        found: list[str] = []
        for folder, dirs, names in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.endswith(suffix) and not name.startswith("."):
                    found.append(Path(folder, name).relative_to(self._path).as_posix())
        return sorted(found)

    def remove_stale_temp(self, rel_dir: str) -> list[str]:
        """Delete temporary files a crashed writer left in ``rel_dir``. Call with the folder's
        lock held: any temporary file present then is an orphan."""
        folder = self._path if rel_dir == "" else self._resolve(rel_dir)
        removed: list[str] = []
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_file() and is_temp_name(entry.name):
                    entry.unlink(missing_ok=True)
                    removed.append(entry.name)
        return removed

    @contextlib.contextmanager
    def lock(self, rel_dir: str) -> Iterator[None]:
        folder = self._path if rel_dir == "" else self._resolve(rel_dir)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.remove_stale_temp(rel_dir)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def filesystem(self) -> Any:
        return None

    def __repr__(self) -> str:
        return f"LocalRoot({self.url!r})"


class FsspecRoot:
    """A warehouse root on any fsspec filesystem (object stores, ``memory://`` in tests)."""

    def __init__(self, url: str) -> None:
        fs, path = fsspec.core.url_to_fs(url)
        self._fs = fs
        self._base = str(path).rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._protocol = protocol
        self._url = f"{protocol}://{self._base.lstrip('/')}"

    @property
    def url(self) -> str:
        return self._url

    @property
    def is_local(self) -> bool:
        return False

    def _resolve(self, rel: str) -> str:
        check_relative(rel)
        return f"{self._base}/{rel}"

    def full(self, rel: str) -> str:
        return f"{self._url}/{check_relative(rel)}"

    def write_atomic(self, rel: str, data: bytes) -> None:
        path = self._resolve(rel)
        parent = str(PurePosixPath(path).parent)
        self._fs.makedirs(parent, exist_ok=True)
        self._fs.pipe_file(path, data)

    def read_bytes(self, rel: str) -> bytes:
        data = self._fs.cat_file(self._resolve(rel))
        return bytes(data)

    def exists(self, rel: str) -> bool:
        return bool(self._fs.isfile(self._resolve(rel)))

    def size(self, rel: str) -> int:
        return int(self._fs.size(self._resolve(rel)))

    def remove(self, rel: str) -> None:
        path = self._resolve(rel)
        if self._fs.exists(path):
            self._fs.rm_file(path)

    def files(self, rel_dir: str, suffix: str) -> list[str]:
        base = self._base if rel_dir == "" else self._resolve(rel_dir)
        if not self._fs.exists(base):
            return []
        found: list[str] = []
        for path in self._fs.find(base):
            rel = str(path).lstrip("/")[len(self._base.lstrip("/")) :].lstrip("/")
            parts = rel.split("/")
            if rel.endswith(suffix) and not any(part.startswith(".") for part in parts):
                found.append(rel)
        return sorted(found)

    @contextlib.contextmanager
    def lock(self, rel_dir: str) -> Iterator[None]:
        # Object stores have no locks: one writer per partition is the caller's contract
        # (Dagster runs one materialisation per partition at a time).
        yield

    def filesystem(self) -> Any:
        return self._fs

    def __repr__(self) -> str:
        return f"FsspecRoot({self.url!r})"


def open_root(root: str | os.PathLike[str] | Any) -> LocalRoot | FsspecRoot:
    """A root for a folder path, a ``file://`` URL, any other fsspec URL, or a UPath."""
    protocol = getattr(root, "protocol", None)
    if isinstance(protocol, str) and protocol not in ("", "file", "local"):
        return FsspecRoot(str(root))  # a remote UPath: its string form is its URL
    if isinstance(root, os.PathLike):
        return LocalRoot(os.fspath(root))
    if not isinstance(root, str) or not root.strip():
        raise ValueError(f"warehouse root must be a folder path or URL, got {root!r}")
    text = root.strip()
    if text.startswith("file://"):
        return LocalRoot(text[len("file://") :])
    if "://" in text:
        return FsspecRoot(text)
    return LocalRoot(text)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
