"""Report requests in Dagster: one dynamic partition per request, a sensor and
a nightly schedule that pick up waiting requests, and the asset that produces
the files.

A pass claims every waiting request and launches one run over the range of
their partitions (a single-run backfill policy): the state is loaded once for
the whole batch instead of once per request, and 1,000 requests cost one run,
not 1,000.
"""

import datetime as dt
import warnings
from dataclasses import dataclass

import dagster as dg
import duckdb
import polars as pl

from certpipeline import requests as report_requests
from certpipeline.defs.metadata import frame_metadata
from certpipeline.defs.partitions import request_partitions
from certpipeline.defs.resources import WarehouseResource
from certpipeline.faults import crash_point
from certpipeline.password_vault import PasswordVault
from certpipeline.state import State, load_state

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


# BackfillPolicy is a Dagster beta API, used knowingly: it is what lets one run
# produce a whole batch. Its warning is kept out of the UI's logs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    one_run_per_batch = dg.asset(
        partitions_def=request_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="requests",
        kinds={"csv"},
        description="The files of report requests (partition = request id), under exhausts/. "
        "Each request's status in ops.report_requests says how it went.",
    )


@one_run_per_batch
def report_exhaust(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    outcomes = produce_requests(warehouse, context.partition_keys)
    produced = [o for o in outcomes if not o["skipped"]]
    table = pl.DataFrame(
        [{k: o[k] for k in ("request_id", "status", "detail", "rows")} for o in produced],
        schema={"request_id": pl.String, "status": pl.String, "detail": pl.String, "rows": pl.Int64},
    )
    counts = table.group_by("status").len().sort("status").rows()
    context.log.info(f"{len(produced)} request(s) produced: " + ", ".join(f"{n} {s}" for s, n in counts))
    failed = [o for o in produced if o["error"]]
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} request(s) failed and will be retried on the next pass: "
            + "; ".join(f"{o['request_id']}: {o['detail']}" for o in failed[:5]),
            metadata=frame_metadata(table),
        )
    return dg.MaterializeResult(metadata={**frame_metadata(table), **{s: n for s, n in counts}})


def produce_requests(warehouse: WarehouseResource, request_ids: list[str], today: dt.date | None = None) -> list[dict]:
    """Produce every request of ``request_ids`` still Pending; returns one outcome each.

    Holds the work lock throughout, so productions never overlap and a request
    no longer Pending (finished by another pass) is skipped. One request's
    failure does not stop the others."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    vault = PasswordVault(warehouse.paths.pipeline / "secret.key")
    outcomes = []
    with warehouse.work() as con:
        with warehouse.requests() as queue:
            pending = [report_requests.get_request(queue, request_id)
                       for request_id in report_requests.pending_among(queue, request_ids)]
        state = _state_for(con, today, [stored.spec for stored in pending]) if pending else None
        pending_ids = {stored.request_id for stored in pending}
        for request_id in request_ids:
            if request_id not in pending_ids:
                outcomes.append(_outcome(request_id, "not pending", skipped=True))
                continue
            outcomes.append(_produce_one(con, warehouse, vault, state, request_id))
    return outcomes


def _state_for(con: duckdb.DuckDBPyConnection, today: dt.date, specs: list) -> State:
    """The state the batch needs: when every request is about batches, only
    those batches' rows (a batch exhaust is a small slice of the platform)."""
    if all(spec.batch is not None for spec in specs):
        return load_state(con, today, batches=sorted({spec.batch for spec in specs}),
                          also_users=sorted({spec.requested_by for spec in specs}))
    return load_state(con, today)


def _outcome(request_id, status, detail="", rows=None, skipped=False, error=False) -> dict:
    return {"request_id": request_id, "status": status, "detail": detail, "rows": rows, "skipped": skipped,
            "error": error}


def _produce_one(con: duckdb.DuckDBPyConnection, warehouse: WarehouseResource, vault: PasswordVault, state: State,
                 request_id: str) -> dict:
    with warehouse.requests() as queue:
        stored = report_requests.get_request(queue, request_id)
    try:
        try:
            password = vault.open(stored.password_ciphertext) if stored.password_ciphertext else None
        except ValueError as error:
            # A key that cannot open the password now never will: no retry.
            raise report_requests.RequestRefused(f"{error}; file the request again") from None
        report_file = report_requests.produce(state, warehouse.paths.exhausts, request_id, stored.spec, password)
    except report_requests.RequestRefused as refusal:
        with warehouse.requests() as queue:
            status = report_requests.mark_failed_attempt(queue, request_id, str(refusal), permanent=True)
        return _outcome(request_id, status, str(refusal))
    except Exception as error:  # noqa: BLE001 - recorded on the request, retried on the next pass
        reason = f"{type(error).__name__}: {error}"
        with warehouse.requests() as queue:
            status = report_requests.mark_failed_attempt(queue, request_id, reason, permanent=False)
        return _outcome(request_id, status, reason, error=True)
    crash_point("request.file_written")
    with warehouse.requests() as queue:
        report_requests.mark_success(queue, request_id, report_file)
    return _outcome(request_id, report_requests.SUCCESS, str(report_file.path), report_file.row_count)


def produce_request(warehouse: WarehouseResource, request_id: str, today: dt.date | None = None) -> dict:
    """Produce one request (what the batch does for each)."""
    return produce_requests(warehouse, [request_id], today)[0]


report_job = dg.define_asset_job(
    "report_request_job",
    selection=[report_exhaust],
    executor_def=dg.in_process_executor,
    tags={"certpipeline/warehouse": "work"},
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
    with warehouse.requests() as queue:
        attempts = report_requests.claim_waiting(queue, include_leased=include_leased)
    claimed = [request_id for request_id, _ in attempts]
    if not claimed:
        return ClaimedBatch([], [], None)
    position = {key: index for index, key in enumerate(known_partitions)}
    new = [key for key in claimed if key not in position]
    ordered = sorted((key for key in claimed if key in position), key=position.__getitem__) + new
    run_request = dg.RunRequest(
        # Unique per pass: each claim is a new attempt of its requests. The daemon
        # launches a sensor's run key once, so a retry must not reuse the last key.
        run_key=f"{ordered[0]}..{ordered[-1]}:{len(claimed)}:{claimed[0]}:{attempts[0][1]}",
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
