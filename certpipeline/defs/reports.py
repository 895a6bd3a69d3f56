"""Report snapshots as of each partition day, their checks, and the publication
of the warehouse analysts open."""


import dagster as dg

from certpipeline import pipeline
from certpipeline.defs.ingestion import entity_history
from certpipeline.defs.metadata import PREVIEW_ROWS, table_preview, table_schema
from certpipeline.defs.partitions import daily_partitions, one_run_per_range, partition_days
from certpipeline.defs.resources import WORK_POOL, WarehouseResource
from certpipeline.reports import catalog, checks

# A report as of D reads every landing day up to D (late arrivals included),
# so its partition depends on all entity_history partitions up to D: an asset
# backfill then ingests the whole range before computing any report.
EVERY_DAY_UP_TO = dg.TimeWindowPartitionMapping(start_offset=-100_000)

def _report_specs() -> list[dg.AssetSpec]:
    # Built inside a function: the defs-folder loader collects module-level
    # AssetSpecs as assets of their own, which would define each report twice.
    return [_report_spec(name) for name in catalog.TABLES]


def _report_spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["reports", name],
        deps=[dg.AssetDep(entity_history, partition_mapping=EVERY_DAY_UP_TO)],
        group_name="reports",
        kinds={"polars", "duckdb"},
        description=catalog.BY_NAME[name].description + " One snapshot per report_date.",
        metadata={"dagster/column_schema": table_schema(catalog.table_columns(name))},
    )


report_check_specs = [
    dg.AssetCheckSpec(check.name, asset=dg.AssetKey(["reports", check.table]), description=check.description)
    for check in checks.REPORT_CHECKS
]


@dg.multi_asset(
    specs=_report_specs(),
    check_specs=report_check_specs,
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_range,
    pool=WORK_POOL,
    name="certificate_reports",
    description="Computes every report table from one load of the state as of each partition day "
    "(metadata: the rows of every day of the run).",
)
def certificate_reports(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    days = partition_days(context)
    with warehouse.work() as con:
        computed = pipeline.build_and_check_report_snapshots(con, days, keep_rows=PREVIEW_ROWS)
    for name, rows in computed.row_counts.items():
        yield dg.MaterializeResult(asset_key=dg.AssetKey(["reports", name]), metadata={
            "dagster/row_count": rows, "preview": table_preview(computed.first_rows[name])})
    for result in computed.checks:
        yield dg.AssetCheckResult(
            asset_key=dg.AssetKey(["reports", result.table]),
            check_name=result.name,
            passed=result.passed,
            metadata={"problems": result.problems, **({"detail": result.detail} if result.detail else {})},
        )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=one_run_per_range,
    deps=[certificate_reports],
    pool=WORK_POOL,
    group_name="publication",
    kinds={"ducklake"},
    description="The DuckLake analysts open: what this run changed, added as one new snapshot, so "
    "read-only sessions always see complete runs and never block the pipeline.",
)
def published_warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.work() as con:
        published = pipeline.publish_warehouse(con, warehouse.get_warehouse())
    return dg.MaterializeResult(
        metadata={
            "snapshot_id": published.snapshot_id,
            "report_days": [day.isoformat() for day in published.report_days],
            "landing_days": [day.isoformat() for day in published.landing_days],
            "history_events": published.history_events,
            "requests_changed": published.requests_changed,
        }
    )
