"""Resources: the only way Dagster code reaches the data directory."""


import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from certpipeline import pipeline
from certpipeline.warehouse import LOCK_TIMEOUT_SECONDS, DataPaths, connect_locked, data_dir_from_env


DEFAULT_MEMORY_LIMIT = "1GB"


class WarehouseResource(dg.ConfigurableResource):
    """The data directory: landing files, the working database, the published
    warehouse and the exhausts. ``work()`` and ``requests()`` hold the matching
    inter-process lock for as long as the connection is open."""

    data_dir: str
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS
    # DuckDB's memory for the working database; beyond it, it spills to pipeline/spill.
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT

    @classmethod
    def from_environment(cls) -> "WarehouseResource":
        """``CERTPIPELINE_DATA_DIR`` (default ``data/`` in the repository) and
        ``CERTPIPELINE_DUCKDB_MEMORY_LIMIT`` (default 1GB)."""
        return cls(
            data_dir=str(data_dir_from_env()),
            duckdb_memory_limit=os.environ.get("CERTPIPELINE_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
        )

    @property
    def paths(self) -> DataPaths:
        return DataPaths(pipeline.resolve_dir(self.data_dir))

    @contextmanager
    def work(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.paths.pipeline.mkdir(parents=True, exist_ok=True)
        with connect_locked(
            self.paths.work_db, "work.lock", self.lock_timeout_seconds, self.duckdb_memory_limit
        ) as con:
            pipeline.prepare_work_database(con)
            yield con

    @contextmanager
    def requests(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.paths.pipeline.mkdir(parents=True, exist_ok=True)
        with connect_locked(self.paths.requests_db, "requests.lock", self.lock_timeout_seconds) as con:
            pipeline.prepare_requests_database(con)
            yield con


@dg.definitions
def resources() -> dg.Definitions:
    """The resources every asset, sensor and schedule of defs/ receives, built
    from the environment when the code location loads."""
    return dg.Definitions(resources={"warehouse": WarehouseResource.from_environment()})
