"""Landing files -> raw.events -> typed entity history, one landing day per partition."""


import dagster as dg
import polars as pl

from certpipeline import pipeline
from certpipeline.defs.metadata import frame_metadata
from certpipeline.defs.partitions import daily_partitions, one_run_per_range, partition_days
from certpipeline.landing_files import missing_landing_message
from certpipeline.defs.resources import WORK_POOL, WarehouseResource


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_range,
    pool=WORK_POOL,
    group_name="ingestion",
    kinds={"duckdb"},
    description="One landing day of raw events (raw.events) and the lines rejected with their reason "
    "(raw.rejected_events). Re-running a day replaces exactly that day.",
)
def raw_events(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    days = partition_days(context)
    missing = missing_landing_message(warehouse.paths, days)
    if missing:
        raise dg.Failure(description=missing)
    with warehouse.work() as con:
        accounts = pipeline.ingest_landing_days(con, warehouse.paths, days)
    totals = accounts.select(
        "lines_read", "accepted", "duplicates", "rejected", unreadable_files=pl.col("file_rejection").count()
    ).sum().row(0, named=True)
    context.log.info(
        f"{days[0]}..{days[-1]}: {len(accounts)} files, {totals['lines_read']} lines read, {totals['accepted']} "
        f"accepted, {totals['duplicates']} duplicates, {totals['rejected']} rejected, "
        f"{totals['unreadable_files']} files unreadable"
    )
    return dg.MaterializeResult(
        metadata={**frame_metadata(accounts), "files": len(accounts), **{k: int(v or 0) for k, v in totals.items()}}
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_range,
    deps=[raw_events],
    pool=WORK_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            "references_resolve",
            asset="entity_history",
            description="Enrollments, awards, memberships, sessions and answers refer to entities the "
            "warehouse knows; unresolved references are listed, not silently joined away.",
        )
    ],
    group_name="ingestion",
    kinds={"duckdb"},
    description="Typed history of every entity (state.*_history), from which the state as of any day "
    "is derived; state.users, state.enrollments, ... are the current state.",
)
def entity_history(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.work() as con:
        counts = pipeline.refresh_entity_history(con)
        problems = pipeline.referential_problems(con)
    return dg.MaterializeResult(
        metadata={**{f"{entity}_history_rows": rows for entity, rows in counts.items()}, **frame_metadata(problems)},
        check_results=[
            dg.AssetCheckResult(
                check_name="references_resolve",
                passed=problems.is_empty(),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unresolved_references": problems.height, **frame_metadata(problems)},
            )
        ],
    )

