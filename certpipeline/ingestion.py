"""Ingestion: one landing day of raw event files into ``raw.events``.

Every line read ends in exactly one place: ``raw.events`` (valid, possibly a
duplicate delivery) or ``raw.rejected_events`` (with its reason). Which copy of
a duplicated ``event_id`` counts is decided by one global rule, the earliest
(landing_date, file, line_number), so the result does not depend on the order
in which days are (re)ingested.

Reading the landing files is ``landing_files``; the validation SQL, generated
from the event contract, is ``event_validation``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from zlib_ng import zlib_ng

from certpipeline.event_validation import VALIDATION_SQL
from certpipeline.faults import crash_point
from certpipeline.landing_files import (
    FileRejected,
    LandingEntry,
    LandingLimits,
    landing_entries,
    open_landing_file,
    read_line_batches,
)
from certpipeline.transactions import transaction
from certpipeline.warehouse import DataPaths

RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS raw;
CREATE TABLE IF NOT EXISTS raw.events (
    event_id VARCHAR NOT NULL,
    event_type VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    landing_date DATE NOT NULL,
    file VARCHAR NOT NULL,
    line_number BIGINT NOT NULL,
    payload JSON NOT NULL,
    is_duplicate BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE IF NOT EXISTS raw.rejected_events (
    landing_date DATE NOT NULL,
    file VARCHAR NOT NULL,
    line_number BIGINT,
    raw_line VARCHAR,
    reason VARCHAR NOT NULL
);
-- Event ids whose counted copy may have changed, waiting for the entity
-- history to be refreshed (written and consumed in separate transactions),
-- one row for each landing day that held a copy of the event, before or after
-- the ingestion that queued it (NULL: queued by an older version, which gave
-- only the counted copy's day or none). The refresh reads and deletes only on
-- those days, and the publication deletes the lake's rows of the event only
-- on them.
CREATE TABLE IF NOT EXISTS raw.history_refresh_queue (event_id VARCHAR NOT NULL, landing_date DATE);
CREATE TABLE IF NOT EXISTS raw.landing_files (
    landing_date DATE NOT NULL,
    file VARCHAR NOT NULL,
    lines_read BIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);
"""


# Lines per record batch handed to the validation SQL (one task each).
VALIDATION_CHUNK_ROWS = 16_384


@dataclass(frozen=True)
class FileAccount:
    landing_date: dt.date
    file: str
    lines_read: int
    accepted: int
    duplicates: int
    rejected: int
    # Why the file as a whole was rejected (a link, a directory, corrupt gzip,
    # beyond the size limit); None when it was read.
    file_rejection: str | None = None


def _relative_name(paths: DataPaths, path: Path) -> str:
    return path.relative_to(paths.landing).as_posix()


def ingest_day(con: duckdb.DuckDBPyConnection, paths: DataPaths, day: dt.date,
               limits: LandingLimits = LandingLimits()) -> list[FileAccount]:
    """Replace landing day ``day`` in ``raw.*`` and return its per-file accounting.

    Runs in one transaction: a crash leaves the previous state of the day.
    The ids of every event whose counted copy may have changed are queued in
    ``raw.history_refresh_queue`` for ``state.refresh_history``.
    """
    entries = landing_entries(paths, day)
    con.execute(RAW_DDL)
    with transaction(con):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE affected_event_ids AS "
            "SELECT DISTINCT event_id FROM raw.events WHERE landing_date = ?",
            [day],
        )
        for table in ("raw.events", "raw.rejected_events", "raw.landing_files"):
            con.execute(f"DELETE FROM {table} WHERE landing_date = ?", [day])
        for entry in entries:
            _ingest_file(con, paths, day, entry, limits)
            crash_point("ingest.file_loaded")
        con.execute(
            "INSERT INTO affected_event_ids SELECT DISTINCT event_id FROM raw.events "
            "WHERE landing_date = ? EXCEPT SELECT event_id FROM affected_event_ids",
            [day],
        )
        _mark_duplicates(con)
        # The day replaced counts too: a copy it held is gone, and the lake
        # may still keep the event's history row on it.
        con.execute(
            "INSERT INTO raw.history_refresh_queue SELECT event_id, landing_date FROM affected_copies "
            "UNION SELECT event_id, ?::DATE FROM affected_event_ids",
            [day],
        )
        # Its rejections and file list go to the lake at the next publication.
        con.execute("INSERT INTO publication.pending_days VALUES ('landing', ?)", [day])
    return file_accounts(con, day)


def _ingest_file(con: duckdb.DuckDBPyConnection, paths: DataPaths, day: dt.date, entry: LandingEntry,
                 limits: LandingLimits) -> None:
    name = _relative_name(paths, entry.path)
    lines_read = 0
    try:
        if entry.refusal:
            raise FileRejected(entry.refusal)
        with open_landing_file(entry.path) as stream:
            for lines, oversized in read_line_batches(stream, limits):
                _ingest_lines(con, day, name, lines_read, lines, oversized, limits)
                lines_read += len(lines)
    except (FileRejected, OSError, EOFError, zlib_ng.error) as error:
        # The file cannot be read (whole): what was read of it goes, and one
        # rejection says why; the rest of the day lands.
        reason = str(error) if isinstance(error, FileRejected) else f"file is not readable: {type(error).__name__}: {error}"
        for table in ("raw.events", "raw.rejected_events"):
            con.execute(f"DELETE FROM {table} WHERE landing_date = ? AND file = ?", [day, name])
        con.execute("INSERT INTO raw.rejected_events VALUES (?, ?, NULL, NULL, ?)",
                    [day, name, reason])
        lines_read = 0
    con.execute("INSERT INTO raw.landing_files VALUES (?, ?, ?, now())", [day, name, lines_read])


def _ingest_lines(con: duckdb.DuckDBPyConnection, day: dt.date, name: str, lines_before: int, lines: pa.Array,
                  oversized: pa.Array, limits: LandingLimits) -> None:
    """Validate one batch of a file's consecutive lines into raw.events / raw.rejected_events."""
    count = len(lines)
    file_lines = pa.table(
        {
            "file": pa.array([name] * count, pa.string()) if count else pa.array([], pa.string()),
            "line_number": pa.array(range(lines_before + 1, lines_before + count + 1), pa.int64()),
            "raw": lines,
            "oversized_reason": pc.if_else(
                oversized, pa.scalar(f"line is longer than the limit of {limits.max_line_bytes:,} bytes"),
                pa.scalar(None, pa.string())),
        }
    )
    # Both cores validate: DuckDB scans an Arrow table one record batch per
    # task, and hands a relation's result to Arrow in parallel where an
    # executed statement's result is fetched by one thread (at 200,000
    # learners the first day's validation took 5.8 s, now 3.3 s).
    file_lines = pa.Table.from_batches(file_lines.to_batches(max_chunksize=VALIDATION_CHUNK_ROWS))
    # The SQL reads the local Arrow tables ``file_lines`` and ``validated_lines``
    # by name (DuckDB's replacement scan), neither registered nor copied into a
    # temporary table: inside the day's transaction a registered view or a
    # dropped table keeps its data until the commit, so a big day held every
    # batch in memory at once (6 GB for 7.2M lines).
    validated_lines = con.sql(  # noqa: F841 (read by name below)
        "SELECT event_id, event_type, occurred_at, file, line_number, "
        "CASE WHEN reason IS NULL THEN payload END AS payload, "
        "CASE WHEN reason IS NOT NULL THEN coalesce(line, CAST(raw AS VARCHAR)) END AS rejected_line, reason "
        f"FROM ({VALIDATION_SQL})"
    ).to_arrow_table()
    del file_lines
    con.execute(
        """
        INSERT INTO raw.events
        SELECT event_id, event_type, occurred_at, ?, file, line_number, payload, false
        FROM validated_lines WHERE reason IS NULL
        """,
        [day],
    )
    con.execute(
        """
        INSERT INTO raw.rejected_events
        SELECT ?, file, line_number, rejected_line, reason
        FROM validated_lines WHERE reason IS NOT NULL
        """,
        [day],
    )


def _mark_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    """Rank every copy of the affected events (one scan of ``raw.events``,
    kept as ``affected_copies``) and flag all but the first as duplicates."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE affected_copies AS
        SELECT event_id, landing_date, file, line_number, is_duplicate,
            row_number() OVER (PARTITION BY event_id ORDER BY landing_date, file, line_number) AS copy_number
        FROM raw.events
        WHERE event_id IN (SELECT event_id FROM affected_event_ids)
        """
    )
    # Only the copies whose flag changes are joined back: on a first day at
    # a million learners, 17,806 of 7.1M.
    con.execute(
        """
        UPDATE raw.events AS e SET is_duplicate = ranked.copy_number > 1
        FROM (SELECT * FROM affected_copies WHERE is_duplicate <> (copy_number > 1)) AS ranked
        WHERE e.event_id = ranked.event_id AND e.landing_date = ranked.landing_date
          AND e.file = ranked.file AND e.line_number = ranked.line_number
        """
    )


def file_accounts(con: duckdb.DuckDBPyConnection, day: dt.date) -> list[FileAccount]:
    rows = con.execute(
        """
        SELECT f.landing_date, f.file, f.lines_read,
            coalesce(e.accepted, 0), coalesce(e.duplicates, 0), coalesce(r.rejected, 0), r.file_rejection
        FROM raw.landing_files f
        LEFT JOIN (
            SELECT landing_date, file, count(*) FILTER (NOT is_duplicate) AS accepted,
                count(*) FILTER (is_duplicate) AS duplicates
            FROM raw.events WHERE landing_date = $day GROUP BY ALL
        ) e USING (landing_date, file)
        LEFT JOIN (
            SELECT landing_date, file, count(line_number) AS rejected,
                any_value(reason) FILTER (line_number IS NULL) AS file_rejection
            FROM raw.rejected_events WHERE landing_date = $day GROUP BY ALL
        ) r USING (landing_date, file)
        WHERE f.landing_date = $day
        ORDER BY f.file
        """,
        {"day": day},
    ).fetchall()
    return [FileAccount(*row) for row in rows]


def accounts_frame(accounts: list[FileAccount]) -> pl.DataFrame:
    return pl.DataFrame(
        [a.__dict__ for a in accounts],
        schema={
            "landing_date": pl.Date, "file": pl.String, "lines_read": pl.Int64,
            "accepted": pl.Int64, "duplicates": pl.Int64, "rejected": pl.Int64, "file_rejection": pl.String,
        },
    )
