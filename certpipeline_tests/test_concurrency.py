"""Analysts and the nightly run coexist; two runs at once are serialized."""

import datetime as dt
import os
import subprocess
import sys
import threading

import duckdb
import pytest

from certpipeline.generate import generate_landing
from certpipeline_tests.conftest import run_nightly

D1, D2 = "2026-11-20", "2026-11-21"


def _world(landing):
    for day in (D1, D2):
        landing.user(day, f"u-{day}")
        landing.course(day, f"c-{day}")
        landing.certificate(day, f"k-{day}")
        landing.session(day, f"s-{day}", f"c-{day}", f"k-{day}")
        landing.enroll(day, f"n-{day}", f"u-{day}", f"s-{day}")


def test_an_analyst_holding_the_warehouse_open_does_not_block_the_run(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, D1, instance).success
    analyst = duckdb.connect(str(warehouse.paths.warehouse), read_only=True)
    try:
        before = analyst.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard").fetchall()
        assert run_nightly(warehouse, D2, instance).success
        # The open session still reads the complete run it opened.
        assert analyst.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard").fetchall() == before
        assert before == [(D1,)]
    finally:
        analyst.close()
    fresh = duckdb.connect(str(warehouse.paths.warehouse), read_only=True)
    try:
        assert fresh.sql("SELECT DISTINCT report_date::VARCHAR FROM reports.course_batch_dashboard ORDER BY 1").fetchall() == [
            (D1,), (D2,)]
    finally:
        fresh.close()


def test_analysts_only_ever_see_complete_runs(landing, warehouse, instance):
    _world(landing)
    assert run_nightly(warehouse, D1, instance).success
    seen, errors, stop = [], [], threading.Event()

    def analyst():
        while not stop.is_set():
            try:
                con = duckdb.connect(str(warehouse.paths.warehouse), read_only=True)
                try:
                    # Every report table of one published file holds the same snapshots.
                    dates = con.sql("""
                        SELECT (SELECT list(DISTINCT report_date ORDER BY report_date) FROM reports.course_batch_dashboard),
                               (SELECT list(DISTINCT report_date ORDER BY report_date) FROM reports.path_certificate_learners)
                    """).fetchall()[0]
                    seen.append(dates)
                finally:
                    con.close()
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    reader = threading.Thread(target=analyst)
    reader.start()
    try:
        for _ in range(3):
            assert run_nightly(warehouse, D2, instance).success
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen, "the analyst never managed to read"
    assert all(dashboard == learners for dashboard, learners in seen)
    assert {len(dashboard) for dashboard, _ in seen} <= {1, 2}


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
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        assert con.sql("SELECT DISTINCT report_date FROM reports.course_batch_dashboard ORDER BY 1").fetchall() == [
            (first,), (last,)]
        # One snapshot per day, however the two runs interleaved.
        assert con.sql("SELECT count(*) FROM (SELECT batch_id, report_date FROM reports.course_batch_dashboard "
                       "GROUP BY ALL HAVING count(*) > 1)").fetchall() == [(0,)]
    finally:
        con.close()
