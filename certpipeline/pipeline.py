"""The pipeline's steps as plain functions over a DuckDB connection.

Dagster assets and tests call these; nothing here knows about Dagster.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from certpipeline import ingestion, requests, state
from certpipeline.reports import tables
from certpipeline.warehouse import DataPaths, publish


def resolve_dir(path: str) -> Path:
    return Path(path).expanduser().resolve()


def prepare_work_database(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(ingestion.RAW_DDL)
    state.ensure_history_tables(con)
    con.execute(tables.REPORT_DDL)


def prepare_requests_database(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(requests.REQUESTS_DDL)


def ingest_landing_day(con: duckdb.DuckDBPyConnection, paths: DataPaths, day: dt.date) -> pl.DataFrame:
    """Load one landing day into ``raw.*``; returns its per-file accounting."""
    return ingestion.accounts_frame(ingestion.ingest_day(con, paths, day))


def refresh_entity_history(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return state.refresh_history(con)


def referential_problems(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return state.referential_problems(con)


def build_report_snapshots(con: duckdb.DuckDBPyConnection, day: dt.date) -> dict[str, pl.DataFrame]:
    """Compute and store every ``reports.*`` snapshot for ``day``."""
    reports = tables.build_reports(state.load_state(con, day, entities=tables.REPORT_ENTITIES))
    tables.write_snapshots(con, day, reports)
    return reports


def publish_warehouse(con: duckdb.DuckDBPyConnection, paths: DataPaths) -> Path:
    return publish(paths, con, requests.PUBLIC_COLUMNS)
