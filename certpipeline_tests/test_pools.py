"""Concurrency the Dagster way: every step that writes the working store is in
the ``duckdb_work`` pool, and the instance the CLI writes gives unconfigured
pools one slot. A UI backfill run (no job tags) and a sensor run then never
write at once, and a run killed while holding the slot does not jam the pool.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.methods.event_methods import EventMethods
import pytest
from dagster._core.events import DagsterEventType

from certpipeline import cli_instance
from certpipeline import report_requests as rq
from certpipeline.definitions import defs
from certpipeline.defs.resources import WORK_POOL, WarehouseResource
from certpipeline.run_recovery import CREATOR_PID_TAG, creator_tags, fail_abandoned_runs
from certpipeline_tests.conftest import NIGHTLY
from certpipeline_tests.test_requests import (  # noqa: F401 - built_world and world are fixtures
    BATCH_CREATOR,
    DAY,
    LIVE,
    built_world,
    evaluate_sensor,
    file,
    request_row,
    run_claimed,
    world,
)

POLL_DEADLINE_SECONDS = 300


def test_every_asset_writing_the_working_store_is_in_the_work_pool_and_no_job_carries_a_queue_tag():
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string(): graph.get(key).pools for key in graph.get_all_asset_keys()} == {
        key.to_user_string(): {WORK_POOL} for key in graph.get_all_asset_keys()}
    assert all(not job.tags for job in defs.get_repository_def().get_all_jobs() if not job.name.startswith("__"))


@pytest.fixture
def home(tmp_path) -> Path:
    """A persistent instance configured as the CLI configures it."""
    path = tmp_path / "dagster_home"
    path.mkdir()
    (path / "dagster.yaml").write_text(cli_instance.DAGSTER_YAML)
    return path


def _wait_for(condition, what: str):
    deadline = time.monotonic() + POLL_DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _events(instance: dg.DagsterInstance, run_id: str, event_type) -> list:
    return [r.event_log_entry for r in instance.event_log_storage.get_records_for_run(run_id, of_type=event_type).records]


def _step_windows(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, float]]:
    starts = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_START)}
    ends = {e.step_key: e.timestamp for e in _events(instance, run_id, DagsterEventType.STEP_SUCCESS)}
    return [(starts[key], ends[key]) for key in starts]


def _blocked_on_pool(instance: dg.DagsterInstance, run_id: str) -> bool:
    return any(f"blocked by limit for pool {WORK_POOL}" in (e.dagster_event.message or "")
               for e in _events(instance, run_id, DagsterEventType.ENGINE_EVENT))


def test_a_ui_backfill_run_and_a_sensor_run_wait_for_the_pool_and_never_write_at_once(world, home,  # noqa: F811
                                                                                       monkeypatch):
    """Both runs are started while the pool's slot is taken: both wait for it
    (before touching the file lock), and once it is free their steps run one
    after the other, never overlapping."""
    # Dagster 1.13 calls logging.config.dictConfig at every run start, even
    # with no python_logs configured (it then returns no handlers). Two runs
    # in threads of one process can deadlock there: dictConfig holds logging's
    # module lock and waits for a handler the other run's emit holds, which
    # waits for the module lock (seen once in CI, hanging the suite). Runs
    # are processes in production; here the no-op is skipped.
    monkeypatch.setattr(EventMethods, "get_yaml_python_handlers", lambda self: [])
    request_id = file(world, "user_profile_exhaust", BATCH_CREATOR, password="a long passphrase", batch=LIVE)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_request = evaluate_sensor(world, instance)
        instance.event_log_storage.initialize_concurrency_limit_to_default(WORK_POOL)
        assert instance.event_log_storage.get_concurrency_info(WORK_POOL).slot_count == 1
        instance.event_log_storage.claim_concurrency_slot(WORK_POOL, "holder-run", "holder-step")

        results, errors = {}, []

        def backfill_run():
            # What the backfill daemon launches for a UI backfill: partition and
            # backfill tags only, nothing the job adds.
            try:
                with dg.DagsterInstance.from_config(str(home)) as own:
                    results["backfill"] = dg.materialize(
                        list(defs.assets), selection=NIGHTLY, partition_key=DAY.isoformat(), instance=own,
                        resources={"warehouse": world}, tags={"dagster/backfill": "uibackfil"})
            except Exception as error:  # noqa: BLE001 - asserted below
                errors.append(error)

        def sensor_run():
            try:
                with dg.DagsterInstance.from_config(str(home)) as own:
                    results["sensor"] = run_claimed(world, own, run_request)
            except Exception as error:  # noqa: BLE001 - asserted below
                errors.append(error)

        threads = [threading.Thread(target=backfill_run), threading.Thread(target=sensor_run)]
        for thread in threads:
            thread.start()
        try:
            def both_blocked():
                runs = instance.get_runs()
                return len(runs) == 2 and all(_blocked_on_pool(instance, run.run_id) for run in runs)

            _wait_for(both_blocked, "both runs to wait for the duckdb_work pool")
            assert all(_step_windows(instance, run.run_id) == [] for run in instance.get_runs())
        finally:
            instance.event_log_storage.free_concurrency_slots_for_run("holder-run")
            for thread in threads:
                thread.join(timeout=POLL_DEADLINE_SECONDS)
        assert errors == []
        assert results["backfill"].success and results["sensor"].success
        backfill_windows = _step_windows(instance, results["backfill"].run_id)
        sensor_windows = _step_windows(instance, results["sensor"].run_id)
        assert len(backfill_windows) == 4 and len(sensor_windows) == 1
        for start, end in sensor_windows:
            assert all(end <= b_start or b_end <= start for b_start, b_end in backfill_windows)
    assert request_row(world, request_id)["status"] == rq.SUCCESS


KILLED_RUN = """
import os, signal, sys
import dagster as dg
from certpipeline.definitions import defs
from certpipeline.defs.resources import WarehouseResource

NIGHTLY = dg.AssetSelection.groups("ingestion", "reports", "publication")

instance = dg.DagsterInstance.from_config(sys.argv[1])
warehouse = WarehouseResource(data_dir=sys.argv[2])
# Hold the working store's lock so the run is mid-step (slot claimed) when killed.
with warehouse.work():
    dg.materialize(list(defs.assets), selection=NIGHTLY, partition_key=sys.argv[3], instance=instance,
                   resources={"warehouse": WarehouseResource(data_dir=sys.argv[2], lock_timeout_seconds=3600)})
"""


@pytest.mark.slow
def test_a_run_killed_while_holding_the_pool_slot_is_failed_and_the_next_run_gets_the_slot(world, home, tmp_path):  # noqa: F811
    day = DAY.isoformat()
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    # The instance is built (its SQLite storage created) before the run's
    # process builds its own: two processes creating it at once race on
    # Dagster's alembic table, which the CLI guards with a file lock.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        victim = subprocess.Popen([sys.executable, str(script), str(home), str(world.paths.root), day],
                                  cwd=Path(__file__).resolve().parent.parent, env={**os.environ})
        try:
            def slot_claimed():
                assert victim.poll() is None, "the run's process ended before it was killed"
                return (WORK_POOL in instance.event_log_storage.get_concurrency_keys()
                        and instance.event_log_storage.get_concurrency_info(WORK_POOL).active_slot_count == 1)

            _wait_for(slot_claimed, "the run to claim the pool slot")
        finally:
            victim.kill()
            victim.wait()
        [killed] = instance.get_runs()
        assert killed.status == dg.DagsterRunStatus.STARTED  # what used to jam the queue
        [abandoned] = fail_abandoned_runs(instance)
        assert (abandoned.run_id, abandoned.pid) == (killed.run_id, victim.pid)
        failed = instance.get_run_by_id(killed.run_id)
        assert failed.status == dg.DagsterRunStatus.FAILURE
        assert f"Process {victim.pid}" in _events(instance, killed.run_id, DagsterEventType.RUN_FAILURE)[0].dagster_event.message
        assert instance.event_log_storage.get_concurrency_info(WORK_POOL).active_slot_count == 0
        assert fail_abandoned_runs(instance) == []
        result = dg.materialize(list(defs.assets), selection=NIGHTLY, partition_key=day, instance=instance,
                                resources={"warehouse": WarehouseResource(data_dir=str(world.paths.root))})
        assert result.success


def test_a_run_whose_creator_died_before_it_started_is_failed_and_others_are_left_alone(home):
    """`certpipeline run` killed between creating its run and starting it left the run NOT_STARTED for ever."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    job = defs.resolve_job_def("nightly_job")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        orphan = instance.create_run_for_job(job, tags={CREATOR_PID_TAG: str(dead.pid)})
        mine = instance.create_run_for_job(job, tags=creator_tags())
        untagged = instance.create_run_for_job(job)
        [abandoned] = fail_abandoned_runs(instance)
        assert (abandoned.run_id, abandoned.pid, abandoned.started) == (orphan.run_id, dead.pid, False)
        assert instance.get_run_by_id(orphan.run_id).status == dg.DagsterRunStatus.FAILURE
        assert _events(instance, orphan.run_id, DagsterEventType.RUN_FAILURE)[0].dagster_event.message == (
            f"Process {dead.pid}, which created this run, is gone (killed or crashed) before it started; marked failed.")
        for run in (mine, untagged):
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.NOT_STARTED
        assert fail_abandoned_runs(instance) == []
