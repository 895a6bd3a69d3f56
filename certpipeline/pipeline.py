"""The pipeline's steps as plain functions over a DuckDB connection, and the
``Warehouse`` they run against.

Dagster assets, the CLI, the HTTP API and tests call these; nothing here
knows about Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from certpipeline import ingestion, publication, report_requests, state, work_schema
from certpipeline.lake import LakeSettings
from certpipeline.password_vault import PasswordVault
from certpipeline.reports import catalog, checks, tables
from certpipeline.settings import DEFAULT_MEMORY_LIMIT, DEFAULT_RETENTION_DAYS, default_key_file
from certpipeline.warehouse import LOCK_TIMEOUT_SECONDS, DataPaths, connect_locked



def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def resolve_dir(path: str) -> Path:
    return Path(path).expanduser().resolve()


def prepare_work_database(con: duckdb.DuckDBPyConnection) -> None:
    """Create what the working database lacks and migrate the columns this
    version added (see ``certpipeline.work_schema``), unless it was last
    prepared by the same schema version."""
    work_schema.prepare(con)


def prepare_requests_database(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(report_requests.REQUESTS_DDL)


@dataclass(frozen=True)
class Warehouse:
    """The data directory as the plain modules see it: its paths, the two
    locked and prepared databases, the password vault and the clock.

    ``work()`` and ``requests()`` hold the matching inter-process lock for as
    long as the connection is open. ``clock`` is injectable so that tests can
    move a request past its lease or its retention without waiting."""

    root: Path
    lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS
    duckdb_memory_limit: str | None = DEFAULT_MEMORY_LIMIT
    retention_days: int = DEFAULT_RETENTION_DAYS
    clock: Callable[[], dt.datetime] = utc_now
    # The key that seals report passwords, kept outside the data directory;
    # None: CERTPIPELINE_SECRET_KEY_FILE, else ~/.config/certpipeline/secret.key.
    secret_key_file: Path | None = None
    # The published lake's catalog (``sqlite:PATH`` or ``postgres:DSN``) and
    # data folder; empty means warehouse/catalog.sqlite and warehouse/data/.
    catalog: str = ""
    lake_data_path: str = ""

    @property
    def paths(self) -> DataPaths:
        return DataPaths(self.root)

    @property
    def lake(self) -> LakeSettings:
        return LakeSettings.under(self.root, self.catalog, self.lake_data_path)

    def now(self) -> dt.datetime:
        return self.clock()

    def today(self) -> dt.date:
        return self.clock().astimezone(dt.timezone.utc).date()

    @property
    def vault(self) -> PasswordVault:
        return PasswordVault(self.secret_key_file or default_key_file(),
                             legacy_key_file=self.paths.pipeline / "secret.key")

    @contextmanager
    def work(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.paths.make_private()
        with connect_locked(
            self.paths.work_db, "work.lock", self.lock_timeout_seconds, self.duckdb_memory_limit
        ) as con:
            prepare_work_database(con)
            yield con

    @contextmanager
    def requests(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.paths.make_private()
        with connect_locked(self.paths.requests_db, "requests.lock", self.lock_timeout_seconds) as con:
            prepare_requests_database(con)
            yield con


def ingest_landing_day(con: duckdb.DuckDBPyConnection, paths: DataPaths, day: dt.date) -> pl.DataFrame:
    """Load one landing day into ``raw.*``; returns its per-file accounting."""
    return ingestion.accounts_frame(ingestion.ingest_day(con, paths, day))


def ingest_landing_days(con: duckdb.DuckDBPyConnection, paths: DataPaths, days: list[dt.date]) -> pl.DataFrame:
    """Load each landing day into ``raw.*`` (each in its own transaction); their per-file accounting."""
    return ingestion.accounts_frame([account for day in days for account in ingestion.ingest_day(con, paths, day)])


def refresh_entity_history(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return state.refresh_history(con)


def referential_problems(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return state.referential_problems(con)


def build_report_snapshots(con: duckdb.DuckDBPyConnection, day: dt.date,
                           as_of: state.State | None = None) -> dict[str, pl.DataFrame]:
    """Compute and store every ``reports.*`` snapshot for ``day``, from ``as_of``
    (the state as of ``day``) or the state loaded here."""
    reports = tables.build_reports(as_of or tables.report_state(con, day))
    tables.write_snapshots(con, day, reports)
    return reports


@dataclass(frozen=True)
class ReportRange:
    """What computing a range's reports leaves in memory: each table's rows
    over the range, its first rows, and the checks over all days."""

    row_counts: dict[str, int]
    first_rows: dict[str, pl.DataFrame]
    checks: list[checks.CheckOutcome]


def build_and_check_report_snapshots(
    con: duckdb.DuckDBPyConnection, days: list[dt.date], keep_rows: int = 10
) -> ReportRange:
    """Every ``reports.*`` snapshot for each of ``days``, written day by day,
    and the checks over all days. A day's state and reports are dropped before
    the next day's: a month of days at a million learners held every day's
    frames at once (16.5 GiB), where a day needs about 2. Each day's state
    is carried forward from the day before (the range's history is complete
    before its first report): at a million learners 0.44-0.50 s a day
    instead of 2.1 s. The last day's is saved for the next run to carry
    forward (``carried_state``); the first day's is carried from the one an
    earlier run saved, when it can be."""
    row_counts = dict.fromkeys(tables.REPORT_BUILDERS, 0)
    first_rows: dict[str, list[pl.DataFrame]] = {name: [] for name in tables.REPORT_BUILDERS}
    outcomes = {}
    as_of = None
    for day in sorted(days):
        as_of = tables.report_state(con, day, previous=as_of)
        reports = build_report_snapshots(con, day, as_of)
        outcomes[day] = checks.run_report_checks(con, day, as_of)
        for name, frame in reports.items():
            row_counts[name] += frame.height
            if sum(part.height for part in first_rows[name]) < keep_rows:
                # The first rows by the table's key (a snapshot is in no
                # order), as a copy: a slice would keep the whole day's frame alive.
                key = list(catalog.TABLES[name].key)
                first = frame.bottom_k(keep_rows, by=key).sort(key, nulls_last=True)
                first_rows[name].append(pl.DataFrame(first.to_dicts(), schema=frame.schema))
        del reports
        as_of.drop_derived()
    if as_of is not None:
        tables.keep_report_state(con, as_of)
    return ReportRange(row_counts, {name: pl.concat(parts).head(keep_rows) for name, parts in first_rows.items()},
                       checks.combine_days(outcomes))


def public_requests(queue: duckdb.DuckDBPyConnection) -> pa.Table:
    """The request queue as the warehouse shows it (no ciphertext). A whole
    Table: ``.arrow()``'s lazy reader would keep the queue's file open (and
    DuckDB-locked) after its connection and its flock are released."""
    return queue.sql(f"SELECT {report_requests.PUBLIC_COLUMNS} FROM ops.report_requests").to_arrow_table()


def publish_warehouse(con: duckdb.DuckDBPyConnection, warehouse: Warehouse) -> publication.Publication:
    """Publish what changed in the working database ``con`` (the work lock
    held) to the lake, with the request queue's current public rows: one new
    snapshot, whether a night or a pass of requests changed it.

    Request statuses live outside the working database, so a flag file says
    a publication is owed until one commits: the next pass of requests
    publishes them if this one failed (a full disk, a kill)."""
    paths = warehouse.paths
    paths.publication_pending.touch()
    # The request queue exists from the first run, so analysts find
    # ops.report_requests (empty) before anyone has filed a request.
    with warehouse.requests() as queue:
        request_rows = public_requests(queue)
    con.register("queue_rows", request_rows)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE requests_now AS SELECT * FROM queue_rows")
    finally:
        con.unregister("queue_rows")
    published = publication.publish(con, warehouse.lake, report_requests.PUBLIC_COLUMNS)
    paths.publication_pending.unlink(missing_ok=True)
    return published
