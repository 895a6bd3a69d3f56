"""The production instance (deploy/dagster.yaml) on a real PostgreSQL server:
it loads with PostgreSQL storage, the run queue, pools and run monitoring,
runs the nightly job, and keeps the settings the CLI's instance has."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import yaml

from certpipeline import cli_instance
from certpipeline.definitions import defs
from certpipeline.defs.resources import WORK_POOL
from certpipeline_tests.conftest import NIGHTLY

REPOSITORY = Path(__file__).resolve().parent.parent
DEPLOYED = REPOSITORY / "deploy" / "dagster.yaml"
DAY = "2026-11-20"


def production_environment(dsn: str) -> dict[str, str]:
    """The DAGSTER_PG_* variables deploy/dagster.yaml reads, for a libpq DSN."""
    parts = dict(part.split("=", 1) for part in dsn.split())
    return {"DAGSTER_PG_HOST": parts["host"], "DAGSTER_PG_PORT": parts["port"], "DAGSTER_PG_DB": parts["dbname"],
            "DAGSTER_PG_USER": parts["user"], "DAGSTER_PG_PASSWORD": parts.get("password", "")}


def test_the_production_instance_runs_the_pipeline_on_postgresql(postgres_database, tmp_path, monkeypatch,
                                                                 landing, warehouse):
    for name, value in production_environment(postgres_database).items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOYED, home / "dagster.yaml")
    landing.user(DAY, "u1")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.global_op_concurrency_default_limit == 1
        result = dg.materialize(list(defs.assets), selection=NIGHTLY, partition_key=DAY, instance=instance,
                                resources={"warehouse": warehouse})
        assert result.success
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        pool = instance.event_log_storage.get_concurrency_info(WORK_POOL)
        assert (pool.slot_count, pool.active_slot_count) == (1, 0)


def test_the_cli_instance_has_the_production_pools_and_run_monitoring():
    deployed, local = yaml.safe_load(DEPLOYED.read_text()), yaml.safe_load(cli_instance.DAGSTER_YAML)
    assert local["concurrency"] == deployed["concurrency"]
    assert local["run_monitoring"] == deployed["run_monitoring"]
