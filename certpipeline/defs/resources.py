"""Resources: the only way Dagster code reaches the data directory."""


from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb

from certpipeline import pipeline
from certpipeline.lake import LakeSettings
from certpipeline.pipeline import Warehouse
from certpipeline.settings import DEFAULT_MEMORY_LIMIT, DEFAULT_RETENTION_DAYS, VARIABLES, Settings
from certpipeline.warehouse import LOCK_TIMEOUT_SECONDS, DataPaths

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
    def from_settings(cls, settings: Settings) -> "WarehouseResource":
        """The resource of ``settings`` (``certpipeline/settings.py`` lists the
        variables, their defaults and meaning)."""
        return cls(data_dir=str(settings.data_dir), duckdb_memory_limit=settings.duckdb_memory_limit,
                   retention_days=settings.retention_days, catalog=settings.catalog,
                   lake_data_path=settings.lake_data_path)

    @classmethod
    def from_environment_variables(cls, settings: Settings) -> "WarehouseResource":
        """The resource the code location serves: a field whose variable is set
        is a ``dg.EnvVar``, read by Dagster when a run starts and shown by its
        name in the UI (a catalog's DSN is never displayed there); the others
        are the defaults. ``settings``, read from the same environment, has
        already refused bad values."""
        fields = cls.from_settings(settings).model_dump()
        for variable in VARIABLES:
            if variable.field in fields and variable.field in settings.from_variables:
                kind = dg.EnvVar.int if cls.model_fields[variable.field].annotation is int else dg.EnvVar
                fields[variable.field] = kind(variable.name)
        return cls(**fields)

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
    return dg.Definitions(
        resources={"warehouse": WarehouseResource.from_environment_variables(Settings.from_environment())})
