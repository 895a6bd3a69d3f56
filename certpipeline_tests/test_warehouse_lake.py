"""The published warehouse is a DuckLake: report rows stored by change,
served by date, whatever order the days are computed in."""

import datetime as dt
import sqlite3

import pytest

from certpipeline import ingestion, lake, maintenance, pipeline, publication, state
from certpipeline.definitions import defs
from certpipeline_tests.conftest import contents, published, query, run_nightly

LANDED = "2026-10-20"
ISSUED = dt.date(2026, 10, 25)
EXPIRES = dt.date(2026, 11, 25)  # one month of validity
# Report days around the award's life, computed out of order, one twice.
RUN_ORDER = ["2026-10-20", "2026-11-25", "2026-10-26", "2026-10-25", "2026-11-24", "2026-11-26", "2026-10-24",
             "2026-10-26"]


def _world(landing):
    landing.user(LANDED, "u-1", name="Ada", email="ada@example.com")
    landing.course(LANDED, "c-1")
    landing.certificate(LANDED, "k-1", validity_months=1)
    landing.session(LANDED, "s-1", "c-1", "k-1")
    landing.enroll(LANDED, "n-1", "u-1", "s-1")
    # Landed on the first day, issued five days later: counted from then on.
    landing.award(LANDED, "a-1", "u-1", "k-1", issued_at=f"{ISSUED}T10:00:00Z", enrollment_id="n-1")
    for day in RUN_ORDER:
        landing.folder(day)


def _learner_row(status, day):
    delivered = (ISSUED, EXPIRES) if status != "Not obtained" else (None, None)
    return ("k-1", "u-1", "Ada", "ada@example.com", status, *delivered, dt.date.fromisoformat(day))


EXPECTED_STATUS = {
    "2026-10-20": "Not obtained",
    "2026-10-24": "Not obtained",
    "2026-10-25": "Valid",  # expires 31 days later
    "2026-10-26": "Expiring soon",  # within 30 days
    "2026-11-24": "Expiring soon",
    "2026-11-25": "Expired",  # on the expiration date
    "2026-11-26": "Expired",
}


def test_each_report_date_serves_exactly_its_rows_and_unchanged_rows_are_stored_once(landing, warehouse, instance):
    _world(landing)
    for day in RUN_ORDER:
        assert run_nightly(warehouse, day, instance).success
    for day, status in EXPECTED_STATUS.items():
        assert published(warehouse, "SELECT * FROM reports.path_certificate_learners WHERE report_date = ?",
                         [dt.date.fromisoformat(day)]) == [_learner_row(status, day)], day
    assert published(warehouse, "SELECT count(*) FROM reports.path_certificate_learners WHERE report_date = ?",
                     [dt.date(2026, 10, 21)]) == [(0,)]  # never computed
    # One stored version per distinct row: the status moved three times.
    assert published(warehouse, "SELECT latest_status, valid_from::VARCHAR, valid_to::VARCHAR "
                                 "FROM report_versions.path_certificate_learners ORDER BY valid_from") == [
        ("Not obtained", "2026-10-20", "2026-10-25"),
        ("Valid", "2026-10-25", "2026-10-26"),
        ("Expiring soon", "2026-10-26", "2026-11-25"),
        ("Expired", "2026-11-25", None),
    ]
    assert published(warehouse, "SELECT count(*) FROM report_versions.course_batch_dashboard") == [(1,)]
    # Every report table, every day: the lake's view equals the working snapshots.
    for table in ("certificate_type_totals", "path_certificate_stats", "path_certificate_learners",
                  "learner_certificate_history", "course_batch_dashboard"):
        every_row = f"SELECT * FROM reports.{table} ORDER BY ALL"
        assert published(warehouse, every_row) == query(warehouse, every_row), table


def test_time_travel_reads_an_earlier_night(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, "2026-10-20", instance).success
    with lake.reader(warehouse.lake) as con:
        first_night = con.sql("SELECT max(snapshot_id) FROM ducklake_snapshots('warehouse')").fetchall()[0][0]
    assert run_nightly(warehouse, "2026-10-25", instance).success
    assert published(warehouse, "SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard "
                                f"AT (VERSION => {first_night})") == [("2026-10-20",)]
    assert published(warehouse, "SELECT count(*) FROM reports.course_batch_dashboard") == [(2,)]


def test_lake_files_are_readable_by_their_owner_only(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, "2026-10-20", instance).success
    root = warehouse.paths.warehouse
    assert (root.stat().st_mode & 0o777) == 0o700
    assert ((root / "data").stat().st_mode & 0o777) == 0o700
    assert ((root / "catalog.sqlite").stat().st_mode & 0o777) == 0o600


def test_maintenance_bounds_the_file_count_and_changes_no_row(landing, warehouse, instance):
    _world(landing)
    # More learners than DuckLake inlines in its catalog by default (10
    # rows), so each status change writes Parquet files; the per-learner
    # tables' rows stay inlined (``publication.INLINED_ROWS``).
    for n in range(2, 16):
        landing.user(LANDED, f"u-{n}")
        landing.enroll(LANDED, f"n-{n}", f"u-{n}", "s-1")
        landing.award(LANDED, f"a-{n}", f"u-{n}", "k-1", issued_at=f"{ISSUED}T10:00:00Z", enrollment_id=f"n-{n}")
    for day in RUN_ORDER:
        assert run_nightly(warehouse, day, instance).success
    with lake.reader(warehouse.lake) as con:
        before = contents(con, lake.ALIAS)
        tables = con.sql("SELECT count(*) FROM duckdb_tables() WHERE database_name = 'warehouse'").fetchall()[0][0]
    files_before = maintenance.files_on_disk(warehouse.lake)
    assert _compressions(warehouse) == {"ZSTD"}
    assert _inlined_rows(warehouse) > 0
    # Keep nothing old, so the bound shows at once (production keeps 30 days).
    done = maintenance.maintain(warehouse.lake, keep_snapshots=dt.timedelta(0), keep_unused_files=dt.timedelta(0))
    files_after = maintenance.files_on_disk(warehouse.lake)
    # At most one file per table, whatever the number of nights, and the
    # rows inlined in the catalog written out.
    assert files_after == done.data_files_after <= tables, (files_before, done)
    assert _inlined_rows(warehouse) == 0
    with lake.reader(warehouse.lake) as con:
        assert contents(con, lake.ALIAS) == before
    # The merged files keep the lake's compression.
    assert _compressions(warehouse) == {"ZSTD"}
    # The nightly job keeps publishing onto the compacted lake.
    assert run_nightly(warehouse, "2026-11-26", instance).success
    assert published(warehouse, "SELECT latest_status, count(*) FROM reports.path_certificate_learners "
                                "WHERE report_date = DATE '2026-11-26' GROUP BY ALL") == [("Expired", 15)]


def _inlined_rows(warehouse):
    """Rows (and deletes) the lake keeps in its catalog rather than in files."""
    with sqlite3.connect(warehouse.lake.sqlite_file) as catalog_db:
        inlined = [name for (name,) in catalog_db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ducklake_inlined_%' "
            "AND name <> 'ducklake_inlined_data_tables'")]
        count = sum(catalog_db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in inlined)
    catalog_db.close()
    return count


def _compressions(warehouse):
    """The compression codecs of every column chunk of the lake's data files
    (DuckLake writes its small delete files with snappy whatever the option)."""
    files = [str(p) for p in (warehouse.paths.warehouse / "data").rglob("*.parquet")
             if not p.name.endswith("-delete.parquet")]
    assert files
    with lake.reader(warehouse.lake) as con:
        return {row[0] for row in con.execute("SELECT DISTINCT compression FROM parquet_metadata(?)", [files]).fetchall()}


def test_maintenance_job_runs_from_the_definitions(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, LANDED, instance).success
    job = defs.resolve_job_def("lake_maintenance_job")
    result = job.execute_in_process(instance=instance, resources={"warehouse": warehouse})
    assert result.success
    [output] = [event for event in result.all_events if event.is_successful_output]
    metadata = output.step_output_data.metadata
    # Production retention keeps today's snapshots; the inlined rows are flushed and merged.
    assert metadata["snapshots_expired"].value == 0
    assert 0 < metadata["data_files_after"].value <= metadata["data_files_before"].value + 13


@pytest.mark.parametrize("queued_by", ["this version", "an older version"])
def test_an_events_history_is_published_once_when_its_counted_copy_moves_to_another_day(landing, warehouse, instance,
                                                                                         queued_by):
    """The lake keeps an event's history row on its counted copy's landing
    day. When a day is exported again without that copy, the row must move,
    even if a publication (a pass of requests, or a run killed between its
    steps) comes between the ingestion and the history refresh; also when an
    older version queued the refresh (its days are forgotten on upgrade)."""
    first, second = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
    upsert = {"user_id": "u2", "name": "B", "email": "b@x", "registered_at": "2025-01-01T00:00:00Z"}
    landing.user(first, "u1")
    landing.event(first, "user.upserted", upsert, event_id="dup-1")
    landing.event(second, "user.upserted", upsert, event_id="dup-1")
    for day in (first, second):
        assert run_nightly(warehouse, day.isoformat(), instance).success
    history = "SELECT user_id, event_id, landing_date FROM state.user_history ORDER BY ALL"
    assert published(warehouse, history) == [("u1", "e-1", first), ("u2", "dup-1", first)]

    # The first day exported again, empty: u1's only copy and dup-1's first are gone.
    (landing.folder(first) / "part-00000.jsonl").write_text("")
    with warehouse.work() as con:
        ingestion.ingest_day(con, warehouse.paths, first)
        pipeline.publish_warehouse(con, warehouse.get_warehouse())
        if queued_by == "an older version":
            con.execute("UPDATE raw.history_refresh_queue SET landing_date = NULL")  # what the upgrade does
        state.refresh_history(con)
        pipeline.publish_warehouse(con, warehouse.get_warehouse())
    assert published(warehouse, history) == query(warehouse, history) == [("u2", "dup-1", second)]


@pytest.mark.slow
def test_a_nights_few_closed_versions_of_a_per_learner_table_go_into_the_catalog(data_dir, warehouse, instance):
    """DuckLake writes a data file's deletes as one Parquet file holding every
    delete the file ever had: the lake keeps a night's deletes from the
    per-learner tables in its catalog instead, and maintenance flushes them."""
    from certpipeline.generate import generate_landing

    first, second = dt.date(2026, 11, 27), dt.date(2026, 11, 28)
    generate_landing(data_dir, learners=4000, days=2, seed=11, end_date=second)
    assert run_nightly(warehouse, first, instance).success
    # As in a lake an older version made: the publication sets what lacks.
    with sqlite3.connect(warehouse.lake.sqlite_file) as catalog_db:
        assert catalog_db.execute("DELETE FROM ducklake_metadata WHERE key = 'data_inlining_row_limit'").rowcount == 2
    catalog_db.close()
    assert run_nightly(warehouse, second, instance).success
    with lake.reader(warehouse.lake) as con:
        assert con.sql("SELECT option_name, value, scope, scope_entry FROM warehouse.options() "
                       "WHERE option_name IN ('parquet_compression', 'data_inlining_row_limit') ORDER BY ALL").fetchall() == [
            ("data_inlining_row_limit", "2500", "TABLE", "report_versions.learner_certificate_history"),
            ("data_inlining_row_limit", "2500", "TABLE", "report_versions.path_certificate_learners"),
            ("parquet_compression", "zstd", "GLOBAL", None),
        ]
        for table in ("path_certificate_learners", "learner_certificate_history"):
            first_rows, closed = con.sql(
                f"SELECT count(*) FILTER (valid_from = DATE '{first}'), count(*) FILTER (valid_to = DATE '{second}') "
                f"FROM report_versions.{table}").fetchall()[0]
            # The first night's versions are one Parquet file, and the second
            # closed some of them: each closing deleted the open version.
            assert first_rows > publication.INLINED_ROWS and 0 < closed <= publication.INLINED_ROWS, (table, first_rows, closed)
            files = con.execute("SELECT data_file, delete_file FROM ducklake_list_files('warehouse', ?, "
                                "schema => 'report_versions')", [table]).fetchall()
            assert files and all(delete_file is None for _, delete_file in files), (table, files)
            [table_id] = con.execute("SELECT table_id FROM __ducklake_metadata_warehouse.ducklake_table "
                                     "WHERE table_name = ? AND end_snapshot IS NULL", [table]).fetchone()
            assert con.sql(f"SELECT count(*) FROM __ducklake_metadata_warehouse.ducklake_inlined_delete_{table_id}"
                           ).fetchall() == [(closed,)], table
        before = contents(con, lake.ALIAS)
    maintenance.maintain(warehouse.lake, keep_snapshots=dt.timedelta(0), keep_unused_files=dt.timedelta(0))
    with lake.reader(warehouse.lake) as con:
        assert contents(con, lake.ALIAS) == before
        assert con.sql("SELECT count(*) FROM (FROM ducklake_list_files('warehouse', 'learner_certificate_history', "
                       "schema => 'report_versions')) WHERE delete_file IS NOT NULL").fetchall() == [(0,)]


@pytest.mark.slow
def test_a_range_run_publishes_every_days_snapshot_exactly_in_one_transaction(tmp_path):
    """A range run publishes all its days in one lake transaction, each day
    replacing versions that earlier days of the same transaction inserted
    (in Parquet files and inlined in the catalog). A delete by DuckLake row
    id lost rows there (up to 2,600 of a day's 9,320 at 10,000 learners);
    every report table of every day must equal the day's snapshot file."""
    from certpipeline.generate import generate_landing
    from certpipeline.reports import snapshots
    from certpipeline.reports.tables import REPORT_BUILDERS
    from certpipeline_tests.test_doctor import cli

    end = dt.date(2026, 11, 29)
    days = [end - dt.timedelta(days=n) for n in range(14, -1, -1)]
    generate_landing(tmp_path / "data", learners=3000, days=len(days), seed=5, end_date=end)
    ran = cli(tmp_path, "run", "--from", days[0].isoformat(), "--to", end.isoformat())
    assert ran.returncode == 0, ran.stderr
    with lake.reader(lake.LakeSettings.under(tmp_path / "data")) as con:
        assert con.sql("SELECT count(*) FROM ducklake_snapshots('warehouse') "
                       "WHERE changes['tables_inserted_into'] IS NOT NULL").fetchall() == [(1,)]
        for name in REPORT_BUILDERS:
            for day in days:
                snapshot_file = tmp_path / "data" / "pipeline" / snapshots.FOLDER_NAME / name / f"{day}.parquet"
                in_file = con.sql(f"SELECT * EXCLUDE (report_date) FROM read_parquet('{snapshot_file}') "
                                  "ORDER BY ALL").fetchall()
                assert in_file, (name, day)
                assert con.sql(f"SELECT * EXCLUDE (report_date) FROM reports.{name} "
                               f"WHERE report_date = DATE '{day}' ORDER BY ALL").fetchall() == in_file, (name, day)
