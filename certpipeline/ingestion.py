"""Ingestion: one landing day of raw event files into ``raw.events``.

Every line read ends in exactly one place: ``raw.events`` (valid, possibly a
duplicate delivery) or ``raw.rejected_events`` (with its reason). Which copy of
a duplicated ``event_id`` counts is decided by one global rule, the earliest
(landing_date, file, line_number), so the result does not depend on the order
in which days are (re)ingested.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from certpipeline import events as ev
from certpipeline.faults import crash_point
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
-- history to be refreshed (written and consumed in separate transactions).
CREATE TABLE IF NOT EXISTS raw.history_refresh_queue (event_id VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS raw.landing_files (
    landing_date DATE NOT NULL,
    file VARCHAR NOT NULL,
    lines_read BIGINT NOT NULL,
    ingested_at TIMESTAMPTZ NOT NULL
);
"""

# Timestamps outside this window are typos or corrupt exports, not history.
EARLIEST_TIMESTAMP = "1970-01-01"
LATEST_TIMESTAMP = "2100-01-01"


class LandingDayMissing(FileNotFoundError):
    pass


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


def earliest_landing_day(paths: DataPaths) -> dt.date | None:
    """The earliest ``date=YYYY-MM-DD`` landing folder present (others are ignored)."""
    days = []
    for folder in paths.landing.glob("date=*"):
        try:
            days.append(dt.date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return min(days, default=None)


def missing_landing_days(paths: DataPaths, days: list[dt.date]) -> list[dt.date]:
    return [day for day in days if not paths.landing_day(day).is_dir()]


def missing_landing_message(paths: DataPaths, days: list[dt.date]) -> str | None:
    """One line naming the first of ``days`` without a landing folder, or None
    when every day has one (what the CLI and the UI both say)."""
    missing = missing_landing_days(paths, days)
    if not missing:
        return None
    more = f" and {len(missing) - 1} more day(s)" if len(missing) > 1 else ""
    return f"no landing folder for {missing[0]} (expected {paths.landing_day(missing[0])}){more}"


# Limits on what one landing file may hold (README, "Rejections"). A line or a
# file beyond them is one rejection with its reason; the rest of the day lands.
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024  # after decompression
# Files are read (and decompressed) in chunks of this size, so memory is bounded
# by the chunk and the longest line, never by the file: a 1 MB .gz can expand
# to gigabytes.
READ_CHUNK_BYTES = 32 * 1024 * 1024
# How much of an over-long line is kept in raw.rejected_events.
REJECTED_PREFIX_BYTES = 1024
LANDING_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class LandingLimits:
    max_line_bytes: int = MAX_LINE_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    read_chunk_bytes: int = READ_CHUNK_BYTES


@dataclass(frozen=True)
class LandingEntry:
    """A name in a landing folder that looks like a landing file, and why it
    cannot be read when it is not a regular file (links are never followed)."""

    path: Path
    refusal: str | None = None


class FileRejected(Exception):
    """The whole file is one rejection, with this reason."""


def landing_entries(paths: DataPaths, day: dt.date) -> list[LandingEntry]:
    """Every ``*.jsonl`` / ``*.jsonl.gz`` entry of the day's folder, by name.

    A symbolic link (it could point anywhere, /etc/passwd included), a
    directory or anything else that is not a regular file is listed with its
    refusal, never opened."""
    folder = paths.landing_day(day)
    if not folder.is_dir():
        raise LandingDayMissing(f"no landing folder for {day.isoformat()}: {folder}")
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if not entry.name.endswith(LANDING_SUFFIXES):
                continue
            if entry.is_symlink():
                refusal = "not a regular file: a symbolic link, never followed"
            elif entry.is_dir(follow_symlinks=False):
                refusal = "not a regular file: a directory"
            elif not entry.is_file(follow_symlinks=False):
                refusal = "not a regular file"
            else:
                refusal = None
            entries.append(LandingEntry(Path(entry.path), refusal))
    return sorted(entries, key=lambda e: e.path.name)


def split_lines(data: bytes) -> pa.Array:
    """The lines of a file as a binary array, without their line terminators."""
    if not data:
        return pa.array([], pa.large_binary())
    # One array over the file's bytes without copying them (a 140 MB file
    # would otherwise be held three times while it is split).
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.array([0, len(data)], pa.int64()).buffers()[1], pa.py_buffer(data)]
    )
    lines = pc.split_pattern(whole, pattern=b"\n").flatten()
    if data.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    if b"\r" not in data:
        return lines
    # Windows line endings: drop one trailing carriage return.
    return pc.replace_substring_regex(lines, pattern=b"\r$", replacement=b"", max_replacements=1)


def open_landing_file(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream. Opened without following a
    link (a link swapped in after listing fails here) and refused unless it
    is a regular file (a FIFO would block the run)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    handle = os.fdopen(descriptor, "rb")
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        handle.close()
        raise FileRejected("not a regular file")
    # GzipFile.read(n) decompresses at most n bytes at a time: a bomb costs a chunk, not its size.
    return gzip.GzipFile(fileobj=handle, mode="rb") if path.name.endswith(".gz") else handle


def read_line_batches(stream: BinaryIO, limits: LandingLimits) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Consecutive lines of ``stream`` in batches, as (lines, oversized): an
    over-long line comes back as its first bytes, flagged. Raises
    FileRejected when the file expands beyond ``max_file_bytes``.

    Memory: one chunk plus the unfinished line, which is dropped (but for its
    first bytes) as soon as it exceeds the line limit."""
    unfinished = b""
    skipping = None  # the first bytes of an over-long line, until its end
    total = 0
    while True:
        chunk = stream.read(limits.read_chunk_bytes)
        at_end = not chunk
        total += len(chunk)
        if total > limits.max_file_bytes:
            raise FileRejected(f"file expands beyond the limit of {limits.max_file_bytes:,} bytes")
        if skipping is not None:
            end = chunk.find(b"\n")
            if end < 0 and not at_end:
                continue
            yield _one_oversized(skipping)
            skipping = None
            if at_end:
                return
            chunk = chunk[end + 1:]
        if at_end:
            if unfinished:
                yield _flag_oversized(split_lines(unfinished), limits)
            return
        data = unfinished + chunk if unfinished else chunk
        del chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            unfinished = data[cut + 1:]
            yield _flag_oversized(split_lines(data[: cut + 1]), limits)
        else:
            unfinished = data
        del data
        if len(unfinished) > limits.max_line_bytes + 1:  # + 1: the line may end in "\r\n"
            skipping, unfinished = unfinished[:REJECTED_PREFIX_BYTES], b""


def _one_oversized(prefix: bytes) -> tuple[pa.Array, pa.Array]:
    return pa.array([prefix], pa.large_binary()), pa.array([True])


def _flag_oversized(lines: pa.Array, limits: LandingLimits) -> tuple[pa.Array, pa.Array]:
    oversized = pc.greater(pc.binary_length(lines), limits.max_line_bytes)
    if not pc.any(oversized).as_py():
        return lines, oversized
    return pc.if_else(oversized, pc.binary_slice(lines, 0, REJECTED_PREFIX_BYTES), lines), oversized


# -- validation, generated from the event contract -------------------------

_KIND_JSON_TYPES = {
    ev.STRING: ("VARCHAR",),
    ev.BOOL: ("BOOLEAN",),
    ev.INT: ("BIGINT", "UBIGINT"),
    ev.NUMBER: ("BIGINT", "UBIGINT", "DOUBLE"),
    ev.TIMESTAMP: ("VARCHAR",),
    ev.DATE: ("VARCHAR",),
    ev.STRING_LIST: ("ARRAY",),
    ev.STRING_MAP: ("OBJECT",),
}
_KIND_WORDS = {
    ev.STRING: "a string",
    ev.BOOL: "true or false",
    ev.INT: "an integer",
    ev.NUMBER: "a number",
    ev.TIMESTAMP: "an ISO-8601 timestamp",
    ev.DATE: "an ISO-8601 date",
    ev.STRING_LIST: "a list of strings",
    ev.STRING_MAP: "an object of string values",
}

PAYLOAD_FIELD_NAMES: tuple[str, ...] = tuple(
    sorted({field.name for fields in ev.EVENT_TYPES.values() for field in fields})
)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _in_range_timestamp(value_sql: str) -> str:
    return (
        f"coalesce(try_cast({value_sql} AS TIMESTAMPTZ) "
        f"BETWEEN TIMESTAMPTZ '{EARLIEST_TIMESTAMP}' AND TIMESTAMPTZ '{LATEST_TIMESTAMP}', false)"
    )


def _field_checks(field: ev.Field) -> list[tuple[str, str]]:
    """(condition that means the field is bad, reason) pairs, in check order.

    ``p`` is the payload parsed once into a struct of one small JSON value per
    known field (null when absent or JSON null, which count as missing)."""
    value_json = f'p."{field.name}"'
    json_type = f"json_type({value_json})"
    value = f"json_extract_string({value_json}, '$')"
    checks: list[tuple[str, str]] = []
    if field.required:
        checks.append((f"{value_json} IS NULL", f"payload.{field.name} is required"))
    present = f"{value_json} IS NOT NULL"
    allowed_types = ", ".join(_sql_str(t) for t in _KIND_JSON_TYPES[field.kind])
    must_be = f"payload.{field.name} must be {_KIND_WORDS[field.kind]}"
    checks.append((f"{present} AND {json_type} NOT IN ({allowed_types})", must_be))
    if field.kind in (ev.TIMESTAMP, ev.DATE):
        # One cast on the common path; which reason applies is worked out
        # only for the rare bad value.
        checks.append((
            f"{present} AND NOT {_in_range_timestamp(value)}",
            f"CASE WHEN try_cast({value} AS TIMESTAMPTZ) IS NULL THEN {_sql_str(must_be)} "
            f"ELSE {_sql_str(f'payload.{field.name} must be between {EARLIEST_TIMESTAMP} and {LATEST_TIMESTAMP}')} END",
        ))
    if field.kind == ev.STRING_LIST:
        checks.append(
            (f"{present} AND len(list_filter(json_type({value_json}, '$[*]'), lambda t: t <> 'VARCHAR')) > 0",
             must_be)
        )
    if field.kind == ev.STRING_MAP:
        checks.append(
            (f"{present} AND len(list_filter(json_type({value_json}, '$.*'), lambda t: t <> 'VARCHAR')) > 0",
             must_be)
        )
    if field.allowed:
        allowed = ", ".join(_sql_str(a) for a in field.allowed)
        checks.append((f"{present} AND {value} NOT IN ({allowed})", f"payload.{field.name} must be one of: {', '.join(field.allowed)}"))
    if field.minimum is not None:
        checks.append((f"{present} AND try_cast({value} AS DOUBLE) < {field.minimum}", f"payload.{field.name} must be >= {field.minimum:g}"))
    if field.maximum is not None:
        checks.append((f"{present} AND try_cast({value} AS DOUBLE) > {field.maximum}", f"payload.{field.name} must be <= {field.maximum:g}"))
    return checks


def _payload_reason_sql() -> str:
    branches = []
    for event_type, fields in ev.EVENT_TYPES.items():
        checks = [check for field in fields for check in _field_checks(field)]
        inner = " ".join(
            f"WHEN {cond} THEN {reason if reason.startswith('CASE ') else _sql_str(reason)}" for cond, reason in checks
        )
        branches.append(f"WHEN event_type = {_sql_str(event_type)} THEN CASE {inner} END")
    return "CASE " + " ".join(branches) + " END"


def _struct_of_json(names) -> str:
    """A json_transform structure that parses an object once into one JSON value per name."""
    return _sql_str("{" + ", ".join(f'"{name}": "JSON"' for name in names) + "}")


def _validation_sql() -> str:
    """Each line is parsed once as a whole and once more for its payload
    (``json_transform`` into structs of small JSON values); every check then
    looks at those small values, not at the line again."""
    known_types = ", ".join(_sql_str(t) for t in ev.EVENT_TYPES)
    return f"""
    WITH decoded AS (
        SELECT file, line_number, raw, oversized_reason, try(decode(raw)) AS line FROM file_lines
    ), parsed AS (
        SELECT *, try_cast(line AS JSON) AS doc,
            -- A valid JSON text is an object exactly when it starts with a brace.
            starts_with(ltrim(line, e' \t\r\n'), '{{') AS is_object
        FROM decoded
    ), envelope AS (
        SELECT *,
            CASE WHEN is_object THEN json_transform(doc, {_struct_of_json(ev.ENVELOPE_FIELDS)}) END AS env
        FROM parsed
    ), fields AS (
        SELECT *,
            json_type(env.event_id) AS event_id_type,
            json_extract_string(env.event_id, '$') AS event_id,
            json_type(env.event_type) AS event_type_type,
            json_extract_string(env.event_type, '$') AS event_type,
            json_type(env.occurred_at) AS occurred_at_type,
            json_extract_string(env.occurred_at, '$') AS occurred_at_text,
            json_type(env.payload) AS payload_type,
            env.payload AS payload,
            CASE WHEN json_type(env.payload) = 'OBJECT'
                THEN json_transform(env.payload, {_struct_of_json(PAYLOAD_FIELD_NAMES)}) END AS p
        FROM envelope
    )
    SELECT file, line_number, raw, line, event_id, event_type, payload,
        try_cast(occurred_at_text AS TIMESTAMPTZ) AS occurred_at,
        CASE
            WHEN oversized_reason IS NOT NULL THEN oversized_reason
            WHEN line IS NULL THEN 'line is not valid UTF-8'
            WHEN trim(line) = '' THEN 'empty line'
            WHEN doc IS NULL THEN 'not valid JSON'
            WHEN NOT is_object THEN 'not a JSON object'
            WHEN event_id_type IS NULL THEN 'event_id is required'
            WHEN event_id_type <> 'VARCHAR' OR event_id = '' THEN 'event_id must be a non-empty string'
            WHEN event_type_type IS NULL THEN 'event_type is required'
            WHEN event_type_type <> 'VARCHAR' THEN 'event_type must be a string'
            WHEN event_type NOT IN ({known_types}) THEN 'unknown event_type: ' || left(event_type, 100)
            WHEN occurred_at_type IS NULL THEN 'occurred_at is required'
            WHEN occurred_at_type <> 'VARCHAR' OR try_cast(occurred_at_text AS TIMESTAMPTZ) IS NULL
                THEN 'occurred_at must be an ISO-8601 timestamp'
            WHEN NOT {_in_range_timestamp('occurred_at_text')}
                THEN 'occurred_at must be between {EARLIEST_TIMESTAMP} and {LATEST_TIMESTAMP}'
            WHEN payload_type IS NULL THEN 'payload is required'
            WHEN payload_type <> 'OBJECT' THEN 'payload must be a JSON object'
            ELSE {_payload_reason_sql()}
        END AS reason
    FROM fields
    """


VALIDATION_SQL = _validation_sql()


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
    con.execute("BEGIN TRANSACTION")
    try:
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
        con.execute("INSERT INTO raw.history_refresh_queue SELECT event_id FROM affected_event_ids")
        # Its rejections and file list go to the lake at the next publication.
        con.execute("INSERT INTO publication.pending_days VALUES ('landing', ?)", [day])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
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
    except (FileRejected, OSError, EOFError, zlib.error) as error:
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
    con.register("file_lines", file_lines)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE validated_lines AS {VALIDATION_SQL}")
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
            SELECT ?, file, line_number, coalesce(line, CAST(raw AS VARCHAR)), reason
            FROM validated_lines WHERE reason IS NOT NULL
            """,
            [day],
        )
        con.execute("DROP TABLE validated_lines")
    finally:
        try:
            con.unregister("file_lines")
        except duckdb.Error:
            pass  # the transaction is already aborted; the rollback cleans up


def _mark_duplicates(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        UPDATE raw.events AS e SET is_duplicate = ranked.copy_number > 1
        FROM (
            SELECT event_id, landing_date, file, line_number,
                row_number() OVER (PARTITION BY event_id ORDER BY landing_date, file, line_number) AS copy_number
            FROM raw.events
            WHERE event_id IN (SELECT event_id FROM affected_event_ids)
        ) AS ranked
        WHERE e.event_id = ranked.event_id AND e.landing_date = ranked.landing_date
          AND e.file = ranked.file AND e.line_number = ranked.line_number
          AND e.is_duplicate <> (ranked.copy_number > 1)
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
