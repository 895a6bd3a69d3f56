"""Lake maintenance: compaction and snapshot expiry, every night after the
nightly run and the request pass."""

import dagster as dg

from certpipeline import maintenance
from certpipeline.defs.resources import WORK_POOL, WarehouseResource


# In the publishers' pool, so compaction never races a publication for its
# commit (either would retry, but a night's publication should not wait on it).
@dg.op(description="Merge the lake's small Parquet files, expire snapshots older than 30 days, delete unused files.",
       pool=WORK_POOL)
def compact_and_expire(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    done = maintenance.maintain(warehouse.lake)
    context.log.info(f"lake maintenance: {done}")
    context.add_output_metadata({
        "data_files_before": done.data_files_before, "data_files_after": done.data_files_after,
        "snapshots_expired": done.snapshots_expired, "files_deleted": done.files_deleted,
    })


@dg.job(description="Compact the published lake and expire its old snapshots.")
def lake_maintenance_job():
    compact_and_expire()


lake_maintenance_schedule = dg.ScheduleDefinition(
    job=lake_maintenance_job,
    cron_schedule="0 4 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 04:00 UTC, after the nightly run (02:00) and request pass (02:30).",
)
