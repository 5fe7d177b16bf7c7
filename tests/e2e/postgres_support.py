"""A real PostgreSQL server for the tests of the production Dagster instance (a plain module,
imported by name like ``dagster_support``).

`postgres_server` (module scope) creates a temporary cluster with Debian's ``initdb`` on a free
port of 127.0.0.1 (password authentication over TCP, no fsync), starts it with ``pg_ctl``,
waits for it with a deadline, and stops it and deletes its folder afterwards. Run as root, the
server runs as the ``postgres`` OS user (PostgreSQL refuses root). Without the binaries the
tests are skipped, naming ``.ci/install-postgres``; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
SUPERUSER = "dagster"


def postgres_bin_dir() -> Path | None:
    """The folder of ``initdb``/``pg_ctl``: on the PATH, else Debian's newest version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions.sort(key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens, the superuser's credentials, its folder."""

    host: str
    port: int
    user: str
    password: str
    folder: Path

    def connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=5,
        )

    def create_database(self, name: str) -> str:
        """Create database ``name`` (empty) and return its name."""
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name

    def dagster_env(self, dbname: str) -> dict[str, str]:
        """The ``DAGSTER_PG_*`` variables ``deploy/postgres/dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": dbname,
        }


def _as_server_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix, uid and gid to run the server's programs with: the ``postgres`` OS
    user when we are root, else ourselves."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, but there is no `postgres` OS user to run PostgreSQL as")
    return ["runuser", "-u", "postgres", "--"], user.pw_uid, user.pw_gid


def _run(command: list[str], what: str, timeout_s: float) -> None:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}): {done.stdout}\n{done.stderr}")


def wait_until_accepting(server: PostgresServer, timeout_s: float) -> None:
    """Poll a connection until the server accepts one; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.connect().close()
            return
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL on port {server.port} not up after {timeout_s} s: {error}")
        time.sleep(0.1)


@pytest.fixture(scope="module", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own for the module (module doc)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        message = "PostgreSQL is not installed: run .ci/install-postgres (Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    prefix, uid, gid = _as_server_user()
    folder = Path(tempfile.mkdtemp(prefix="ib-pipeline-pg-"))
    data, log = folder / "data", folder / "server.log"
    password = secrets.token_hex(12)
    (folder / "pwfile").write_text(password + "\n")
    if uid is not None and gid is not None:
        os.chown(folder, uid, gid)
        os.chown(folder / "pwfile", uid, gid)
    server = PostgresServer("127.0.0.1", free_port(), SUPERUSER, password, folder)
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]
    try:
        _run(
            [
                *prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
                f"--pwfile={folder / 'pwfile'}", "--auth-local=trust",
                "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-sync",
            ],
            "initdb",
            60,
        )  # fmt: skip
        options = (
            f"-p {server.port} -h 127.0.0.1 -k {folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        _run(
            [
                *pg_ctl,
                "-l",
                str(log),
                "-o",
                options,
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "start",
            ],
            f"pg_ctl start (log: {log})",
            START_TIMEOUT_S + 10,
        )
        wait_until_accepting(server, START_TIMEOUT_S)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "-w", "-t", str(int(STOP_TIMEOUT_S)), "stop"],
                capture_output=True,
                timeout=STOP_TIMEOUT_S + 10,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        shutil.rmtree(folder, ignore_errors=True)
