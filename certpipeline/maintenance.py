"""Keeping the lake small: every publication adds a few Parquet files and a
snapshot, so a year of nights would leave thousands of small files. Compaction
merges them, old snapshots expire (time travel reaches back
``KEEP_SNAPSHOTS``), and files no snapshot needs any more are deleted once no
reader can still be on them (``KEEP_UNUSED_FILES``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from certpipeline.lake import ALIAS, LakeSettings, attach, with_retries

KEEP_SNAPSHOTS = dt.timedelta(days=30)
# An analyst's transaction older than this may lose files it still reads.
KEEP_UNUSED_FILES = dt.timedelta(days=1)


@dataclass(frozen=True)
class Maintenance:
    data_files_before: int
    data_files_after: int
    snapshots_expired: int
    files_deleted: int


def _count_files(con: duckdb.DuckDBPyConnection) -> int:
    """Data and delete files the current snapshot reads."""
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [ALIAS]).fetchall()
    return sum(
        con.execute(f"SELECT count(*) + count(delete_file) FROM ducklake_list_files('{ALIAS}', ?, schema => ?)",
                    [table, schema]).fetchone()[0]
        for schema, table in tables
    )


def maintain(settings: LakeSettings, keep_snapshots: dt.timedelta = KEEP_SNAPSHOTS,
             keep_unused_files: dt.timedelta = KEEP_UNUSED_FILES) -> Maintenance:
    """Flush inlined rows, merge small files, rewrite files with many deleted
    rows, expire old snapshots and delete the files nobody can read any more."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        attach(con, settings, read_only=False)
        before = _count_files(con)

        def expire() -> int:
            cutoff = dt.datetime.now(dt.timezone.utc) - keep_snapshots
            return len(con.execute(f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => ?)", [cutoff]).fetchall())

        # The order DuckLake's own CHECKPOINT uses: inlined rows into files,
        # old snapshots out (so their files no longer pin the merge), files
        # with deleted rows rewritten, small neighbours merged; then the
        # snapshots that only the pre-merge files served expire too.
        with_retries(lambda: con.execute(f"CALL ducklake_flush_inlined_data('{ALIAS}')"))
        expired = with_retries(expire)
        with_retries(lambda: con.execute(f"CALL ducklake_rewrite_data_files('{ALIAS}', delete_threshold => 0)"))
        with_retries(lambda: con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')"))
        expired += with_retries(expire)
        deleted = with_retries(lambda: len(con.execute(
            f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => ?)",
            [dt.datetime.now(dt.timezone.utc) - keep_unused_files]).fetchall()))
        return Maintenance(data_files_before=before, data_files_after=_count_files(con),
                           snapshots_expired=expired, files_deleted=deleted)
    finally:
        con.close()


def files_on_disk(settings: LakeSettings) -> int:
    return sum(1 for path in Path(settings.data_path).rglob("*") if path.is_file())
