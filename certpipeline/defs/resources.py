"""Resources: the only way Dagster code reaches the data directory."""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from certpipeline import pipeline
from certpipeline.lake import LakeSettings
from certpipeline.pipeline import DEFAULT_MEMORY_LIMIT, DEFAULT_RETENTION_DAYS, Warehouse
from certpipeline.warehouse import LOCK_TIMEOUT_SECONDS, DataPaths, data_dir_from_env


class SettingError(ValueError):
    """An environment variable with a value the pipeline cannot use."""


def _retention_days(text: str | None) -> int:
    if not text:
        return DEFAULT_RETENTION_DAYS
    if not text.strip().isdigit() or int(text) < 1:
        raise SettingError(f"CERTPIPELINE_RETENTION_DAYS must be a whole number of days, at least 1, not {text!r}")
    return int(text)

# The Dagster pool of every step that writes the working database: with the
# instance's `concurrency: pools: default_limit: 1` one such step runs at a
# time across all runs (UI backfills, schedules, sensors, the CLI), and a run
# whose steps would only wait on the file lock stays queued instead. The file
# lock held by ``work()`` stays the guarantee underneath.
WORK_POOL = "duckdb_work"


class WarehouseResource(dg.ConfigurableResource):
    """Configuration of the data directory; ``get_warehouse()`` builds the plain
    ``pipeline.Warehouse`` the steps and the request service run against (the
    way Dagster's DuckDBResource wraps ``duckdb.connect``)."""

    data_dir: str
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS
    # DuckDB's memory for the working database; beyond it, it spills to pipeline/spill.
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    # Days a report file is kept before it is deleted and its request Expired.
    retention_days: int = DEFAULT_RETENTION_DAYS
    # The key that seals report passwords; kept outside the data directory.
    # Empty: CERTPIPELINE_SECRET_KEY_FILE, else ~/.config/certpipeline/secret.key.
    secret_key_file: str = ""
    # The published lake's catalog (``sqlite:PATH`` or ``postgres:DSN``) and
    # data folder; empty means warehouse/catalog.sqlite and warehouse/data/.
    catalog: str = ""
    lake_data_path: str = ""

    @classmethod
    def from_environment(cls) -> "WarehouseResource":
        """``CERTPIPELINE_DATA_DIR`` (default ``data/`` in the repository),
        ``CERTPIPELINE_DUCKDB_MEMORY_LIMIT`` (default 1GB),
        ``CERTPIPELINE_RETENTION_DAYS`` (default 30), ``CERTPIPELINE_CATALOG``
        and ``CERTPIPELINE_LAKE_DATA_PATH`` (default: a SQLite catalog and
        Parquet files under ``warehouse/`` in the data directory)."""
        return cls(
            data_dir=str(data_dir_from_env()),
            duckdb_memory_limit=os.environ.get("CERTPIPELINE_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
            retention_days=_retention_days(os.environ.get("CERTPIPELINE_RETENTION_DAYS")),
            catalog=os.environ.get("CERTPIPELINE_CATALOG", ""),
            lake_data_path=os.environ.get("CERTPIPELINE_LAKE_DATA_PATH", ""),
        )

    def get_warehouse(self) -> Warehouse:
        return Warehouse(pipeline.resolve_dir(self.data_dir), self.lock_timeout_seconds, self.duckdb_memory_limit,
                         self.retention_days,
                         secret_key_file=pipeline.resolve_dir(self.secret_key_file) if self.secret_key_file else None,
                         catalog=self.catalog, lake_data_path=self.lake_data_path)

    # Shorthands for the assets, which each need one of these.
    @property
    def paths(self) -> DataPaths:
        return self.get_warehouse().paths

    @property
    def lake(self) -> LakeSettings:
        return self.get_warehouse().lake

    @contextmanager
    def work(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.get_warehouse().work() as con:
            yield con

    @contextmanager
    def requests(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.get_warehouse().requests() as con:
            yield con


@dg.definitions
def resources() -> dg.Definitions:
    """The resources every asset, sensor and schedule of defs/ receives, built
    from the environment when the code location loads."""
    return dg.Definitions(resources={"warehouse": WarehouseResource.from_environment()})
