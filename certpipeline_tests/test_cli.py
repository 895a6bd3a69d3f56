"""The certpipeline command line, end to end in subprocesses."""

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
from dagster._core.instance.ref import InstanceRef
import duckdb
import pytest

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
    assert f"run: [3/3] {YESTERDAY} done" in ran.stderr
    summary = ran.stdout.splitlines()
    assert summary[0].split() == ["day", "files", "read", "accepted", "duplicates", "rejected", "unreadable"]
    for line in summary[1:4]:
        day, files, read, accepted, duplicates, rejected, unreadable = line.replace(",", "").split()
        assert unreadable == "0"
        assert int(read) == int(accepted) + int(duplicates) + int(rejected) > 0
    analyst = duckdb.connect(str(tmp_path / "data" / "warehouse.duckdb"), read_only=True)
    try:
        days = analyst.sql(
            "SELECT DISTINCT report_date FROM reports.path_certificate_learners ORDER BY 1").fetchall()
        assert [d for (d,) in days] == [first, first + dt.timedelta(days=1), YESTERDAY]
        assert analyst.sql("SELECT count(*) FROM reports.course_batch_dashboard").fetchall()[0][0] > 0
    finally:
        analyst.close()
    # The runs are recorded in the Dagster instance the UI reads.
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(tmp_path / "home"))) as instance:
        runs = instance.get_runs()
    assert sorted((run.job_name, run.tags["dagster/partition"], run.status.value) for run in runs) == [
        ("nightly_job", day.isoformat(), "SUCCESS") for day in (first, first + dt.timedelta(days=1), YESTERDAY)
    ]


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
                                     "doctor"])
def test_every_command_has_help(tmp_path, command):
    result = cli(tmp_path, command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: certpipeline {command}")
