"""Production Dagster as data engineers run it: ``dagster-daemon run`` and
``dagster-webserver`` (the commands of the systemd units in deploy/) on the
instance of deploy/dagster.yaml with PostgreSQL storage. A backfill launched
through the webserver's GraphQL endpoint, as the UI launches it, and a report
request filed with the CLI are carried out by the daemon alone; a run killed
with SIGKILL while it holds the ``duckdb_work`` pool slot is failed with a
reason and the run queued behind it succeeds, with nobody touching the
instance.

The services are a module fixture: one pair for both tests when they run in
one process; each test is complete on its own, so an xdist worker that gets
only one of them starts its own pair (in parallel with the other)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import psutil
import pytest

from certpipeline import report_requests as rq
from certpipeline.definitions import defs
from certpipeline.defs.resources import WORK_POOL, WarehouseResource
from certpipeline.request_service import RequestService
from certpipeline.run_recovery import executing_pid
from certpipeline_tests.conftest import NIGHTLY, Landing
from certpipeline_tests.postgres_server import create_database
from certpipeline_tests.servers import free_port, graphql, stop
from certpipeline_tests.test_production_instance import DEPLOYED, production_environment

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The last three partitions: a backfill of earlier days would also target
# the reports of every later day (a report depends on all days up to its own).
YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DAYS = [(YESTERDAY - dt.timedelta(days=offset)).isoformat() for offset in (2, 1, 0)]
# Generous: the daemon's backfill and sensor loops tick every 30 s, and runs
# start a process each on a machine that may be busy with other suites.
DEADLINE_SECONDS = 600
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def wait_for(condition, what: str, log_files=()):
    """Poll ``condition`` until it returns something truthy; returns that."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in log_files)
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.5)


def write_three_days(landing: Landing) -> None:
    """Two courses, each with a batch granting a certificate; awards and
    enrollments arrive over three days, so each day's reports differ."""
    day1, day2, day3 = DAYS
    landing.user(day1, "admin", platform_role="admin")
    for user in ("u1", "u2", "u3"):
        landing.user(day1, user)
    landing.course(day1, "c1")
    landing.certificate(day1, "cert1", certificate_type="verified")
    landing.session(day1, "b1", "c1", certificate_id="cert1")
    landing.enroll(day1, "e1", "u1", "b1")
    landing.award(day1, "a1", "u1", "cert1", f"{day1}T15:00:00Z", enrollment_id="e1")
    landing.course(day2, "c2")
    landing.certificate(day2, "cert2", certificate_type="honor")
    landing.session(day2, "b2", "c2", certificate_id="cert2")
    landing.enroll(day2, "e2", "u2", "b1")
    landing.enroll(day2, "e3", "u3", "b2")
    landing.award(day2, "a2", "u3", "cert2", f"{day2}T15:00:00Z", enrollment_id="e3")
    landing.enroll(day3, "e4", "u3", "b1")


@dataclass
class Deployment:
    data_dir: Path
    home: Path
    env: dict[str, str]
    graphql_url: str
    logs: list[Path]

    def graphql(self, query: str, **variables) -> dict:
        return graphql(self.graphql_url, query, **variables)

    def instance(self) -> dg.DagsterInstance:
        """The production instance (DAGSTER_PG_* are set for the module), read
        by the test, never written."""
        return dg.DagsterInstance.from_config(str(self.home))

    def warehouse(self) -> WarehouseResource:
        return WarehouseResource(data_dir=str(self.data_dir))


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:
        return subprocess.Popen(command, cwd=REPOSITORY, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, as systemd stops the units; then whatever it started that is
    left (psutil's handles never signal a pid reused by someone else)."""
    try:
        started = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        started = []
    stop(process, signal.SIGTERM, timeout=60)
    for child in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@pytest.fixture(scope="module")
def deployment(postgres_server, tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("production")
    data_dir, home = root / "data", root / "dagster_home"
    data_dir.mkdir()
    home.mkdir()
    shutil.copy(DEPLOYED, home / "dagster.yaml")
    write_three_days(Landing(data_dir))
    postgres = production_environment(create_database(postgres_server, "daemon"))
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "CERTPIPELINE_DATA_DIR": str(data_dir),
           "CERTPIPELINE_FIRST_DAY": DAYS[0]}
    port = free_port()
    logs = [root / "daemon.log", root / "webserver.log"]
    deployment = Deployment(data_dir, home, env, f"http://127.0.0.1:{port}/graphql", logs)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in postgres.items():  # for the test's own reads of the instance
            patch.setenv(name, value)
        daemon = _start([str(BIN / "dagster-daemon"), "run"], env, logs[0])
        webserver = _start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)], env, logs[1])
        try:
            def ready():
                assert daemon.poll() is None and webserver.poll() is None, "a service exited"
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(ready, "the webserver to answer", logs)
            yield deployment
        finally:
            _stop(webserver)
            _stop(daemon)


LAUNCH_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill {
      status
      runs {
        id
        status
        tags { key value }
        assetMaterializations {
          assetKey { path }
          partition
          metadataEntries { label ... on IntMetadataEntry { intValue } }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

DAILY_ASSETS = sorted(key.path for key in NIGHTLY.resolve(defs.resolve_asset_graph()))


def launch_backfill(deployment: Deployment, days: list[str]) -> str:
    """What the UI sends for Materialize -> select partitions on the daily assets."""
    launched = deployment.graphql(LAUNCH_BACKFILL, backfillParams={
        "partitionNames": days, "assetSelection": [{"path": path} for path in DAILY_ASSETS],
        "fromFailure": False, "tags": [],
    })["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def backfill(deployment: Deployment, backfill_id: str) -> dict:
    answer = deployment.graphql(BACKFILL, backfillId=backfill_id)["partitionBackfillOrError"]
    assert answer["__typename"] == "PartitionBackfill", answer
    return answer


def finished_backfill(deployment: Deployment, backfill_id: str) -> dict:
    def done():
        answer = backfill(deployment, backfill_id)
        return answer if answer["status"] not in ("REQUESTED", "CANCELING", "FAILING") else None

    return wait_for(done, f"backfill {backfill_id} to finish", deployment.logs)


def test_a_ui_backfill_and_a_filed_request_are_carried_out_by_the_daemon_on_postgresql(deployment):
    backfill_id = launch_backfill(deployment, DAYS)

    def runs_ended():
        runs = backfill(deployment, backfill_id)["runs"]
        published = {m["partition"] for run in runs for m in run["assetMaterializations"]
                     if m["assetKey"]["path"] == ["published_warehouse"]}
        ended = runs and all(run["status"] in FINISHED for run in runs)
        return runs if ended and (published == set(DAYS) or any(run["status"] != "SUCCESS" for run in runs)) else None

    # The backfill's status follows on the daemon's next tick; the request
    # need not wait for it.
    [run] = wait_for(runs_ended, "the backfill's runs", deployment.logs)
    # One run over the three days (the daily assets' single-run backfill
    # policy): every landing day is ingested before any report is computed.
    assert run["status"] == "SUCCESS"
    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (DAYS[0], DAYS[-1])
    materialized = {("/".join(m["assetKey"]["path"]), m["partition"]) for m in run["assetMaterializations"]}
    assert materialized == {("/".join(path), day) for path in DAILY_ASSETS for day in DAYS}
    row_counts = {"/".join(m["assetKey"]["path"]): next(e["intValue"] for e in m["metadataEntries"]
                                                       if e["label"] == "dagster/row_count")
                  for m in run["assetMaterializations"] if m["assetKey"]["path"][0] == "reports"}
    # Rows of the three days together: (c1, verified) from day 1, (c2, honor)
    # from day 2 -> 1 + 2 + 2; batches b1 from day 1, b2 from day 2 -> 1 + 2 + 2;
    # enrollments in certificate-granting sessions 1 + 3 + 4.
    assert row_counts["reports/certificate_type_totals"] == 5
    assert row_counts["reports/course_batch_dashboard"] == 5
    assert row_counts["reports/learner_certificate_history"] == 8

    # A course team's request, filed as the README shows; the daemon's
    # request sensor produces it.
    filed = subprocess.run([str(BIN / "certpipeline"), "request", "course_progress_exhaust", "--batch", "b1",
                            "--by", "admin"], env=deployment.env, capture_output=True, text=True, timeout=300)
    assert filed.returncode == 0, filed.stderr
    request_id = filed.stdout.strip()
    service = RequestService(deployment.warehouse().get_warehouse())

    def request_ended():
        row = service.get(request_id)
        return row if row["status"] in (rq.SUCCESS, rq.FAILURE) else None

    row = wait_for(request_ended, f"request {request_id} to be produced", deployment.logs)
    assert (row["status"], row["row_count"], row["status_reason"]) == (rq.SUCCESS, 3, None)
    report = service.download(request_id)
    assert report.is_file() and request_id in report.name
    assert len(report.read_text(encoding="utf-8-sig").splitlines()) == 1 + 3  # header + e1, e2, e4
    listed = subprocess.run([str(BIN / "certpipeline"), "requests", "--batch", "b1"], env=deployment.env,
                            capture_output=True, text=True, timeout=300)
    assert listed.stdout.startswith(f"{request_id}  Success  "), listed.stdout

    assert finished_backfill(deployment, backfill_id)["status"] == "COMPLETED_SUCCESS"
    with deployment.instance() as instance:
        [request_run] = instance.get_runs(dg.RunsFilter(job_name="report_request_job"))
        assert request_run.status == dg.DagsterRunStatus.SUCCESS
        assert request_run.tags["dagster/sensor_name"] == "report_request_sensor"


def test_a_run_killed_holding_the_pool_slot_under_the_daemon_fails_and_the_queued_run_succeeds(deployment):
    """Two UI backfills of the last day; the test holds the working store's
    lock so that whichever run takes the duckdb_work slot first stays in its
    step, and kills that run's worker with SIGKILL. The other run waits for
    the slot meanwhile."""
    with deployment.instance() as instance:
        with deployment.warehouse().work():
            backfills = [launch_backfill(deployment, DAYS[-1:]), launch_backfill(deployment, DAYS[-1:])]

            def runs_of(backfill_id: str) -> list[dg.DagsterRun]:
                return instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))

            def holder_and_follower():
                runs = [runs_of(backfill_id) for backfill_id in backfills]
                if not all(runs):
                    return None
                holders = instance.event_log_storage.get_concurrency_info(WORK_POOL).active_run_ids
                [first], [second] = runs
                holder, follower = (first, second) if first.run_id in holders else (second, first)
                if holder.run_id not in holders or follower.status.value in FINISHED:
                    return None
                executing = executing_pid(instance, holder.run_id)
                return (holder, follower, executing[0]) if executing and psutil.pid_exists(executing[0]) else None

            holder, follower, pid = wait_for(holder_and_follower, "a run to hold the pool slot", deployment.logs)
            assert instance.get_run_by_id(follower.run_id).status != dg.DagsterRunStatus.SUCCESS
            os.kill(pid, signal.SIGKILL)

            def failed():
                run = instance.get_run_by_id(holder.run_id)
                return run if run.status.value in FINISHED else None

            assert wait_for(failed, "the killed run to be failed", deployment.logs).status == dg.DagsterRunStatus.FAILURE
        # The store's lock is free again; the follower needs nothing else.

        def follower_finished():
            run = instance.get_run_by_id(follower.run_id)
            return run if run.status.value in FINISHED else None

        assert wait_for(follower_finished, "the queued run", deployment.logs).status == dg.DagsterRunStatus.SUCCESS
        reasons = [record.event_log_entry.dagster_event.message or "" for record in
                   instance.event_log_storage.get_records_for_run(holder.run_id).records
                   if record.event_log_entry.dagster_event
                   and record.event_log_entry.dagster_event.event_type_value in ("ENGINE_EVENT", "PIPELINE_FAILURE")]
        # Whoever noticed first says why: the code server that launched the
        # worker, or the abandoned_run_sensor.
        assert any("was terminated by signal 9 (SIGKILL)" in reason or f"Process {pid}, which was executing" in reason
                   for reason in reasons), reasons
        assert instance.event_log_storage.get_concurrency_info(WORK_POOL).active_slot_count == 0
    # What the UI's backfill page shows once the daemon has seen the runs end.
    assert sorted(finished_backfill(deployment, backfill_id)["status"] for backfill_id in backfills) == [
        "COMPLETED_FAILED", "COMPLETED_SUCCESS"]
