"""Report requests in Dagster: one dynamic partition per request, a sensor and
a nightly schedule that pick up waiting requests, the asset that produces
the files, and the daily retention pass that deletes old ones.

A pass claims every waiting request and launches one run over the range of
their partitions (a single-run backfill policy): the state is loaded once for
the whole batch instead of once per request, and 1,000 requests cost one run,
not 1,000.
"""

import datetime as dt
import warnings
from dataclasses import dataclass

import dagster as dg
import polars as pl

from certpipeline.defs.metadata import frame_metadata
from certpipeline.defs.partitions import request_partitions
from certpipeline.defs.resources import WORK_POOL, WarehouseResource
from certpipeline.request_service import Outcome, RequestService

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


# BackfillPolicy is a Dagster beta API, used knowingly: it is what lets one run
# produce a whole batch. Its warning is kept out of the UI's logs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    one_run_per_batch = dg.asset(
        partitions_def=request_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WORK_POOL,
        group_name="requests",
        kinds={"csv"},
        description="The files of report requests (partition = request id), under exhausts/. "
        "Each request's status in ops.report_requests says how it went.",
    )


@one_run_per_batch
def report_exhaust(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    outcomes = RequestService(warehouse.get_warehouse()).produce_batch(context.partition_keys)
    table = outcome_table([o for o in outcomes if not o.skipped])
    counts = table.group_by("status").len().sort("status").rows()
    context.log.info(f"{table.height} request(s) produced: " + ", ".join(f"{n} {s}" for s, n in counts))
    failed = [o for o in outcomes if o.production_error]
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} request(s) failed and will be retried on the next pass: "
            + "; ".join(f"{o.request_id}: {o.detail}" for o in failed[:5]),
            metadata=frame_metadata(table),
        )
    return dg.MaterializeResult(metadata={**frame_metadata(table), **{s: n for s, n in counts}})


def outcome_table(outcomes: list[Outcome]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"request_id": o.request_id, "status": o.status, "detail": o.detail, "rows": o.rows} for o in outcomes],
        schema={"request_id": pl.String, "status": pl.String, "detail": pl.String, "rows": pl.Int64},
    )


report_job = dg.define_asset_job(
    "report_request_job",
    selection=[report_exhaust],
    executor_def=dg.in_process_executor,
    description="Produces the report requests of a range of request partitions.",
)


@dataclass(frozen=True)
class ClaimedBatch:
    claimed: list[str]  # request ids, oldest first
    new_partitions: list[str]  # to add to the dynamic partitions before the run
    run_request: dg.RunRequest | None  # one run over all claimed requests; None when nothing waits


def claim_batch(warehouse: WarehouseResource, known_partitions: list[str],
                include_leased: bool = False) -> ClaimedBatch:
    """Claim every waiting request, for one run that produces them all.

    New partitions are appended after ``known_partitions`` in claim order, so
    the range from the earliest claimed partition to the last new one covers
    the batch (and perhaps finished requests in between, which are skipped)."""
    claimed_at = dt.datetime.now(dt.timezone.utc)
    attempts = RequestService(warehouse.get_warehouse()).claim(include_leased=include_leased)
    claimed = [request_id for request_id, _ in attempts]
    if not claimed:
        return ClaimedBatch([], [], None)
    position = {key: index for index, key in enumerate(known_partitions)}
    new = [key for key in claimed if key not in position]
    ordered = sorted((key for key in claimed if key in position), key=position.__getitem__) + new
    run_request = dg.RunRequest(
        # Unique per pass (the claim time): the daemon launches a sensor's run
        # key once, so a retry must not reuse the last key.
        run_key=f"{ordered[0]}..{ordered[-1]}:{len(claimed)}:{claimed[0]}:{claimed_at.isoformat()}",
        tags={RANGE_START_TAG: ordered[0], RANGE_END_TAG: ordered[-1], "certpipeline/requests": str(len(claimed))},
    )
    return ClaimedBatch(claimed, new, run_request)


@dg.sensor(job=report_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_request_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    batch = claim_batch(warehouse, context.instance.get_dynamic_partitions(request_partitions.name))
    if batch.run_request is None:
        return dg.SkipReason("no waiting report requests")
    return dg.SensorResult(
        run_requests=[batch.run_request],
        dynamic_partitions_requests=[request_partitions.build_add_request(batch.new_partitions)]
        if batch.new_partitions else [],
    )


@dg.schedule(
    job=report_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Drains the request queue after the nightly run, besides the sensor.",
)
def nightly_request_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    batch = claim_batch(warehouse, context.instance.get_dynamic_partitions(request_partitions.name))
    if batch.run_request is None:
        return dg.SkipReason("no waiting report requests")
    context.instance.add_dynamic_partitions(request_partitions.name, batch.new_partitions)
    return [batch.run_request]


@dg.asset(
    group_name="requests",
    pool=WORK_POOL,  # holds the work lock while it deletes, like a production
    description="Deletes report files older than CERTPIPELINE_RETENTION_DAYS (default 30); "
    "their requests stay in ops.report_requests, Expired, without a file path.",
)
def report_retention(warehouse: WarehouseResource) -> dg.MaterializeResult:
    expired = RequestService(warehouse.get_warehouse()).expire_files()
    return dg.MaterializeResult(metadata={"expired_files": len(expired), "retention_days": warehouse.retention_days})


report_retention_job = dg.define_asset_job(
    "report_retention_job",
    selection=[report_retention],
    executor_def=dg.in_process_executor,
    description="Deletes report files past their retention period.",
)

report_retention_schedule = dg.ScheduleDefinition(
    job=report_retention_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The retention pass, daily after the nightly run and the request schedule.",
)
