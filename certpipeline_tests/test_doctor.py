"""``certpipeline doctor`` checks every store and says what to do; the
recovery it prescribes for a corrupt working store (delete it, re-run every
landing day) gives back the same warehouse."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from certpipeline import lake
from certpipeline.doctor import diagnose
from certpipeline.generate import generate_landing
from certpipeline.password_vault import PasswordVault
from certpipeline.warehouse import DataPaths
from certpipeline_tests.conftest import admin_and_largest_batch
from certpipeline_tests.test_crash_safety import warehouse_contents

LAST_DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
FIRST_DAY = LAST_DAY - dt.timedelta(days=1)


def cli(root: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(root / "data"), "DAGSTER_HOME": str(root / "dagster_home"),
           "CERTPIPELINE_SECRET_KEY_FILE": str(root / "config" / "secret.key")}
    return subprocess.run([sys.executable, "-m", "certpipeline.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def healthy_source(tmp_path_factory) -> Path:
    """Two landing days run, one encrypted request produced and one waiting."""
    root = tmp_path_factory.mktemp("doctor")
    generate_landing(root / "data", learners=150, days=2, seed=9, end_date=LAST_DAY)
    assert cli(root, "run", "--from", FIRST_DAY.isoformat(), "--to", LAST_DAY.isoformat()).returncode == 0
    admin, batch = admin_and_largest_batch(root / "data")
    assert cli(root, "request", "user_profile_exhaust", "--batch", batch, "--by", admin, "--password-stdin",
               stdin="a passphrase\n").returncode == 0
    assert cli(root, "process-requests").returncode == 0
    assert cli(root, "request", "course_progress_exhaust", "--batch", batch, "--by", admin).returncode == 0
    return root


@pytest.fixture
def root(healthy_source, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(healthy_source, copy, symlinks=True)
    return copy


def findings(root: Path) -> dict[str, str]:
    paths = DataPaths(root / "data")
    found = diagnose(paths, lake.LakeSettings.under(paths.root),
                     PasswordVault(root / "config" / "secret.key", paths.pipeline / "secret.key"), root / "dagster_home")
    return {f.store: f.line() for f in found}


def problem_after_corrupting(root: Path, store: Path) -> str:
    """Overwrite ``store`` with garbage and run ``doctor``: it exits 1 and
    prints one PROBLEM line, returned."""
    store.write_bytes(b"\x00garbage" * 4096)
    done = cli(root, "doctor")
    assert (done.returncode, done.stderr) == (1, "1 problem(s)\n")
    [line] = [line for line in done.stdout.splitlines() if line.startswith("PROBLEM")]
    return line


@pytest.mark.slow
def test_a_healthy_installation_is_all_ok_and_exits_0(root):
    done = cli(root, "doctor")
    assert done.returncode == 0, done.stdout + done.stderr
    data = root / "data"
    assert done.stdout.splitlines() == [
        f"ok       data directory {data}",
        f"ok       work database {data / 'pipeline' / 'work.duckdb'}",
        f"ok       request queue {data / 'pipeline' / 'requests.duckdb'}",
        f"ok       published warehouse {data / 'warehouse' / 'catalog.sqlite'}",
        f"ok       secret key {root / 'config' / 'secret.key'}",
        f"ok       Dagster home {root / 'dagster_home'}",
    ]


@pytest.mark.slow
def test_a_corrupt_work_store_is_rebuilt_as_doctor_says_into_the_same_warehouse(root):
    data = root / "data"
    before = warehouse_contents(data)
    # The queue is published as it is now (with the request still waiting): compared on its own.
    before.pop("ops.report_requests")
    work = data / "pipeline" / "work.duckdb"
    line = problem_after_corrupting(root, work)
    remedy = f"`rm -f {work} {work}.wal`"
    rerun = f"`certpipeline run --from {FIRST_DAY} --to {LAST_DAY}`"
    assert line.startswith(f"PROBLEM  work database {work}: cannot be opened (")
    assert line.endswith(f"delete it ({remedy}) and re-run every landing day: {rerun}")
    # Do as it says.
    work.unlink()
    assert cli(root, "run", "--from", FIRST_DAY.isoformat(), "--to", LAST_DAY.isoformat()).returncode == 0
    after = warehouse_contents(data)
    after.pop("ops.report_requests")
    assert after == before
    with lake.reader(lake.LakeSettings.under(data)) as con:
        statuses = con.sql("SELECT status FROM ops.report_requests ORDER BY requested_at").fetchall()
    assert statuses == [("Success",), ("Submitted",)]
    assert cli(root, "doctor").returncode == 0


@pytest.mark.slow
def test_a_corrupt_lake_is_moved_aside_as_doctor_says_and_published_whole_again(root):
    data = root / "data"
    before = warehouse_contents(data)
    # The queue is published as it is now (with the request still waiting): compared on its own.
    before.pop("ops.report_requests")
    catalog = data / "warehouse" / "catalog.sqlite"
    for journal in catalog.parent.glob("catalog.sqlite-*"):
        journal.unlink()
    line = problem_after_corrupting(root, catalog)
    assert line.startswith(f"PROBLEM  published warehouse {catalog}: cannot be opened (")
    assert line.endswith(f"move the lake aside (`mv {data / 'warehouse'} {data / 'warehouse'}.broken`) and publish "
                         f"it again: `certpipeline run --date {LAST_DAY}` (a new lake gets everything)")
    # Do as it says: the new lake holds every day, not only the one re-run.
    (data / "warehouse").rename(data / "warehouse.broken")
    assert cli(root, "run", "--date", LAST_DAY.isoformat()).returncode == 0
    after = warehouse_contents(data)
    assert [row[5] for row in sorted(after.pop("ops.report_requests"), key=lambda row: row[0])] == [
        "Success", "Submitted"]
    assert after == before
    assert cli(root, "doctor").returncode == 0


@pytest.mark.slow
def test_each_problem_says_what_to_do(root):
    data = root / "data"
    queue, key, home = data / "pipeline" / "requests.duckdb", root / "config" / "secret.key", root / "dagster_home"
    queue.write_bytes(b"not a queue")
    os.chmod(data / "warehouse" / "catalog.sqlite", 0o644)
    os.chmod(data, 0o755)
    os.chmod(key, 0o644)
    shutil.rmtree(home)
    home.write_text("not a folder")
    found = findings(root)
    uid = os.getuid()
    assert found["data directory"] == (f"PROBLEM  data directory {data}: mode 0755 owned by uid {uid}, should be 0700 "
                                       f"owned by uid {uid}; run `chown {uid} {data} && chmod 700 {data}`")
    assert found["request queue"].startswith(f"PROBLEM  request queue {queue}: cannot be opened (")
    assert found["request queue"].endswith(f"move it aside (`mv {queue} {queue}.broken`); requests still waiting "
                                           "in it must be filed again (ended ones stay in the warehouse's "
                                           "ops.report_requests)")
    warehouse = data / "warehouse" / "catalog.sqlite"
    assert found["published warehouse"] == (
        f"PROBLEM  published warehouse {warehouse}: mode 0644 owned by uid {uid}, should be 0600 owned by uid {uid}; "
        f"run `chown {uid} {warehouse} && chmod 600 {warehouse}`")
    assert found["secret key"] == (f"PROBLEM  secret key {key}: mode 0644 owned by uid {uid}, should be 0600 owned "
                                   f"by uid {uid}; run `chown {uid} {key} && chmod 600 {key}`")
    assert found["Dagster home"] == (f"PROBLEM  Dagster home {home}: is not a folder; move it aside "
                                     f"(`mv {home} {home}.broken`); the next run creates it again")
    assert found["work database"].startswith("ok")
    legacy = data / "pipeline" / "secret.key"
    shutil.copy(key, legacy)
    assert findings(root)["secret key"] == (
        f"PROBLEM  secret key {legacy}: a key in the data directory, beside the passwords it opens; move it out: "
        f"`mv {legacy} {key}` (the pipeline also does on its next request)")
