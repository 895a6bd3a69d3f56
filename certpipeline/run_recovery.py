"""Runs whose process is gone but which Dagster still shows as STARTED.

Dagster marks a run failed when its run worker dies under the code server
that launched it. Nobody does when the process that owned the run is gone
altogether: a ``certpipeline run`` (which executes in process) killed with
SIGKILL, or a code server killed together with its run workers (a reboot, the
OOM killer). Such a run stays STARTED for ever, and the ``duckdb_work`` pool
slot its step claimed keeps every later run of the working store waiting.
Run monitoring cannot see it either: the default run launcher has no
worker health check, only start and cancel timeouts.

Every executing process logs its pid in an engine event when it starts
executing a run, so a STARTED run whose latest such process no longer exists
(or whose pid now belongs to a newer process) is abandoned: it is marked
failed with the reason, and the pool slots it held are freed. The pipeline's
working store is a file on one machine, so every run executes on the machine
this check runs on (the daemon's sensor, or the CLI before it starts a run).

A command that executes its run in process creates it first (NOT_STARTED);
killed before the run starts, it would leave it so for ever. It tags the run
with its pid, so a NOT_STARTED run whose creator is gone is abandoned too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg
import psutil
from dagster._core.events import DagsterEventType

# A process started this long after its pid was logged is a reused pid, not
# the run's process (the slack covers the two clock reads).
PID_REUSE_SLACK_SECONDS = 2.0

CREATOR_PID_TAG = "certpipeline/creator_pid"


def creator_tags() -> dict[str, str]:
    """The tag a command puts on the runs it creates and executes in process."""
    return {CREATOR_PID_TAG: str(os.getpid())}


@dataclass(frozen=True)
class AbandonedRun:
    run_id: str
    job_name: str
    pid: int
    started: bool = True  # False: its creator died before it started

    @property
    def status(self) -> dg.DagsterRunStatus:
        """The status the run was found in."""
        return dg.DagsterRunStatus.STARTED if self.started else dg.DagsterRunStatus.NOT_STARTED

    @property
    def reason(self) -> str:
        if self.started:
            return (f"Process {self.pid}, which was executing this run, is gone (killed or crashed) without "
                    "finishing it; marked failed so the runs queued behind it can start.")
        return f"Process {self.pid}, which created this run, is gone (killed or crashed) before it started; marked failed."


def executing_pid(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the latest process that started executing the run, and when it said so."""
    connection = instance.event_log_storage.get_records_for_run(
        run_id, of_type=DagsterEventType.ENGINE_EVENT, ascending=False, limit=100
    )
    for record in connection.records:
        data = record.event_log_entry.dagster_event.engine_event_data
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None:
            return int(pid.value), record.event_log_entry.timestamp
    return None


def _process_alive(pid: int, logged_at: float) -> bool:
    try:
        process = psutil.Process(pid)
        return (process.create_time() <= logged_at + PID_REUSE_SLACK_SECONDS
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def abandoned_runs(instance: dg.DagsterInstance) -> list[AbandonedRun]:
    found = []
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run = record.dagster_run
        executing = executing_pid(instance, run.run_id)
        if executing is not None and not _process_alive(*executing):
            found.append(AbandonedRun(run.run_id, run.job_name, executing[0]))
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.NOT_STARTED])):
        run = record.dagster_run
        creator = run.tags.get(CREATOR_PID_TAG)
        if creator is not None and not _process_alive(int(creator), record.create_timestamp.timestamp()):
            found.append(AbandonedRun(run.run_id, run.job_name, int(creator), started=False))
    return found


def fail_abandoned_runs(instance: dg.DagsterInstance) -> list[AbandonedRun]:
    """Mark every abandoned run failed and free its pool slots; returns them."""
    failed = []
    for abandoned in abandoned_runs(instance):
        run = instance.get_run_by_id(abandoned.run_id)
        if run is None or run.status != abandoned.status:
            continue  # moved on meanwhile (the code server may have marked it)
        instance.report_run_failed(run, abandoned.reason)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        failed.append(abandoned)
    return failed
