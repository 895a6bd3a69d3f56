"""Analysts and the nightly run coexist; two runs at once are serialized."""

import datetime as dt
import os
import stat
import subprocess
import sys
import threading

import duckdb
import pytest

from certpipeline.generate import generate_landing
from certpipeline.warehouse import WarehouseBusy, exclusive_lock
from certpipeline_tests.conftest import run_nightly

DAYS = ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23")
D1, D2 = DAYS[:2]


def _world(landing):
    # One new batch a day: the dashboard on day n has exactly n rows.
    for day in DAYS:
        landing.user(day, f"u-{day}")
        landing.course(day, f"c-{day}")
        landing.certificate(day, f"k-{day}")
        landing.session(day, f"s-{day}", f"c-{day}", f"k-{day}")
        landing.enroll(day, f"n-{day}", f"u-{day}", f"s-{day}")


def _analyst(warehouse):
    """A Python session opened with the statements `certpipeline warehouse-sql` prints."""
    con = duckdb.connect()
    con.execute("\n".join(warehouse.lake.statements(read_only=True)))
    return con


def test_an_analyst_holding_the_warehouse_open_does_not_block_the_run(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, D1, instance).success
    analyst = _analyst(warehouse)
    try:
        analyst.execute("BEGIN TRANSACTION")
        before = analyst.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard").fetchall()
        assert run_nightly(warehouse, D2, instance).success
        # An open transaction keeps reading the snapshot it started on.
        assert analyst.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard").fetchall() == before
        assert before == [(D1,)]
        analyst.execute("COMMIT")
        # The same session's next query sees the new night.
        assert analyst.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard ORDER BY 1").fetchall() == [
            (D1,), (D2,)]
    finally:
        analyst.close()


def test_a_session_held_open_across_three_runs_only_ever_sees_complete_nights(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, D1, instance).success
    seen, errors, stop = [], [], threading.Event()
    analyst = _analyst(warehouse)

    def observe() -> tuple:
        # One query, one snapshot: per report date, the dashboard's and
        # the learners' rows, which a complete night gives together.
        return analyst.sql("""
            SELECT list(report_date::VARCHAR ORDER BY report_date), list(batches ORDER BY report_date),
                   list(learners ORDER BY report_date)
            FROM (SELECT report_date, count(*) AS batches FROM reports.course_batch_dashboard GROUP BY ALL)
            FULL JOIN (SELECT report_date, count(*) AS learners FROM reports.path_certificate_learners
                       GROUP BY ALL) USING (report_date)
        """).fetchall()[0]

    def poll():
        while not stop.is_set():
            try:
                seen.append(observe())
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for day in DAYS[1:]:
            assert run_nightly(warehouse, day, instance).success
    finally:
        stop.set()
        reader.join()
    try:
        # The poller's last query may have started before the last commit;
        # the same session, asked once more, sees the last night.
        after_the_runs = observe()
    finally:
        analyst.close()
    assert errors == []
    assert seen, "the analyst never managed to read"
    complete = [(list(DAYS[:n]), list(range(1, n + 1)), list(range(1, n + 1))) for n in range(1, len(DAYS) + 1)]
    assert all(observation in complete for observation in seen), [o for o in seen if o not in complete][:3]
    assert after_the_runs == complete[-1]


@pytest.mark.slow
def test_two_cli_runs_at_once_are_serialized_and_both_succeed(tmp_path):
    last = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=1)
    data_dir = tmp_path / "data"
    generate_landing(data_dir, learners=300, days=2, seed=5, end_date=last)
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "certpipeline.cli", "run"]
    backfill = subprocess.Popen([*command, "--from", first.isoformat(), "--to", last.isoformat()], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    nightly = subprocess.Popen([*command, "--date", last.isoformat()], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for process in (backfill, nightly):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    con = duckdb.connect()
    try:
        con.execute(subprocess.run([*command[:-1], "warehouse-sql"], env=env, capture_output=True, text=True,
                                   check=True).stdout)
        assert con.sql("SELECT DISTINCT report_date FROM reports.course_batch_dashboard ORDER BY 1").fetchall() == [
            (first,), (last,)]
        # One snapshot per day, however the two runs interleaved.
        assert con.sql("SELECT count(*) FROM (SELECT batch_id, report_date FROM reports.course_batch_dashboard "
                       "GROUP BY ALL HAVING count(*) > 1)").fetchall() == [(0,)]
    finally:
        con.close()


# Holds the lock given as argument until a line arrives on stdin.
LOCK_HOLDER = """
import sys
from pathlib import Path
from certpipeline.warehouse import exclusive_lock
with exclusive_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_lock_held_by_another_process_makes_the_waiter_give_up_in_one_line_then_is_free_again(tmp_path):
    lock = tmp_path / "pipeline" / "work.lock"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(WarehouseBusy) as busy:
            with exclusive_lock(lock, timeout=0.5):
                pass
        assert str(busy.value) == f"{lock} is held by another certpipeline process; waited 0s"
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    # Released, not deleted: the next holder locks the same owner-only file.
    assert oct(stat.S_IMODE(lock.stat().st_mode)) == oct(0o600)
    inode = lock.stat().st_ino
    with exclusive_lock(lock, timeout=60):
        assert lock.stat().st_ino == inode
