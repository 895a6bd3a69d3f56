"""A range of report days is computed day by day: what stays in memory for the
UI is each table's row count over the range and its first rows, not every
day's frames."""

import datetime as dt

from certpipeline import pipeline
from certpipeline.reports import snapshots, tables

DAYS = [dt.date(2026, 10, 20), dt.date(2026, 10, 21), dt.date(2026, 10, 22)]


def test_a_range_keeps_row_counts_and_first_rows_only(landing, warehouse):
    for n in range(1, 8):
        landing.user("2026-10-20", f"u-{n}")
    landing.course("2026-10-20", "c-1")
    landing.certificate("2026-10-20", "k-1")
    landing.session("2026-10-20", "s-1", "c-1", "k-1")
    for n in range(1, 8):
        landing.enroll("2026-10-21" if n > 4 else "2026-10-20", f"n-{n}", f"u-{n}", "s-1")
    for day in DAYS:
        landing.folder(day.isoformat())
    with warehouse.work() as con:
        pipeline.ingest_landing_days(con, warehouse.paths, DAYS)
        pipeline.refresh_entity_history(con)
        computed = pipeline.build_and_check_report_snapshots(con, DAYS, keep_rows=5)
        snapshots.attach_views(con)
        written = {name: con.execute(f"SELECT count(*) FROM reports.{name} WHERE report_date IN (?, ?, ?)",
                                     DAYS).fetchone()[0] for name in tables.REPORT_BUILDERS}
        first_day = con.execute("SELECT user_id FROM reports.path_certificate_learners WHERE report_date = ?",
                                [DAYS[0]]).fetchall()
    assert computed.row_counts == written
    # 4 learners enrolled on day 1, 7 on days 2 and 3.
    assert computed.row_counts["path_certificate_learners"] == 4 + 7 + 7
    first = computed.first_rows["path_certificate_learners"]
    assert first.height == 5
    # The first day's 4 rows, then the second day's first.
    assert sorted(first["user_id"].to_list()[:4]) == sorted(row[0] for row in first_day)
    assert first["report_date"].to_list() == [DAYS[0]] * 4 + [DAYS[1]]
    # The checks ran over the three days and found nothing wrong.
    assert computed.checks and all(outcome.passed for outcome in computed.checks)
