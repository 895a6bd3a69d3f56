import os

import dagster as dg

# The first landing day a backfill can reach; older exports need an earlier one.
FIRST_DAY = os.environ.get("CERTPIPELINE_FIRST_DAY", "2024-01-01")

daily_partitions = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC")

# One partition per report request, added when a request is picked up.
request_partitions = dg.DynamicPartitionsDefinition(name="report_requests")
