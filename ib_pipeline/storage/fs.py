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
- Object stores (``s3://``, ``gs://``, ``az://``... and ``memory://`` in tests) have no rename,
  and need none: one object PUT is atomic (S3 and the S3-compatible stores, GCS and Azure show
  either the whole old object or the whole new one; a large object goes up as a multipart
  upload, which becomes visible only when it completes). So every file is written in one call,
  straight to its final name: no temporary objects exist, so none can be left behind by a
  crash (an unfinished multipart upload is invisible, and bucket lifecycle rules expire it).
  A partition is two objects, written data first and manifest last (`storage.store`): a reader
  sees the old partition, or the new data with the old manifest for a moment (``manifest
  --verify`` calls that "stale", and the next write of the partition repairs it), never a
  half-written file. A loader killed mid-way leaves every partition it finished and the old
  version of the one it was writing.

Locks
-----
On a local root `LocalRoot.lock` is an ``flock`` on the folder, across processes. Object stores
offer no lock that survives a crashed holder simply, so `FsspecRoot.lock` is a no-op: one writer
per partition at a time is the caller's contract, which Dagster gives (one materialisation of a
partition at a time). Two writers of the same partition at once would each write a whole
partition, and the last PUT wins (never a mix); two writers finishing together may leave the
catalog file without the other's new partition until the next write (`warehouse`).

Freshness across processes
--------------------------
Several processes write one warehouse. fsspec keeps directory listings, and file systems are
shared per process, so a listing taken once could hide objects another process wrote since.
`FsspecRoot` opens its file system with ``use_listings_cache=False``: `FsspecRoot.files` and
`FsspecRoot.exists` ask the store every time.

Credentials
-----------
Object-store credentials come only from the client library's own configuration (for S3: the
standard ``AWS_*`` variables, ``AWS_ENDPOINT_URL`` for S3-compatible servers, or a profile),
never from the URL: a URL with a password in it is refused, since the root URL is written
into the catalog's views, manifests, logs and error messages.

What it must never do: accept a path that leaves the root. Every relative path is checked
again here (defence in depth), however it was built.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec

OBJECT_STORE_PROTOCOLS = frozenset(
    {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"}
)
"""Protocols without folders: nothing to create before a write."""

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
        self._str = str(self._path)
        self._checked_folders: set[str] = set()

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
        """``rel`` under the root; ValueError if a symlink would take it outside.

        The real path of ``rel``'s folder is checked once per folder and root object (a replay
        reads a hundred thousand files from a few hundred folders: resolving every file's
        path, a ``stat`` per path segment, was a tenth of its reading time); the file itself
        is resolved only when it is a symlink."""
        target = self._path / check_relative(rel)
        self._check_folder(rel)
        if target.is_symlink() and not target.resolve().is_relative_to(self._path.resolve()):
            raise ValueError(f"storage path {rel!r} escapes the warehouse root {self.url}")
        return target

    def _check_folder(self, rel: str) -> None:
        folder = rel.rpartition("/")[0]
        if folder in self._checked_folders:
            return
        path = self._path / folder
        if not path.resolve().is_relative_to(self._path.resolve()):
            raise ValueError(f"storage path {rel!r} escapes the warehouse root {self.url}")
        if path.is_dir():  # a folder still to be made is checked again next time
            self._checked_folders.add(folder)

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
        """The file's bytes. In a folder already checked, the file is opened without following
        a symlink (``O_NOFOLLOW``): no ``stat`` per file, and a symlinked file fails to open
        that way and takes `_resolve`'s full check instead."""
        if rel.rpartition("/")[0] not in self._checked_folders:
            return self._resolve(rel).read_bytes()
        path = os.path.join(self._str, check_relative(rel))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            if error.errno != errno.ELOOP:
                raise
            return self._resolve(rel).read_bytes()
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

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
        cut = len(self._str.rstrip("/")) + 1  # the walk gives folders as "<root>/<rel>"
        for folder, dirs, names in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            prefix = f"{folder[cut:]}/" if len(folder) > len(self._str) else ""
            # plain strings: a raw zone lists a hundred thousand files (pathlib: seconds)
            found.extend(
                prefix + name
                for name in names
                if name.endswith(suffix) and not name.startswith(".")
            )
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
    """A warehouse root on any fsspec filesystem (object stores, ``memory://`` in tests).

    Writes are one PUT per file, straight to the final name; there is no lock (module doc:
    Atomicity, Locks). Listings are never cached, so objects written by other processes are
    seen at once."""

    def __init__(self, url: str) -> None:
        _refuse_password(url)
        fs, path = fsspec.core.url_to_fs(url, use_listings_cache=False)
        self._fs = fs
        self._base = str(path).rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self._protocol = protocol
        self._folders = protocol not in OBJECT_STORE_PROTOCOLS
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
        """Write ``data`` in one call to its final name (one PUT, or a multipart upload that
        appears whole when complete, on object stores)."""
        path = self._resolve(rel)
        if self._folders:
            self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
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
        try:
            listed = self._fs.find(base)  # one listing request per 1000 objects on S3
        except FileNotFoundError:
            return []
        prefix = self._base.lstrip("/")
        found: list[str] = []
        for path in listed:
            text = str(path).lstrip("/")
            if not text.startswith(f"{prefix}/"):
                continue
            rel = text[len(prefix) + 1 :]
            parts = rel.split("/")
            if rel.endswith(suffix) and not any(part.startswith(".") for part in parts):
                found.append(rel)
        return sorted(found)

    @contextlib.contextmanager
    def lock(self, rel_dir: str) -> Iterator[None]:
        """No lock: object stores have none that survives a crashed holder simply. One writer
        per partition is the caller's contract (Dagster runs one materialisation of a partition
        at a time); see the module doc. Nothing to clean either: no temporary objects."""
        if rel_dir:
            check_relative(rel_dir)
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


_PASSWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/@]*@")


def _refuse_password(url: str) -> None:
    if _PASSWORD_RE.match(url):
        scheme = url.split("://", 1)[0]
        raise ValueError(
            f"warehouse URL {scheme}://<credentials hidden>@... holds credentials; give them "
            "to the store's client instead (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "AWS_ENDPOINT_URL or a profile), never in the URL"
        )


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
