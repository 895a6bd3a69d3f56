"""The certpipeline command line, end to end in subprocesses."""

import csv
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import duckdb
import pytest

from certpipeline import lake
from certpipeline.defs.requests import RANGE_END_TAG, RANGE_START_TAG
from certpipeline.reports import snapshots
from certpipeline.reports.tables import REPORT_BUILDERS

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def cli(tmp_path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-m", "certpipeline.cli", *args], env=env, input=stdin, capture_output=True, text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_generate_then_run_builds_the_warehouse(tmp_path):
    first = YESTERDAY - dt.timedelta(days=2)
    generated = cli(tmp_path, "generate", "--learners", "300", "--days", "3", "--seed", "7",
                    "--end-date", YESTERDAY.isoformat())
    assert generated.returncode == 0, generated.stderr
    assert "generate: learners 300/300" in generated.stderr
    ran = cli(tmp_path, "run", "--from", first.isoformat(), "--to", YESTERDAY.isoformat())
    assert ran.returncode == 0, ran.stderr
    assert f"run: [3 day(s)] {first}..{YESTERDAY} done" in ran.stderr
    summary = ran.stdout.splitlines()
    assert summary[0].split() == ["day", "files", "read", "accepted", "duplicates", "rejected", "unreadable"]
    for line in summary[1:4]:
        day, files, read, accepted, duplicates, rejected, unreadable = line.replace(",", "").split()
        assert unreadable == "0"
        assert int(read) == int(accepted) + int(duplicates) + int(rejected) > 0
    # An analyst, in another directory, opens the warehouse with the DuckDB CLI
    # and exactly the statements `certpipeline warehouse-sql` prints.
    opening = cli(tmp_path, "warehouse-sql")
    assert opening.returncode == 0, opening.stderr
    assert opening.stdout.strip().splitlines()[-1] == "USE warehouse;"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    every_row = "SELECT * FROM reports.path_certificate_learners ORDER BY ALL"
    analyst = subprocess.run(
        [str(Path(sys.executable).parent / "duckdb"), "-csv", "-noheader", "-nullvalue", "", "-cmd", opening.stdout, "-c", every_row],
        cwd=elsewhere, capture_output=True, text=True, timeout=600,
    )
    assert analyst.returncode == 0, analyst.stderr
    # The same rows the working database computed, day by day.
    work = duckdb.connect(str(tmp_path / "data" / "pipeline" / "work.duckdb"), read_only=True)
    try:
        snapshots.attach_views(work)
        expected = work.sql(every_row).fetchall()
        days = work.sql("SELECT DISTINCT report_date FROM reports.path_certificate_learners ORDER BY 1").fetchall()
    finally:
        work.close()
    assert [d for (d,) in days] == [first, first + dt.timedelta(days=1), YESTERDAY]
    assert len(expected) > 0
    assert list(csv.reader(io.StringIO(analyst.stdout))) == [
        ["" if value is None else str(value) for value in row] for row in expected
    ]
    # One run over the range, recorded in the Dagster instance the UI reads,
    # which shows every day of the range materialized.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as instance:
        runs = instance.get_runs()
        materialized = instance.get_materialized_partitions(dg.AssetKey(["reports", "course_batch_dashboard"]))
    assert [(run.job_name, run.tags[RANGE_START_TAG], run.tags[RANGE_END_TAG], run.status.value) for run in runs] == [
        ("nightly_job", first.isoformat(), YESTERDAY.isoformat(), "SUCCESS")]
    assert sorted(materialized) == [day.isoformat() for day in (first, first + dt.timedelta(days=1), YESTERDAY)]

    # Re-running the first day later computes the snapshot the range run did:
    # both read every landing day of the range (late arrivals included).
    range_snapshot = report_snapshot(tmp_path, first)
    again = cli(tmp_path, "run", "--date", first.isoformat())
    assert again.returncode == 0, again.stderr
    assert report_snapshot(tmp_path, first) == range_snapshot
    assert sum(len(rows) for rows in range_snapshot.values()) > 0


def report_snapshot(tmp_path, day: dt.date) -> dict[str, list[tuple]]:
    with lake.reader(lake.LakeSettings.under(tmp_path / "data")) as analyst:
        return {name: analyst.execute(f"SELECT * EXCLUDE (report_date) FROM reports.{name} WHERE report_date = ? "
                                      "ORDER BY ALL", [day]).fetchall() for name in REPORT_BUILDERS}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--date", "24/11/2026"], "not a date YYYY-MM-DD: '24/11/2026'"),
        (["run", "--from", "2026-11-20"], "--from needs --to"),
        (["run", "--from", "2026-11-20", "--to", "2026-11-19"], "--to 2026-11-19 is before --from 2026-11-20"),
        (["run", "--date", "2026-11-20"], "no landing folder for 2026-11-20"),
        (["generate", "--learners", "0"], "must be at least 1: 0"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["request", "path_certificate_stats"], "the following arguments are required: --by"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_non_zero(tmp_path, args, message):
    result = cli(tmp_path, *args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("command", ["generate", "run", "request", "requests", "process-requests", "serve", "tokens",
                                     "doctor", "dev"])
def test_every_command_has_help(tmp_path, command):
    result = cli(tmp_path, command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: certpipeline {command}")
