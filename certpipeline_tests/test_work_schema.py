"""The working database's schema version and its additive migration: a data
directory made by an older version is upgraded on first open (added columns),
or refused in one line when a column changed or went away."""

from __future__ import annotations

import datetime as dt
import re
import shutil

import duckdb
import pytest

from certpipeline import pipeline, work_schema
from certpipeline.generate import generate_landing
from certpipeline.reports import snapshots
from certpipeline.reports.catalog import TABLES
from certpipeline_tests.conftest import query, run_nightly
from certpipeline_tests.test_cli import cli

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
EARLIER = YESTERDAY - dt.timedelta(days=1)
REBUILD = ("this version cannot migrate it, the working database needs a rebuild: "
           "re-run the landing days into a fresh data directory")


def landing_days(landing) -> None:
    for day, user in ((EARLIER, "u1"), (YESTERDAY, "u2")):
        landing.user(day, user, name=f"User {user}", email=f"{user}@example.org")


def make_older(warehouse, table: str, select: str) -> None:
    """Turn the current working database into one an older version made:
    ``table`` recreated from ``select`` (its rows kept), the version 'older'."""
    with warehouse.work() as con:
        con.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")
        con.execute("UPDATE meta.work_schema SET version = 'older'")


def columns(warehouse, table: str) -> list[tuple]:
    schema, name = table.split(".")
    return query(warehouse, "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = ? "
                 "AND table_name = ? ORDER BY column_index", [schema, name])


def test_an_added_column_is_migrated_on_first_open_and_a_run_then_succeeds(tmp_path, landing, warehouse):
    landing_days(landing)
    with warehouse.work() as con:
        pipeline.ingest_landing_day(con, warehouse.paths, EARLIER)
    make_older(warehouse, "raw.landing_files", "SELECT landing_date, file, lines_read FROM raw.landing_files")
    assert columns(warehouse, "raw.landing_files") == [
        ("landing_date", "DATE"), ("file", "VARCHAR"), ("lines_read", "BIGINT"),
        ("ingested_at", "TIMESTAMP WITH TIME ZONE")]
    assert query(warehouse, "SELECT * FROM raw.landing_files") == [(EARLIER, f"date={EARLIER}/part-00000.jsonl", 1, None)]
    assert query(warehouse, "SELECT version FROM meta.work_schema") == [(work_schema.WORK_SCHEMA_VERSION,)]

    ran = cli(tmp_path, "run", "--date", YESTERDAY.isoformat())
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[1].split() == [YESTERDAY.isoformat(), "1", "1", "1", "0", "0", "0"]
    assert query(warehouse, "SELECT landing_date, file, lines_read, ingested_at IS NULL FROM raw.landing_files "
                 "ORDER BY ALL") == [(EARLIER, f"date={EARLIER}/part-00000.jsonl", 1, True),
                                    (YESTERDAY, f"date={YESTERDAY}/part-00000.jsonl", 1, False)]
    assert query(warehouse, "SELECT user_id, name FROM state.user_history ORDER BY ALL") == [
        ("u1", "User u1"), ("u2", "User u2")]


def test_an_added_column_gets_its_default_in_existing_rows(warehouse):
    with warehouse.work() as con:
        con.execute("INSERT INTO raw.events VALUES ('e1', 'user_created', TIMESTAMPTZ '2026-01-01 00:00:00+00', "
                    "DATE '2026-01-01', 'part-00000.jsonl', 1, '{}', true)")
    make_older(warehouse, "raw.events", "SELECT * EXCLUDE (is_duplicate) FROM raw.events")
    assert query(warehouse, "SELECT event_id, is_duplicate FROM raw.events") == [("e1", False)]


def test_the_days_an_older_version_queued_for_the_history_refresh_count_as_unknown(landing, warehouse):
    """It queued an event with its counted copy's day only, and noted pending
    events without days; the publication needs every day the lake may keep
    the event's history on, so those days are forgotten (read as unknown)."""
    landing_days(landing)
    with warehouse.work() as con:
        pipeline.ingest_landing_day(con, warehouse.paths, EARLIER)
    make_older(warehouse, "publication.pending_events", "SELECT event_id FROM publication.pending_events")
    assert columns(warehouse, "publication.pending_events") == [("event_id", "VARCHAR"), ("landing_date", "DATE")]
    assert query(warehouse, "SELECT landing_date FROM raw.history_refresh_queue") == [(None,)]
    with warehouse.work() as con:
        pipeline.refresh_entity_history(con)
    assert query(warehouse, "SELECT user_id, landing_date FROM state.user_history") == [("u1", EARLIER)]
    assert query(warehouse, "SELECT landing_date FROM publication.pending_events") == [(None,)]


def test_report_tables_an_older_version_kept_move_to_snapshot_files_on_first_open(data_dir, warehouse, instance):
    generate_landing(data_dir, learners=80, days=2, seed=7, end_date=YESTERDAY)
    for day in (EARLIER, YESTERDAY):
        assert run_nightly(warehouse, day, instance).success
    every_row = {name: f"SELECT * FROM reports.{name} ORDER BY ALL" for name in TABLES}
    expected = {name: query(warehouse, sql) for name, sql in every_row.items()}
    assert all(len({row[-1] for row in rows}) == 2 for rows in expected.values()), "every table, both days"
    # What an older version left: the snapshots as tables of the working database, no files.
    with warehouse.work() as con:
        con.execute("CREATE SCHEMA reports")
        for name in TABLES:
            con.execute(f"CREATE TABLE reports.{name} AS {snapshots.every_day_sql(con, name)}")
        con.execute("UPDATE meta.work_schema SET version = 'older'")
    shutil.rmtree(data_dir / "pipeline" / "reports")

    with warehouse.work() as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'reports'").fetchone() == (0,)
        assert snapshots.days(con) == [EARLIER, YESTERDAY]
    assert {name: query(warehouse, sql) for name, sql in every_row.items()} == expected
    assert run_nightly(warehouse, YESTERDAY, instance).success


def test_the_same_version_opens_without_running_the_ddl(warehouse, monkeypatch):
    query(warehouse, "SELECT 1")

    def no_ddl():
        raise AssertionError("the DDL ran")

    monkeypatch.setattr(work_schema, "work_ddl", no_ddl)
    assert query(warehouse, "SELECT version FROM meta.work_schema") == [(work_schema.WORK_SCHEMA_VERSION,)]
    # The patch is the one prepare would call: another version does run it.
    with warehouse.work() as con:
        con.execute("UPDATE meta.work_schema SET version = 'older'")
    with pytest.raises(AssertionError, match="the DDL ran"):
        query(warehouse, "SELECT 1")


@pytest.mark.parametrize(("select", "problem"), [
    ("SELECT landing_date, file, lines_read::VARCHAR AS lines_read, ingested_at FROM raw.landing_files",
     "the working database's column raw.landing_files.lines_read is VARCHAR but this version needs BIGINT"),
    ("SELECT *, 'x' AS source FROM raw.landing_files",
     "the working database's column raw.landing_files.source is no longer in this version's schema"),
    ("SELECT landing_date, lines_read, ingested_at FROM raw.landing_files",
     "the working database's column raw.landing_files.file is new but comes before existing columns"),
    ("SELECT file, landing_date, lines_read, ingested_at FROM raw.landing_files",
     "the working database's column raw.landing_files.landing_date has moved"),
])
def test_a_changed_or_removed_column_is_refused_in_one_line(tmp_path, landing, warehouse, select, problem):
    landing_days(landing)
    query(warehouse, "SELECT 1")
    make_older(warehouse, "raw.landing_files", select)
    with pytest.raises(work_schema.WorkSchemaMismatch) as refused:
        query(warehouse, "SELECT 1")
    assert str(refused.value) == f"{problem}; {REBUILD}"

    ran = cli(tmp_path, "run", "--date", YESTERDAY.isoformat())
    assert ran.returncode == 1
    assert re.fullmatch(
        rf"run: \[1 day\(s\)\] {YESTERDAY} \.\.\.\ncertpipeline run: {YESTERDAY} failed \(run [0-9a-f-]+\): "
        rf"certpipeline\.work_schema\.WorkSchemaMismatch: {re.escape(problem)}; {REBUILD}; "
        r"see `certpipeline doctor`\n", ran.stderr)

    doctor = cli(tmp_path, "doctor")
    work = tmp_path / "data" / "pipeline" / "work.duckdb"
    expected = (f"PROBLEM  work database {work}: {problem}, which this version cannot migrate; delete it "
                f"(`rm -f {work} {work}.wal`) and re-run every landing day: "
                f"`certpipeline run --from {EARLIER} --to {YESTERDAY}`")
    assert expected in doctor.stdout.splitlines(), doctor.stdout
    # Refused in one transaction: the database is as the older version left it.
    with duckdb.connect(str(work), read_only=True) as con:
        assert con.sql("SELECT version FROM meta.work_schema").fetchall() == [("older",)]
