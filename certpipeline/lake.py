"""The published warehouse: a DuckLake (catalog in SQLite or PostgreSQL, table
data as Parquet files), and the statements that open it.

DuckLake gives readers snapshot isolation: an analyst's session reads the
snapshot it started on while the pipeline commits new ones, and several
writers can commit to one catalog. By default the catalog is a SQLite file
under the data directory (several local processes may use it at once; a
DuckDB-file catalog would lock readers out while a writer holds it);
``CERTPIPELINE_CATALOG`` (``postgres:dbname=... host=...``) and
``CERTPIPELINE_LAKE_DATA_PATH`` switch to a shared catalog and data folder.

The extensions are loaded from the ``duckdb-extension-*`` wheels installed
with the project, never downloaded: ``LOAD '<file>'``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import duckdb

from certpipeline import sql_literals

ALIAS = "warehouse"
# SQLite answers "database is locked" while another process commits; waiting
# up to a minute for the lock means neither analysts nor runs see it.
SQLITE_BUSY_TIMEOUT_MS = 60_000
# Conflicts between writers are retried from scratch this many times.
COMMIT_ATTEMPTS = 30

Result = TypeVar("Result")
log = logging.getLogger(__name__)


def extension_file(package: str, name: str) -> Path:
    """The extension file shipped in an installed wheel (``duckdb-extension-<package>``)."""
    spec = importlib.util.find_spec(f"duckdb_extension_{package}")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the duckdb-extension-{package.replace('_', '-')} wheel is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise RuntimeError(f"no {name} extension for DuckDB {duckdb.__version__} at {path}")
    return path


@dataclass(frozen=True)
class LakeSettings:
    """Where the lake's catalog and data files are.

    ``catalog`` is a DuckLake metadata location: ``sqlite:/abs/path`` or
    ``postgres:<libpq DSN>`` (passwords belong in ``~/.pgpass`` or
    ``PGPASSWORD``, never in this setting: it is printed for analysts)."""

    catalog: str
    data_path: str
    # The data folder follows the data directory (moved or copied whole), so
    # it overrides the path the catalog was created with.
    data_path_follows_data_dir: bool = False

    @classmethod
    def under(cls, data_dir: Path, catalog: str = "", data_path: str = "") -> "LakeSettings":
        lake_dir = data_dir / "warehouse"
        return cls(
            catalog=catalog or f"sqlite:{lake_dir / 'catalog.sqlite'}",
            data_path=data_path or f"{lake_dir / 'data'}/",
            data_path_follows_data_dir=not data_path,
        )

    @property
    def kind(self) -> str:
        return "postgres" if self.catalog.startswith("postgres:") else "sqlite"

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.removeprefix("sqlite:")) if self.kind == "sqlite" else None

    def statements(self, read_only: bool, use: bool = True) -> list[str]:
        """LOAD the two extensions, ATTACH the lake as ``warehouse``, and USE it."""
        scanner = "postgres_scanner" if self.kind == "postgres" else "sqlite_scanner"
        options = ["READ_ONLY"] if read_only else []
        if not read_only or self.data_path_follows_data_dir:
            options.append(f"DATA_PATH {sql_literals.text(self.data_path)}")
        if self.data_path_follows_data_dir:
            options.append("OVERRIDE_DATA_PATH TRUE")
        if self.kind == "sqlite":
            options.append(f"META_BUSY_TIMEOUT {SQLITE_BUSY_TIMEOUT_MS}")
            if not read_only:
                # WAL: readers never wait for a writer's commit, nor it for them.
                options.append("META_JOURNAL_MODE 'WAL'")
        statements = [
            f"LOAD {sql_literals.text(str(extension_file('ducklake', 'ducklake')))};",
            f"LOAD {sql_literals.text(str(extension_file(scanner, scanner)))};",
            f"ATTACH {sql_literals.text('ducklake:' + self.catalog)} AS {ALIAS} ({', '.join(options)});",
        ]
        if use:
            statements.append(f"USE {ALIAS};")
        return statements

    def prepare_local_folders(self) -> None:
        """Create the local catalog and data folders, owner-only."""
        folders = [Path(self.data_path)] if "://" not in self.data_path else []
        if self.sqlite_file is not None:
            folders.append(self.sqlite_file.parent)
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)

    def exists(self) -> bool:
        return self.kind != "sqlite" or self.sqlite_file.exists()


def attach(con: duckdb.DuckDBPyConnection, settings: LakeSettings, read_only: bool, use: bool = True) -> None:
    if not read_only:
        settings.prepare_local_folders()
    for statement in settings.statements(read_only, use=use):
        con.execute(statement)
    if not read_only and settings.sqlite_file is not None:
        for path in settings.sqlite_file.parent.glob(settings.sqlite_file.name + "*"):
            os.chmod(path, 0o600)


def open_reader(settings: LakeSettings) -> duckdb.DuckDBPyConnection:
    """A read-only session on the lake, the way an analyst opens it; the
    caller closes it. Each transaction reads the newest snapshot committed
    when it starts."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        attach(con, settings, read_only=True)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def reader(settings: LakeSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """``open_reader``, closed on leaving."""
    con = open_reader(settings)
    try:
        yield con
    finally:
        con.close()


def is_retryable(error: Exception) -> bool:
    """A conflict with another writer's commit, or SQLite's lock: try again."""
    text = str(error)
    return isinstance(error, duckdb.Error) and any(
        marker in text for marker in ("conflict", "database is locked", "Failed to commit DuckLake transaction",
                                      "violates primary key", "could not serialize",
                                      # Two writers creating a new catalog, or the same lake
                                      # table, at once: the later one finds it on its next attempt.
                                      "Failed to initialize DuckLake", "already exists")
    )


def with_retries(attempt: Callable[[], Result], attempts: int = COMMIT_ATTEMPTS) -> Result:
    """Run ``attempt`` (one whole transaction) again after a conflict, with backoff."""
    delay = 0.05
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except duckdb.Error as error:
            if number == attempts or not is_retryable(error):
                raise
            log.warning("lake commit %d of %d met another writer (%s); trying again", number, attempts,
                        str(error).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
