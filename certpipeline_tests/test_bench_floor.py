"""The benchmark's SQL report floor (bench/report_floor.sql) and its end-to-end
floor (landing files to report tables, bench/floor.py) give the same rows as
the pipeline, on small generated data.

bench/run.py times that SQL against the pipeline's report step; a ratio only
means something if both compute the same thing. The floor is an independent
statement of the report rules (contract sections 3 and 4) over
``state.*_history``, so this is also a cross-check of the Polars transforms.

A snapshot is compared right after its nightly run: a report for a past day
made again later includes late arrivals (contract section 3), so the pipeline's
stored snapshot of day D equals the floor only while no later day has landed.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import duckdb
import pytest

from certpipeline.generate import generate_landing
from certpipeline.reports import snapshots

from certpipeline_tests.conftest import run_nightly
from certpipeline_tests.test_doctor import cli

BENCH_FLOOR = Path(__file__).resolve().parent.parent / "bench" / "floor.py"
END_DATE = dt.date(2025, 6, 30)
DAYS = 5


def _load_floor():
    spec = importlib.util.spec_from_file_location("bench_floor", BENCH_FLOOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assert_same_rows(floor, con, day):
    computed = floor.floor_reports(con, day)
    for table in floor.REPORT_TABLES:
        expected = floor.pipeline_rows(con, table, day)
        got = computed[table]
        assert expected, f"reports.{table} has no rows for {day}: the data does not exercise it"
        if got != expected:
            only_floor = sorted(set(got) - set(expected), key=repr)[:5]
            only_pipeline = sorted(set(expected) - set(got), key=repr)[:5]
            pytest.fail(
                f"reports.{table} for {day}: floor {len(got)} rows, pipeline {len(expected)} rows\n"
                f"  only in floor: {only_floor}\n  only in pipeline: {only_pipeline}"
            )


@pytest.mark.slow
def test_report_floor_gives_the_pipelines_rows(data_dir, warehouse, instance):
    floor = _load_floor()
    generate_landing(data_dir, learners=1500, days=DAYS, seed=3, end_date=END_DATE)
    days = [END_DATE - dt.timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    middle, last = days[DAYS // 2], days[-1]
    for day in days:
        result = run_nightly(warehouse, day, instance)
        assert result.success
        if day in (middle, last):
            with warehouse.work() as con:
                snapshots.attach_views(con)
                _assert_same_rows(floor, con, day)
                con.execute(f"DROP SCHEMA {floor.DEFAULT_SCHEMA} CASCADE")


def test_exhaust_floor_neutralizes_cells_by_the_pipelines_rule():
    """The exhaust floor repeats report_files' rule in SQL; the same text must come out."""
    import duckdb
    import polars as pl

    from certpipeline.report_files import FORMULA_TRIGGER, neutralize_formulas

    floor = _load_floor()
    assert floor._FORMULA_TRIGGER == FORMULA_TRIGGER
    cells = ["=1+1", " +1", "\u00a0-1", "|cmd", "\r=1", "a\rb", "a\r\nb", "\n@x", "José", "a-b", None]
    frame = pl.DataFrame({"t": cells})
    got = [row[0] for row in duckdb.connect().execute(f"SELECT {floor._neutralized('t')} FROM frame").fetchall()]
    assert got == neutralize_formulas(frame)["t"].to_list()


@pytest.mark.slow
def test_end_to_end_floor_gives_the_pipelines_rows_for_every_day(tmp_path):
    """The end-to-end floor, from the landing folder alone, gives the rows of a
    backfill over the same days: every report table of every day, and (a
    stronger check of its validation and dedup) every entity's history."""
    floor = _load_floor()
    days = [END_DATE - dt.timedelta(days=2 - i) for i in range(3)]
    summary = generate_landing(tmp_path / "data", learners=300, days=3, seed=5, end_date=END_DATE)
    assert summary.malformed_lines and summary.duplicate_lines, "the data must exercise rejection and dedup"
    ran = cli(tmp_path, "run", "--from", days[0].isoformat(), "--to", days[-1].isoformat())
    assert ran.returncode == 0, ran.stderr

    con = duckdb.connect()
    floor.end_to_end_floor(con, tmp_path / "data" / "landing" / "events", days)
    con.execute(f"ATTACH '{tmp_path / 'data' / 'pipeline' / 'work.duckdb'}' AS work (READ_ONLY)")
    snapshots.attach_views(con, "work_reports", database="work")
    for entity in floor.E2E_ENTITIES:
        assert floor.e2e_history_rows(con, entity) == floor.e2e_history_rows(con, entity, state="work.state"), entity
    for day in days:
        for table in floor.REPORT_TABLES:
            expected = floor.e2e_pipeline_rows(con, table, day, reports="work_reports")
            assert expected, f"reports.{table} has no rows for {day}: the data does not exercise it"
            assert floor.e2e_floor_rows(con, table, day) == expected, f"reports.{table} for {day}"
