"""Where the pipeline keeps its data, and how writers and analysts share it.

DuckDB allows one read-write process or many read-only ones, never both. So
the pipeline never writes the file analysts open:

- ``pipeline/work.duckdb`` is the pipeline's working database (raw events,
  entity history, report snapshots). Every process that touches it holds
  ``pipeline/work.lock`` (an exclusive ``flock`` through ``filelock``) for as long as it is open,
  which serializes Dagster steps, backfill runs and CLI runs.
- ``pipeline/requests.duckdb`` holds the request queue, under its own lock,
  so filing a request never waits for a long nightly run.
- ``warehouse/`` is what analysts open read-only: a DuckLake (``lake.py``),
  catalog ``warehouse/catalog.sqlite`` and Parquet files under
  ``warehouse/data/`` unless ``CERTPIPELINE_CATALOG`` points elsewhere. Each
  publication adds what the working database changed as one new snapshot
  (``publication.py``); a reader sees the snapshot it started on and never
  blocks the pipeline.

Everything the pipeline creates is its owner's only: the data directory and
its folders 0700, every store 0600 (names and emails live in them). The
process's umask is set to 077 so that files DuckDB and Dagster create (WAL,
spill, run storage) are too, and existing stores are tightened when opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import filelock


PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
LOCK_TIMEOUT_SECONDS = 6 * 3600.0


class WarehouseBusy(RuntimeError):
    """Another process held the lock for longer than we were willing to wait."""


@dataclass(frozen=True)
class DataPaths:
    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing" / "events"

    @property
    def warehouse(self) -> Path:
        """The default lake folder (catalog and data files)."""
        return self.root / "warehouse"

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
        """The database files, with their write-ahead logs, and the default
        lake's SQLite catalog with its journal files."""
        databases = (self.work_db, self.requests_db)
        catalog = sorted(self.warehouse.glob("catalog.sqlite*")) if self.warehouse.is_dir() else []
        return [path for db in databases for path in (db, db.with_name(db.name + ".wal"))] + catalog

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


def database_folder(con: duckdb.DuckDBPyConnection, database: str | None = None) -> Path:
    """The folder of the database file ``con`` works in (or has attached as
    ``database``): the working database keeps its snapshot files and its
    saved state beside it."""
    (path,) = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = coalesce(?, current_database())",
                          [database]).fetchone()
    if not path:
        raise ValueError("this belongs to a working database file, not to an in-memory database")
    return Path(path).parent


def private_directory(path: Path) -> Path:
    path.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIRECTORY_MODE)
    return path


@contextmanager
def exclusive_lock(lock_path: Path, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created owner-only), waiting
    up to ``timeout`` seconds for another process to release it.

    ``filelock``'s native Unix lock, never its soft fallback (a marker file a
    killed process would leave behind, blocking everyone after it); the file
    stays in place on release so every waiter locks the same inode.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.UnixFileLock(
        lock_path, timeout=timeout, mode=PRIVATE_FILE_MODE, fallback_to_soft=False, preserve_lock_file=True
    )
    try:
        lock.acquire()
    except filelock.Timeout:
        raise WarehouseBusy(
            f"{lock_path} is held by another certpipeline process; waited {timeout:.0f}s"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _config(db_path: Path, memory_limit: str | None) -> dict[str, str]:
    config = {"temp_directory": str(db_path.parent / "spill")}
    if memory_limit:
        # DuckDB otherwise takes up to 80% of RAM before spilling; a first day of
        # history at a million learners would hold gigabytes in one transaction.
        config["memory_limit"] = memory_limit
    return config


@contextmanager
def connect_locked(
    db_path: Path, lock_name: str, timeout: float, memory_limit: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    with exclusive_lock(db_path.parent / lock_name, timeout):
        con = duckdb.connect(str(db_path), config=_config(db_path, memory_limit))
        try:
            # Not in the config: the TimeZone setting needs ICU, which DuckDB
            # 1.5.5 cannot autoload while it reads a connection's config.
            con.execute("SET TimeZone = 'UTC'")
            yield con
        finally:
            con.close()
