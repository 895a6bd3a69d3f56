"""Report requests in Dagster: one dynamic partition per request, a sensor and
a nightly schedule that pick up waiting requests, and the asset that produces
a request's file."""


import datetime as dt

import dagster as dg

from certpipeline import requests as report_requests
from certpipeline.faults import crash_point
from certpipeline.defs.partitions import request_partitions
from certpipeline.defs.resources import WarehouseResource
from certpipeline.password_vault import PasswordVault
from certpipeline.state import load_state

REQUEST_ID_TAG = "certpipeline/request_id"


@dg.asset(
    partitions_def=request_partitions,
    group_name="requests",
    kinds={"csv"},
    description="The file of one report request (partition = request id), under exhausts/. "
    "The request's status in ops.report_requests says how it went.",
)
def report_exhaust(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    request_id = context.partition_key
    outcome = produce_request(warehouse, request_id)
    context.log.info(f"request {request_id}: {outcome['status']}")
    return dg.MaterializeResult(metadata=outcome)


def produce_request(warehouse: WarehouseResource, request_id: str, today: dt.date | None = None) -> dict:
    """Produce one claimed request; returns metadata describing the outcome.

    Holds the work lock for the whole production, so productions never overlap
    and a request no longer Pending (done by another pass) is skipped."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    vault = PasswordVault(warehouse.paths.pipeline / "secret.key")
    with warehouse.work() as con:
        with warehouse.requests() as queue:
            stored = report_requests.get_request(queue, request_id)
        if stored is None or stored.status != report_requests.PENDING:
            return {"status": stored.status if stored else "unknown", "skipped": True}
        try:
            password = vault.open(stored.password_ciphertext) if stored.password_ciphertext else None
            state = load_state(con, today)
            report_file = report_requests.produce(state, warehouse.paths.exhausts, request_id, stored.spec, password)
        except report_requests.RequestRefused as refusal:
            with warehouse.requests() as queue:
                status = report_requests.mark_failed_attempt(queue, request_id, str(refusal), permanent=True)
            return {"status": status, "reason": str(refusal)}
        except Exception as error:
            with warehouse.requests() as queue:
                report_requests.mark_failed_attempt(
                    queue, request_id, f"{type(error).__name__}: {error}", permanent=False
                )
            raise
        crash_point("request.file_written")
        with warehouse.requests() as queue:
            report_requests.mark_success(queue, request_id, report_file)
    return {
        "status": report_requests.SUCCESS,
        "file": dg.MetadataValue.path(str(report_file.path)),
        "dagster/row_count": report_file.row_count,
        "encrypted": report_file.encrypted,
    }


report_job = dg.define_asset_job(
    "report_request_job",
    selection=[report_exhaust],
    executor_def=dg.in_process_executor,
    tags={"certpipeline/warehouse": "work"},
    description="Produces one report request (partition = request id).",
)


def claim_run_requests(warehouse: WarehouseResource, include_leased: bool = False) -> list[dg.RunRequest]:
    with warehouse.requests() as queue:
        claimed = report_requests.claim_waiting(queue, include_leased=include_leased)
    return [
        dg.RunRequest(partition_key=request_id, run_key=f"{request_id}:{attempt}", tags={REQUEST_ID_TAG: request_id})
        for request_id, attempt in claimed
    ]


@dg.sensor(job=report_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def report_request_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    run_requests = claim_run_requests(warehouse)
    if not run_requests:
        return dg.SkipReason("no waiting report requests")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[request_partitions.build_add_request([r.partition_key for r in run_requests])],
    )


@dg.schedule(
    job=report_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Drains the request queue after the nightly run, besides the sensor.",
)
def nightly_request_schedule(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    run_requests = claim_run_requests(warehouse)
    if not run_requests:
        return dg.SkipReason("no waiting report requests")
    context.instance.add_dynamic_partitions(request_partitions.name, [r.partition_key for r in run_requests])
    return run_requests
