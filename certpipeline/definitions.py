import dagster as dg

from certpipeline.defs import ingestion, nightly, reports, requests
from certpipeline.defs.resources import WarehouseResource

defs = dg.Definitions(
    assets=[ingestion.raw_events, ingestion.entity_history, reports.certificate_reports,
            reports.published_warehouse, requests.report_exhaust],
    jobs=[nightly.nightly_job, requests.report_job],
    schedules=[nightly.nightly_schedule, requests.nightly_request_schedule],
    sensors=[requests.report_request_sensor],
    resources={"warehouse": WarehouseResource.from_environment()},
)
