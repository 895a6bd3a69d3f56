"""The working report snapshots: each ``reports.*`` table's rows for one report
date, as one Parquet file, ``pipeline/reports/<table>/<date>.parquet`` beside
the working database they were computed from. They wait there for the lake,
and stay to rebuild it (a new lake gets every day).

Files rather than tables of the working database: at a million learners a
day's snapshots are 2.4M rows, which DuckDB took 2.2 s to append to its file
(it compresses as it appends) and Polars writes as Parquet in 0.3 s; the
publication and the checks read them back as fast. Each file appears whole
or not at all (``atomic_files``), and ``tables.write_snapshots`` notes the day
for publication only once all five are in place.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl

from certpipeline import sql_literals
from certpipeline.atomic_files import replace_atomically
from certpipeline.faults import crash_point
from certpipeline.reports import catalog
from certpipeline.warehouse import database_folder, private_directory

FOLDER_NAME = "reports"
# zstd: a third smaller than lz4 or snappy for the same writing time (bench).
COMPRESSION = "zstd"


def folder(con: duckdb.DuckDBPyConnection, database: str | None = None) -> Path:
    """The snapshot folder of the working database ``con`` is connected to
    (or has attached as ``database``)."""
    return database_folder(con, database) / FOLDER_NAME


def file(con: duckdb.DuckDBPyConnection, name: str, day: dt.date) -> Path:
    return folder(con) / name / f"{day.isoformat()}.parquet"


def write(con: duckdb.DuckDBPyConnection, day: dt.date, reports: dict[str, pl.DataFrame]) -> None:
    """Replace ``day``'s file of each table in ``reports``, each atomically."""
    for name, frame in reports.items():
        _write_file(con, name, day, frame)
        crash_point("reports.table_written")


def _write_file(con: duckdb.DuckDBPyConnection, name: str, day: dt.date, frame: pl.DataFrame) -> None:
    target = file(con, name, day)
    private_directory(target.parent)
    # A writer killed mid-file left its hidden temporary file (atomic_files'
    # naming); writing the day again is when it is known to be dead weight.
    for stale in target.parent.glob(f".{target.stem}.*.tmp"):
        stale.unlink(missing_ok=True)
    replace_atomically(target, lambda _, temporary_name: frame.write_parquet(temporary_name, compression=COMPRESSION))


def days(con: duckdb.DuckDBPyConnection) -> list[dt.date]:
    """The report dates every table has a snapshot of."""
    root = folder(con)
    per_table = [{dt.date.fromisoformat(path.stem) for path in (root / name).glob("*.parquet")}
                 for name in catalog.TABLES]
    return sorted(set.intersection(*per_table))


def _typed(name: str, source: str) -> str:
    """The rows of ``source`` with the table's columns, in order, as the catalog types them."""
    return "SELECT " + ", ".join(f'"{column}"::{data_type} AS "{column}"'
                                 for column, data_type, _ in catalog.table_columns(name)) + f" FROM {source}"


def day_sql(con: duckdb.DuckDBPyConnection, name: str, day: dt.date) -> str:
    """A query of table ``name``'s snapshot of ``day``."""
    return _typed(name, f"read_parquet({sql_literals.text(str(file(con, name, day)))})")


def no_rows_sql(name: str) -> str:
    """A query with table ``name``'s columns and no rows (what a new lake's tables are shaped from)."""
    return "SELECT " + ", ".join(f'NULL::{data_type} AS "{column}"'
                                 for column, data_type, _ in catalog.table_columns(name)) + " WHERE false"


def every_day_sql(con: duckdb.DuckDBPyConnection, name: str, database: str | None = None) -> str:
    """A query of every snapshot of table ``name``, any day."""
    files = sorted(str(path) for path in (folder(con, database) / name).glob("*.parquet"))
    if not files:
        return no_rows_sql(name)
    return _typed(name, f"read_parquet([{', '.join(sql_literals.text(f) for f in files)}])")


def attach_views(con: duckdb.DuckDBPyConnection, alias: str = FOLDER_NAME, database: str | None = None) -> None:
    """Views ``<alias>.<table>`` of every snapshot of the working database
    (``con``'s, or the one attached as ``database``), in an in-memory database
    attached to ``con``: how tests, the bench and an engineer at a prompt read
    the working snapshots as tables (the files present now)."""
    con.execute(f"ATTACH ':memory:' AS {alias} (READ_WRITE)")  # also from a read-only connection
    for name in catalog.TABLES:
        con.execute(f"CREATE VIEW {alias}.{name} AS {every_day_sql(con, name, database)}")


def move_tables_to_files(con: duckdb.DuckDBPyConnection) -> None:
    """Working databases made before the snapshots moved to files hold them as
    ``reports.*`` tables: write each day of each table to its file, then drop
    the tables. A crash in between leaves the tables to move again."""
    found = [name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = ?",
        [FOLDER_NAME]).fetchall()]
    for name in found:
        if name in catalog.TABLES:
            dates = [day for (day,) in con.execute(f"SELECT DISTINCT report_date FROM reports.{name}").fetchall()]
            for day in dates:
                frame = con.execute(f"SELECT * FROM reports.{name} WHERE report_date = ?", [day]).pl()
                _write_file(con, name, day, frame)
        con.execute(f"DROP TABLE reports.{name}")
    con.execute(f"DROP SCHEMA IF EXISTS {FOLDER_NAME}")
