"""Report snapshots as of each partition day, their checks, and the publication
of the warehouse analysts open."""


import dagster as dg

from certpipeline import pipeline
from certpipeline.defs.ingestion import entity_history
from certpipeline.defs.metadata import frame_metadata, table_schema
from certpipeline.defs.partitions import daily_partitions, one_run_per_range, partition_days
from certpipeline.defs.resources import WORK_POOL, WarehouseResource
from certpipeline.reports import checks
from certpipeline.reports.columns import report_columns
from certpipeline.reports.tables import REPORT_BUILDERS

REPORT_DESCRIPTIONS = {
    "certificate_type_totals": "Counted awards per course and certificate type (seed 000).",
    "path_certificate_stats": "Per path certificate: certified and enrolled learners, associated paths (seed 001, active users).",
    "path_certificate_learners": "Per certificate and enrolled learner: latest status, delivery and expiration (seed 001, active users).",
    "learner_certificate_history": "Per enrollment in a session granting a certificate (seed 001, active users).",
    "course_batch_dashboard": "Per batch: dates, Live or Expired, total enrollment (seed 002).",
}

# A report as of D reads every landing day up to D (late arrivals included),
# so its partition depends on all entity_history partitions up to D: an asset
# backfill then ingests the whole range before computing any report.
EVERY_DAY_UP_TO = dg.TimeWindowPartitionMapping(start_offset=-100_000)

def _report_specs() -> list[dg.AssetSpec]:
    # Built inside a function: the defs-folder loader collects module-level
    # AssetSpecs as assets of their own, which would define each report twice.
    return [_report_spec(name) for name in REPORT_BUILDERS]


def _report_spec(name: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        ["reports", name],
        deps=[dg.AssetDep(entity_history, partition_mapping=EVERY_DAY_UP_TO)],
        group_name="reports",
        kinds={"polars", "duckdb"},
        description=REPORT_DESCRIPTIONS[name] + " One snapshot per report_date.",
        metadata={"dagster/column_schema": table_schema(report_columns(name))},
    )


def _check_spec(name: str, table: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=dg.AssetKey(["reports", table]), description=description)


report_check_specs = [
    *[_check_spec("keys_unique", table, "No two rows of a snapshot share the report's key.") for table in REPORT_BUILDERS],
    _check_spec("totals_reconcile_with_awards", "certificate_type_totals",
                "Total certificates issued equals the counted awards with a course, counted independently in SQL."),
    _check_spec("learner_certificates_listed", "path_certificate_learners",
                "Every learner row's certificate is in path_certificate_stats with user status 'all'."),
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
        reports = pipeline.build_report_snapshots_for_days(con, days)
        results = checks.run_report_checks_for_days(con, days)
    for name, frame in reports.items():
        yield dg.MaterializeResult(asset_key=dg.AssetKey(["reports", name]), metadata=frame_metadata(frame))
    for result in results:
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
    kinds={"duckdb"},
    description="warehouse.duckdb, swapped in atomically so analysts' read-only sessions always see a "
    "complete run and never block the pipeline.",
)
def published_warehouse(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.work() as con:
        path = pipeline.publish_warehouse(con, warehouse.paths)
        tables = con.sql(
            "SELECT schema_name || '.' || table_name AS table_name, estimated_size AS rows "
            "FROM duckdb_tables() WHERE database_name = current_database() AND schema_name IN ('reports', 'state', 'raw') ORDER BY 1"
        ).pl()
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "size_bytes": path.stat().st_size, **frame_metadata(tables)}
    )


