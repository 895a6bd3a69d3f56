"""Failures are one line on stderr and a non-zero exit, never a traceback
(contract section 7): bad passwords, an unreadable warehouse, a full disk,
Dagster's home deleted mid-run. A full disk leaves no partial copy behind
and the next pass publishes again."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certpipeline import cli, lake
from certpipeline.defs.resources import WarehouseResource
from certpipeline.generate import generate_landing
from certpipeline_tests.conftest import admin_and_largest_batch

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
REQUEST = ["request", "user_profile_exhaust", "--batch", "b-1", "--by", "u-1"]


def run_cli(data_dir: Path, *args, stdin: bytes | None = None, disk_full_at: str | None = None,
            script: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home")}
    env.pop("CERTPIPELINE_DISK_FULL_AT", None)
    if disk_full_at:
        env["CERTPIPELINE_DISK_FULL_AT"] = disk_full_at
    program = ["-c", script] if script else ["-m", "certpipeline.cli"]
    done = subprocess.run([sys.executable, *program, *args], env=env, input=stdin, capture_output=True,
                          timeout=900)
    done.stdout, done.stderr = done.stdout.decode(), done.stderr.decode()
    return done


def failure_line(done: subprocess.CompletedProcess) -> str:
    """The one line a failure printed, besides `run`'s progress lines."""
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith(("run: [", "process-requests: producing"))]
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- passwords that are not UTF-8 ---------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=40), via_file=st.booleans())
def test_any_password_bytes_give_one_line_and_a_non_zero_exit(tmp_path, monkeypatch, data, via_file):
    # No warehouse here: a readable password goes on to that refusal.
    monkeypatch.setattr(cli, "_warehouse", lambda settings: WarehouseResource(data_dir=str(tmp_path / "empty")))
    if via_file:
        (tmp_path / "password").write_bytes(data)
        argv = [*REQUEST, "--password-file", str(tmp_path / "password")]
    else:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        argv = [*REQUEST, "--password-stdin"]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cli.main(argv) == cli.EXIT_REFUSED
    [line] = stderr.getvalue().splitlines()
    first = data.split(b"\n")[0]
    try:
        password = first.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        assert line == "certpipeline request: the password is not valid UTF-8"
        return
    assert line == ("certpipeline request: the password is empty" if not password
                    else f"certpipeline request: no warehouse at sqlite:{tmp_path / 'empty' / 'warehouse' / 'catalog.sqlite'} yet; "
                    "run `certpipeline run` first")


@pytest.mark.slow
def test_a_non_utf8_password_from_stdin_or_a_file_is_one_line(tmp_path):
    (tmp_path / "password").write_bytes(b"caf\xe9\n")
    for args, stdin in (([*REQUEST, "--password-stdin"], b"\xff\xfe secret\n"),
                        ([*REQUEST, "--password-file", str(tmp_path / "password")], None)):
        done = run_cli(tmp_path / "data", *args, stdin=stdin)
        assert failure_line(done) == "certpipeline request: the password is not valid UTF-8"
        assert done.returncode == 1


# -- an unreadable warehouse -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("content", [b"", b"this is not a database" * 1000], ids=["empty", "corrupt"])
def test_a_corrupt_or_empty_warehouse_is_one_line_when_filing(tmp_path, content):
    data_dir = tmp_path / "data"
    catalog = data_dir / "warehouse" / "catalog.sqlite"
    catalog.parent.mkdir(parents=True)
    catalog.write_bytes(content)
    done = run_cli(data_dir, "request", "course_progress_exhaust", "--batch", "b-1", "--by", "u-1")
    line = failure_line(done)
    assert line.startswith(f"certpipeline request: the published warehouse sqlite:{catalog} cannot be read ("), line
    assert line.endswith("publish it again with `certpipeline run --date <last day>` (see `certpipeline doctor`)")


# -- a full disk, Dagster's home gone -------------------------------------------------------


@pytest.fixture
def generated(tmp_path) -> Path:
    data_dir = tmp_path / "data"
    generate_landing(data_dir, learners=150, days=1, seed=5, end_date=YESTERDAY)
    return data_dir


def published_days(data_dir: Path) -> list[dt.date]:
    """The report dates the lake holds; [] before any publication committed."""
    published = lake.LakeSettings.under(data_dir)
    if not published.exists():
        return []
    with lake.reader(published) as con:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'report_versions' "
                           "AND table_name = 'report_dates'").fetchone()[0]:
            return []
        return [day for (day,) in con.sql("SELECT report_date FROM report_versions.report_dates ORDER BY 1").fetchall()]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["ingest.file_loaded", "publish.lake_written"])
def test_disk_full_during_run_is_one_line_and_the_rerun_publishes(generated, point):
    done = run_cli(generated, "run", "--date", YESTERDAY.isoformat(), disk_full_at=point)
    line = failure_line(done)
    assert line.startswith(f"certpipeline run: {YESTERDAY} failed (run "), line
    assert line.endswith("OSError: [Errno 28] No space left on device; free space on the data directory's disk "
                         "and run the same command again"), line
    assert published_days(generated) == []
    rerun = run_cli(generated, "run", "--date", YESTERDAY.isoformat())
    assert rerun.returncode == 0, rerun.stderr
    assert published_days(generated) == [YESTERDAY]


def published_status(data_dir: Path, request_id: str) -> list[tuple]:
    with lake.reader(lake.LakeSettings.under(data_dir)) as con:
        return con.execute("SELECT status FROM ops.report_requests WHERE request_id = ?", [request_id]).fetchall()


@pytest.mark.slow
def test_disk_full_while_process_requests_publishes_is_one_line_and_the_next_pass_publishes(generated):
    assert run_cli(generated, "run", "--date", YESTERDAY.isoformat()).returncode == 0
    admin, batch = admin_and_largest_batch(generated)
    filed = run_cli(generated, "request", "course_progress_exhaust", "--batch", batch, "--by", admin)
    assert filed.returncode == 0, filed.stderr
    request_id = filed.stdout.strip()
    done = run_cli(generated, "process-requests", disk_full_at="publish.lake_written")
    line = failure_line(done)
    assert line == (f"certpipeline process-requests: the requests are done but publishing the warehouse "
                    f"sqlite:{generated / 'warehouse' / 'catalog.sqlite'} failed (OSError: [Errno 28] No space left "
                    "on device); "
                    "free space on the data directory's disk and run the same command again; "
                    "the next pass publishes it again")
    assert published_status(generated, request_id) == []  # the last publication predates it
    again = run_cli(generated, "process-requests")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "no waiting requests; published the warehouse the last pass could not"
    assert published_status(generated, request_id) == [("Success",)]
    assert run_cli(generated, "process-requests").stdout.strip() == "no waiting requests"


DELETE_DAGSTER_HOME_MID_RUN = """
import os, shutil, sys
from certpipeline import cli, pipeline
build = pipeline.build_report_snapshots
def deleting_dagster_home_first(*args, **kwargs):
    shutil.rmtree(os.environ["DAGSTER_HOME"])
    return build(*args, **kwargs)
pipeline.build_report_snapshots = deleting_dagster_home_first
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_dagster_home_deleted_during_a_run_is_one_line(generated):
    done = run_cli(generated, "run", "--date", YESTERDAY.isoformat(), script=DELETE_DAGSTER_HOME_MID_RUN)
    line = failure_line(done)
    assert line.startswith(f"certpipeline run: {YESTERDAY} failed"), line
    rerun = run_cli(generated, "run", "--date", YESTERDAY.isoformat())
    assert rerun.returncode == 0, rerun.stderr
