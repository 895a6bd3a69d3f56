import dagster as dg


nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.groups("ingestion", "reports", "publication"),
    # Every step writes the one DuckDB working file (pool duckdb_work); steps
    # in separate processes would only queue on it.
    executor_def=dg.in_process_executor,
    description="Ingest one landing day, refresh entity history, compute the report snapshots, publish.",
)

nightly_schedule = dg.build_schedule_from_partitioned_job(
    nightly_job,
    hour_of_day=2,
    minute_of_hour=0,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00 UTC, the previous day's landing partition.",
)
