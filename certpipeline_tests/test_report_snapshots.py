"""The working report snapshots: one Parquet file per table and report date
beside the working database, written whole, typed as the catalog says."""

from __future__ import annotations

import datetime as dt
import stat

import polars as pl

from certpipeline import pipeline
from certpipeline.reports import snapshots, tables

DAY = dt.date(2026, 10, 20)


def test_a_day_is_written_as_one_private_file_per_table_and_read_back_typed(landing, warehouse):
    landing.user("2026-10-20", "u-1", name="Ana", email="ana@example.org")
    landing.course("2026-10-20", "c-1")
    landing.certificate("2026-10-20", "k-1")
    landing.session("2026-10-20", "s-1", "c-1", "k-1")
    landing.enroll("2026-10-20", "n-1", "u-1", "s-1")
    folder = warehouse.paths.pipeline / "reports"
    with warehouse.work() as con:
        pipeline.ingest_landing_day(con, warehouse.paths, DAY)
        pipeline.refresh_entity_history(con)
        # A writer killed mid-file left this; writing the day again removes it.
        (folder / "path_certificate_learners").mkdir(parents=True)
        stale = folder / "path_certificate_learners" / f".{DAY}.k1x2y3.tmp"
        stale.write_bytes(b"PAR1 cut short")
        pipeline.build_report_snapshots(con, DAY)

        assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                      if path.is_file()) == sorted(f"{name}/{DAY}.parquet" for name in tables.REPORT_BUILDERS)
        assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in folder.rglob("*.parquet"))
        assert snapshots.days(con) == [DAY]
        assert con.execute(snapshots.day_sql(con, "path_certificate_learners", DAY)).fetchall() == [
            ("k-1", "u-1", "Ana", "ana@example.org", "Not obtained", None, None, DAY)]
        typed = con.sql(snapshots.day_sql(con, "path_certificate_stats", DAY))
        assert dict(zip(typed.columns, [str(t) for t in typed.types], strict=True)) == {
            "certificate_id": "VARCHAR", "title": "VARCHAR", "owner_group": "VARCHAR",
            "validity_period_months": "INTEGER", "certified_learners": "BIGINT", "enrolled_learners": "BIGINT",
            "associated_paths": "BIGINT", "report_date": "DATE"}
        assert con.execute("SELECT what, day FROM publication.pending_days WHERE what = 'reports'").fetchall() == [
            ("reports", DAY)]

        # A day with one table's file missing is not a snapshot day (a new lake is not given it).
        (folder / "course_batch_dashboard" / f"{DAY}.parquet").unlink()
        assert snapshots.days(con) == []
        assert pl.read_parquet(folder / "certificate_type_totals" / f"{DAY}.parquet").columns[-1] == "report_date"
