"""The Dagster UI loads the pipeline: start dagster-webserver on 127.0.0.1 from
the project root (it finds the code location in pyproject.toml),
query its GraphQL endpoint, stop it."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from certpipeline_tests.servers import free_port, graphql, stop

REPOSITORY = Path(__file__).resolve().parent.parent

QUERY = """
{
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError {
          __typename
          ... on PythonError { message }
          ... on RepositoryLocation {
            repositories {
              name
              jobs { name }
              schedules { name cronSchedule scheduleState { status } }
              sensors { name sensorState { status } }
              assetNodes { assetKey { path } }
            }
          }
        }
      }
    }
  }
}
"""


@pytest.mark.slow
def test_webserver_loads_every_asset_schedule_and_sensor(tmp_path):
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home"), "CERTPIPELINE_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "dagster_home").mkdir()
    (tmp_path / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    log = open(tmp_path / "webserver.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT,
        # The webserver stops on SIGINT; a child started in the background may
        # inherit SIGINT ignored, so restore the default handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("webserver did not start:\n" + (tmp_path / "webserver.log").read_text()) from None
                time.sleep(0.3)
        answer = graphql(f"http://127.0.0.1:{port}/graphql", QUERY)
    finally:
        stop(server, signal.SIGINT, timeout=20)
        log.close()

    entries = answer["workspaceOrError"]["locationEntries"]
    assert len(entries) == 1
    location = entries[0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location
    repository = location["repositories"][0]
    assert sorted("/".join(node["assetKey"]["path"]) for node in repository["assetNodes"]) == [
        "entity_history", "published_warehouse", "raw_events", "report_exhaust", "report_retention",
        "reports/certificate_type_totals", "reports/course_batch_dashboard", "reports/learner_certificate_history",
        "reports/path_certificate_learners", "reports/path_certificate_stats",
    ]
    assert sorted((s["name"], s["cronSchedule"], s["scheduleState"]["status"]) for s in repository["schedules"]) == [
        ("lake_maintenance_job_schedule", "0 4 * * *", "RUNNING"),
        ("nightly_job_schedule", "0 2 * * *", "RUNNING"),
        ("nightly_request_schedule", "30 2 * * *", "RUNNING"),
        ("report_retention_job_schedule", "0 3 * * *", "RUNNING"),
    ]
    assert sorted((s["name"], s["sensorState"]["status"]) for s in repository["sensors"]) == [
        ("abandoned_run_sensor", "RUNNING"), ("report_request_sensor", "RUNNING")
    ]
    assert {"nightly_job", "report_request_job", "report_retention_job"} <= {job["name"] for job in repository["jobs"]}
    assert server.returncode is not None
    log_text = (tmp_path / "webserver.log").read_text()
    assert "Traceback" not in log_text, log_text
