"""A real PostgreSQL server on 127.0.0.1 for the tests that need one.

``CERTPIPELINE_TEST_POSTGRES`` (a libpq DSN of a server the tests may create
databases on, such as the one ``.ci/run`` starts) is used when set; otherwise
a throwaway server is started from Debian's ``postgresql`` binaries in a
temporary folder (as the ``postgres`` user when we are root: initdb refuses
to run as root) and stopped at the end of the session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2

from certpipeline_tests.servers import free_port

ENV_DSN = "CERTPIPELINE_TEST_POSTGRES"


def _bin_dir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    assert candidates, "PostgreSQL server binaries are required (Debian package postgresql); .ci/run installs them"
    return Path(candidates[-1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextlib.contextmanager
def started_server(folder: Path) -> Iterator[str]:
    """Start a server in ``folder``; yields its admin DSN."""
    binaries = _bin_dir()
    folder.mkdir(parents=True, exist_ok=True)
    data, sockets = folder / "pgdata", folder / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for path in (folder, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        # The server user must be able to reach the folder through its parents.
        for parent in folder.parents:
            if parent == Path("/"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o001)
    subprocess.run(
        _as_server_user([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
        check=True, capture_output=True,
    )
    port = free_port()
    subprocess.run(
        _as_server_user([
            str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "-t", "120",
            "-o", f"-h 127.0.0.1 -p {port} -k {sockets} -c max_connections=200 -c fsync=off",
            "start",
        ]),
        check=True, capture_output=True,
    )
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run(_as_server_user([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_admin_dsn(folder: Path) -> Iterator[str]:
    if os.environ.get(ENV_DSN):
        yield os.environ[ENV_DSN]
    else:
        with started_server(folder) as dsn:
            yield dsn


def create_database(admin_dsn: str, prefix: str = "cp") -> str:
    """A new empty database on the server; returns its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    con = psycopg2.connect(admin_dsn)
    try:
        con.autocommit = True
        con.cursor().execute(f'CREATE DATABASE "{name}"')
    finally:
        con.close()
    parts = dict(part.split("=", 1) for part in admin_dsn.split())
    parts["dbname"] = name
    return " ".join(f"{key}={value}" for key, value in parts.items())
