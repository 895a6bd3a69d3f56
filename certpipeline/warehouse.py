"""Where the pipeline keeps its data, and how writers and analysts share it.

DuckDB allows one read-write process or many read-only ones, never both. So
the pipeline never writes the file analysts open:

- ``pipeline/work.duckdb`` is the pipeline's working database (raw events,
  entity history, report snapshots). Every process that touches it holds
  ``pipeline/work.lock`` (an exclusive ``flock``) for as long as it is open,
  which serializes Dagster steps, backfill runs and CLI runs.
- ``pipeline/requests.duckdb`` holds the request queue, under its own lock,
  so filing a request never waits for a long nightly run.
- ``warehouse.duckdb`` is what analysts open read-only. It is a published
  copy: written under a temporary name and swapped in with ``os.replace`` at
  the end of each run, so a reader always sees a complete run and never blocks
  the pipeline (a reader keeps the old inode until it reconnects).

Everything the pipeline creates is its owner's only: the data directory and
its folders 0700, every store 0600 (names and emails live in them). The
process's umask is set to 077 so that files DuckDB and Dagster create (WAL,
spill, run storage) are too, and existing stores are tightened when opened.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from certpipeline.faults import crash_point

PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPOSITORY_ROOT / "data"
LOCK_TIMEOUT_SECONDS = 6 * 3600.0


class WarehouseBusy(RuntimeError):
    """Another process held the lock for longer than we were willing to wait."""


def data_dir_from_env() -> Path:
    return Path(os.environ.get("CERTPIPELINE_DATA_DIR") or DEFAULT_DATA_DIR).resolve()


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing" / "events"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def exhausts(self) -> Path:
        return self.root / "exhausts"

    @property
    def pipeline(self) -> Path:
        return self.root / "pipeline"

    @property
    def work_db(self) -> Path:
        return self.pipeline / "work.duckdb"

    @property
    def requests_db(self) -> Path:
        return self.pipeline / "requests.duckdb"

    @property
    def publication_pending(self) -> Path:
        """Present while a publication has started and not finished (a full
        disk, a crash): the next ``process-requests`` publishes again."""
        return self.pipeline / "publication.pending"

    def landing_day(self, day) -> Path:
        return self.landing / f"date={day.isoformat()}"

    def stores(self) -> list[Path]:
        """The database files, with their write-ahead logs."""
        databases = (self.work_db, self.requests_db, self.warehouse)
        return [path for db in databases for path in (db, db.with_name(db.name + ".wal"))]

    def make_private(self) -> None:
        """Create the data directory owner-only, and tighten what exists of it."""
        owner_only_from_now_on()
        for directory in (self.root, self.pipeline, self.exhausts):
            private_directory(directory)
        for store in self.stores():
            if store.exists():
                os.chmod(store, PRIVATE_FILE_MODE)


def owner_only_from_now_on() -> None:
    """Files and folders this process creates from now on are its owner's only."""
    os.umask(0o077)


def private_directory(path: Path) -> Path:
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIRECTORY_MODE)
    return path


@contextmanager
def exclusive_lock(lock_path: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{lock_path} is held by another certpipeline process; "
                        f"waited {timeout:.0f}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _configure(con: duckdb.DuckDBPyConnection, memory_limit: str | None = None) -> None:
    con.execute("SET TimeZone = 'UTC'")
    if memory_limit:
        # DuckDB otherwise takes up to 80% of RAM before spilling; a first day of
        # history at a million learners would hold gigabytes in one transaction.
        con.execute(f"SET memory_limit = '{memory_limit}'")


@contextmanager
def connect_locked(
    db_path: Path, lock_name: str, timeout: float, memory_limit: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    with exclusive_lock(db_path.parent / lock_name, timeout):
        con = duckdb.connect(str(db_path), config={"temp_directory": str(db_path.parent / "spill")})
        try:
            _configure(con, memory_limit)
            yield con
        finally:
            con.close()


def publish(paths: DataPaths, work: duckdb.DuckDBPyConnection, public_request_columns: str) -> Path:
    """Swap a fresh copy of the working database in as ``warehouse.duckdb``.

    Called with the work lock held and ``work`` open; the connection is
    checkpointed so the file on disk is complete before it is copied.
    """
    work.execute("CHECKPOINT")

    def edit(copy: duckdb.DuckDBPyConnection) -> None:
        # The raw payloads stay behind: analysts query reports, state and
        # rejections, and raw.events is the bulk of the file.
        copy.execute("DROP TABLE IF EXISTS raw.events")
        _copy_request_rows(paths, copy, public_request_columns)

    return _swap_in(paths, paths.work_db, edit)


def publish_requests(paths: DataPaths, public_request_columns: str) -> Path:
    """Swap in a copy of the published warehouse with the request queue's
    current rows: what a pass of requests changed, without re-publishing the
    working database. Called with the work lock held, like ``publish``."""
    return _swap_in(paths, paths.warehouse, lambda copy: _copy_request_rows(paths, copy, public_request_columns))


def _copy_request_rows(paths: DataPaths, copy: duckdb.DuckDBPyConnection, public_request_columns: str) -> None:
    copy.execute("CREATE SCHEMA IF NOT EXISTS ops")
    with exclusive_lock(paths.pipeline / "requests.lock"):
        if paths.requests_db.exists():
            copy.execute(f"ATTACH '{paths.requests_db}' AS requests_db (READ_ONLY)")
            copy.execute(
                "CREATE OR REPLACE TABLE ops.report_requests AS "
                f"SELECT {public_request_columns} FROM requests_db.ops.report_requests"
            )
            copy.execute("DETACH requests_db")


def _swap_in(paths: DataPaths, source: Path, edit) -> Path:
    """Copy ``source`` under a temporary name, let ``edit`` change the copy,
    then rename it over ``warehouse.duckdb``: readers see the old or the new."""
    # A crash between copy and rename leaves a staging file; the work lock
    # we hold means no other publication is under way, so any is stale.
    for stale in paths.root.glob(".warehouse.*.duckdb.tmp*"):  # with DuckDB's .wal
        stale.unlink(missing_ok=True)
    paths.publication_pending.touch()
    staging = paths.warehouse.with_name(f".warehouse.{os.getpid()}.duckdb.tmp")
    try:
        _write_copy(source, staging, edit)
        os.replace(staging, paths.warehouse)
    except BaseException:
        # A full disk mid-copy must not leave a partial copy taking the space.
        for partial in (staging, staging.with_name(staging.name + ".wal")):
            partial.unlink(missing_ok=True)
        raise
    paths.publication_pending.unlink(missing_ok=True)
    return paths.warehouse


def _write_copy(source: Path, staging: Path, edit) -> None:
    shutil.copyfile(source, staging)
    copy = duckdb.connect(str(staging))
    try:
        _configure(copy)
        edit(copy)
        copy.execute("CHECKPOINT")
    finally:
        copy.close()
    with open(staging, "rb") as handle:
        os.fchmod(handle.fileno(), PRIVATE_FILE_MODE)
        os.fsync(handle.fileno())
    crash_point("publish.copied")
