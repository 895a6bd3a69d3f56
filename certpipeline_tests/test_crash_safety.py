"""A pipeline killed with SIGKILL at any point loses and duplicates nothing:
re-running gives exactly the warehouse a clean run gives."""

import datetime as dt
import os
import signal
import subprocess
from collections import Counter
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from certpipeline import carried_state, lake
from certpipeline.defs.resources import WarehouseResource
from certpipeline.faults import POINTS
from certpipeline.generate import generate_landing
from certpipeline.reports import snapshots
from certpipeline.state import CARRIED_FRAMES
from certpipeline_tests.conftest import admin_and_largest_batch, contents

LAST_DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DAYS = [LAST_DAY - dt.timedelta(days=1), LAST_DAY]
# Columns that record when something happened, not what.
# token: the carried state's files are named at random; their rows are compared instead.
VOLATILE_COLUMNS = {"ingested_at", "requested_at", "completed_at", "lease_expires_at", "token"}


def cli(data_dir: Path, *args, crash_at: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home")}
    env.pop("CERTPIPELINE_CRASH_AT", None)
    if crash_at:
        env["CERTPIPELINE_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "certpipeline.cli", *args], env=env, capture_output=True,
                          text=True, input=stdin, timeout=600)


def run_days(data_dir: Path, crash_at: str | None = None) -> subprocess.CompletedProcess:
    return cli(data_dir, "run", "--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat(), crash_at=crash_at)


def run_statuses(data_dir: Path) -> dict[str, int]:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        return dict(Counter(run.status.value for run in instance.get_runs()))


def database_contents(path: Path) -> dict[str, list[tuple]]:
    """The working database's rows, and its report snapshot files' as ``main.<table>``."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = contents(con, con.sql("SELECT current_database()").fetchall()[0][0], VOLATILE_COLUMNS)
        snapshots.attach_views(con)
        [(token,)] = con.execute("SELECT token FROM carried.saved").fetchall()
        carried = {f"carried files: {name}": pl.read_ipc(path.parent / carried_state.FOLDER_NAME / token / f"{name}.arrow")
                   for name in CARRIED_FRAMES}
        return rows | contents(con, snapshots.FOLDER_NAME, VOLATILE_COLUMNS) | {
            name: frame.sort(frame.columns, nulls_last=True).rows() for name, frame in carried.items()}
    finally:
        con.close()


def warehouse_contents(data_dir: Path) -> dict[str, list[tuple]]:
    with lake.reader(WarehouseResource(data_dir=str(data_dir)).lake) as con:
        return contents(con, lake.ALIAS, VOLATILE_COLUMNS)


@pytest.fixture(scope="module")
def landing_source(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("landing_source")
    generate_landing(source, learners=400, days=len(DAYS), seed=11, end_date=LAST_DAY)
    return source


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, landing_source) -> Path:
    data_dir = tmp_path_factory.mktemp("clean")
    os.symlink(landing_source / "landing", data_dir / "landing")
    result = run_days(data_dir)
    assert result.returncode == 0, result.stderr
    return data_dir


@pytest.mark.slow
@pytest.mark.parametrize("point", [p for p in POINTS if not p.startswith("request.")])
def test_killed_run_then_rerun_equals_a_clean_run(tmp_path, landing_source, clean_run, point):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    os.symlink(landing_source / "landing", data_dir / "landing")
    crashed = run_days(data_dir, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = run_days(data_dir)
    assert rerun.returncode == 0, rerun.stderr
    # The killed run held the duckdb_work pool slot; the rerun marked it failed
    # and freed the slot instead of waiting on it for ever.
    assert "was abandoned" in rerun.stderr and "marked failed" in rerun.stderr
    statuses = run_statuses(data_dir)
    assert statuses["FAILURE"] == 1 and set(statuses) == {"FAILURE", "SUCCESS"}, statuses
    assert database_contents(data_dir / "pipeline" / "work.duckdb") == database_contents(
        clean_run / "pipeline" / "work.duckdb")
    assert warehouse_contents(data_dir) == warehouse_contents(clean_run)


def run_and_file_a_request(data_dir: Path, landing_source: Path) -> tuple[str, str]:
    """Run the days, then file a course_progress_exhaust of the largest batch as
    an admin; returns (batch, request id)."""
    data_dir.mkdir()
    os.symlink(landing_source / "landing", data_dir / "landing")
    assert run_days(data_dir).returncode == 0
    admin, batch = admin_and_largest_batch(data_dir)
    filed = cli(data_dir, "request", "course_progress_exhaust", "--batch", batch, "--by", admin)
    assert filed.returncode == 0, filed.stderr
    request_id = filed.stdout.strip()
    return batch, request_id


@pytest.mark.slow
def test_request_killed_mid_production_is_finished_once_on_the_next_pass(tmp_path, landing_source):
    data_dir = tmp_path / "data"
    batch, request_id = run_and_file_a_request(data_dir, landing_source)

    crashed = cli(data_dir, "process-requests", crash_at="request.file_written")
    assert crashed.returncode == -signal.SIGKILL
    listed = cli(data_dir, "requests", "--batch", batch)
    assert f"{request_id}  Pending" in listed.stdout

    finished = cli(data_dir, "process-requests")
    assert finished.returncode == 0, finished.stderr
    assert f"{request_id}  Success" in finished.stdout
    files = sorted(p.name for p in (data_dir / "exhausts").rglob("*") if p.is_file())
    assert len(files) == 1 and request_id in files[0], files
    again = cli(data_dir, "process-requests")
    assert again.stdout.strip() == "no waiting requests"


def request_attempts(data_dir: Path, request_id: str) -> tuple:
    con = duckdb.connect(str(data_dir / "pipeline" / "requests.duckdb"), read_only=True)
    try:
        return con.execute("SELECT status, attempts, status_reason FROM ops.report_requests WHERE request_id = ?",
                           [request_id]).fetchall()[0]
    finally:
        con.close()


@pytest.mark.slow
def test_kills_spend_no_attempt_and_real_errors_still_get_three(tmp_path, landing_source):
    data_dir = tmp_path / "data"
    batch, request_id = run_and_file_a_request(data_dir, landing_source)
    for _ in range(3):
        crashed = cli(data_dir, "process-requests", crash_at="request.file_written")
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert request_attempts(data_dir, request_id) == ("Pending", 0, None)
    # Now a real error on every pass: the report folder is a file.
    folder = data_dir / "exhausts" / "course_progress_exhaust"
    for produced in folder.iterdir():
        produced.unlink()
    folder.rmdir()
    folder.write_text("in the way")
    for attempt in (1, 2, 3):
        passed = cli(data_dir, "process-requests")
        assert passed.returncode == 0, passed.stderr
        status, attempts, reason = request_attempts(data_dir, request_id)
        assert attempts == attempt
        if attempt < 3:
            assert status == "Pending"
            assert reason.startswith(f"attempt {attempt} of 3 failed, retried on the next pass: FileExistsError")
        else:
            assert status == "Failure"
            assert reason.startswith("FileExistsError")
    assert cli(data_dir, "process-requests").stdout.strip() == "no waiting requests"
