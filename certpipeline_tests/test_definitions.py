"""What the Dagster UI loads: a snapshot of the definitions, so a renamed or
dropped asset, job, schedule or sensor is a visible test change."""

import datetime as dt
from pathlib import Path

import dagster as dg

from certpipeline.definitions import defs


def test_definitions_snapshot():
    graph = defs.resolve_asset_graph()
    assert sorted(key.to_user_string() for key in graph.get_all_asset_keys()) == [
        "entity_history",
        "published_warehouse",
        "raw_events",
        "report_exhaust",
        "report_retention",
        "reports/certificate_type_totals",
        "reports/course_batch_dashboard",
        "reports/learner_certificate_history",
        "reports/path_certificate_learners",
        "reports/path_certificate_stats",
    ]
    assert sorted(check.to_user_string() for check in graph.asset_check_keys) == [
        "entity_history:references_resolve",
        "reports/certificate_type_totals:keys_unique",
        "reports/certificate_type_totals:totals_reconcile_with_awards",
        "reports/course_batch_dashboard:keys_unique",
        "reports/learner_certificate_history:keys_unique",
        "reports/path_certificate_learners:keys_unique",
        "reports/path_certificate_learners:learner_certificates_listed",
        "reports/path_certificate_stats:keys_unique",
    ]
    repository = defs.get_repository_def()
    assert sorted(job.name for job in repository.get_all_jobs() if not job.name.startswith("__")) == [
        "lake_maintenance_job",
        "nightly_job",
        "report_request_job",
        "report_retention_job",
    ]
    assert sorted((s.name, s.cron_schedule) for s in repository.schedule_defs) == [
        ("lake_maintenance_job_schedule", "0 4 * * *"),
        ("nightly_job_schedule", "0 2 * * *"),
        ("nightly_request_schedule", "30 2 * * *"),
        ("report_retention_job_schedule", "0 3 * * *"),
    ]
    assert sorted(s.name for s in repository.sensor_defs) == ["abandoned_run_sensor", "report_request_sensor"]


def test_nightly_schedule_targets_the_previous_day():
    schedule = defs.resolve_schedule_def("nightly_job_schedule")
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.timezone.utc),
        )
        run_requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in run_requests] == ["2026-11-24"]


def test_resources_come_from_the_environment(monkeypatch, tmp_path):
    """The defs folder declares the resource; loading the project again (as a
    code server does) builds it from the environment of that moment."""
    import certpipeline.definitions

    monkeypatch.setenv("CERTPIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CERTPIPELINE_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("CERTPIPELINE_CATALOG", "postgres:host=db.internal dbname=lake")
    monkeypatch.delenv("CERTPIPELINE_RETENTION_DAYS", raising=False)
    loaded = dg.load_from_defs_folder(path_within_project=Path(certpipeline.definitions.__file__).parent)
    declared = loaded.resources["warehouse"]
    # What the UI shows: the names of the variables set; the others keep their defaults.
    assert declared._get_non_default_public_field_values() == {
        "data_dir": dg.EnvVar("CERTPIPELINE_DATA_DIR"), "duckdb_memory_limit": dg.EnvVar("CERTPIPELINE_DUCKDB_MEMORY_LIMIT"),
        "catalog": dg.EnvVar("CERTPIPELINE_CATALOG")}
    # What a run receives: their values.
    warehouse = declared.process_config_and_initialize()
    assert (warehouse.paths.root, warehouse.duckdb_memory_limit, warehouse.catalog, warehouse.retention_days) == (
        tmp_path.resolve(), "300MB", "postgres:host=db.internal dbname=lake", 30)


def test_partitions_start_at_the_configured_day_else_the_earliest_landing_folder(monkeypatch, tmp_path):
    from certpipeline.defs.partitions import first_partition_day
    from certpipeline_tests.conftest import Landing

    monkeypatch.setenv("CERTPIPELINE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CERTPIPELINE_FIRST_DAY", raising=False)
    yesterday = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    assert first_partition_day() == yesterday  # no landing data yet
    landing = Landing(tmp_path)
    landing.user("2026-03-04", "u1")
    landing.user("2026-02-27", "u2")
    (tmp_path / "landing" / "events" / "date=not-a-day").mkdir()
    assert first_partition_day() == dt.date(2026, 2, 27)
    monkeypatch.setenv("CERTPIPELINE_FIRST_DAY", "2025-01-01")
    assert first_partition_day() == dt.date(2025, 1, 1)


def test_the_catalog_declares_each_report_column_with_its_meaning_and_the_code_of_each_asset():
    from certpipeline.reports.tables import REPORT_BUILDERS

    graph = defs.resolve_asset_graph()
    for table in REPORT_BUILDERS:
        schema = graph.get(dg.AssetKey(["reports", table])).metadata["dagster/column_schema"]
        assert schema.columns[-1].name == "report_date"
        assert all(column.type and column.description for column in schema.columns), table
    totals = graph.get(dg.AssetKey(["reports", "certificate_type_totals"])).metadata["dagster/column_schema"]
    assert [(c.name, c.type) for c in totals.columns] == [
        ("course_id", "VARCHAR"), ("certificate_type", "VARCHAR"), ("total_certificates_issued", "BIGINT"),
        ("report_date", "DATE")]
    for key in graph.get_all_asset_keys():
        [reference] = graph.get(key).metadata["dagster/code_references"].code_references
        assert reference.file_path.startswith(str(Path(__file__).resolve().parent.parent / "certpipeline" / "defs"))
