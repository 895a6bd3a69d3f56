"""Partitions: one per landing day, and one per report request.

The first daily partition is ``CERTPIPELINE_FIRST_DAY`` when set, otherwise
the earliest landing folder in the data directory when the code location
loads (so generated data and a fresh export show as they are, not as a
thousand missing days), otherwise yesterday. The last is yesterday (UTC).
Landing an older day needs a code-location reload (the UI's *Reload*) or the
variable.
"""

import datetime as dt
import warnings

import dagster as dg

from certpipeline.landing_files import earliest_landing_day
from certpipeline.settings import Settings
from certpipeline.warehouse import DataPaths


def first_partition_day(settings: Settings | None = None) -> dt.date:
    settings = settings or Settings.from_environment()
    if settings.first_day:
        return settings.first_day
    earliest = earliest_landing_day(DataPaths(settings.data_dir))
    return earliest or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


daily_partitions = dg.DailyPartitionsDefinition(start_date=first_partition_day().isoformat(), timezone="UTC")

# A backfill of any range is one run (the UI's, the CLI's, and
# `dagster asset materialize --partition-range`): every landing day of the
# range is ingested before any report of the range is computed, and the
# run's fixed cost is paid once. BackfillPolicy is a Dagster beta API, used
# knowingly; its warning is kept out of the UI's logs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    one_run_per_range = dg.BackfillPolicy.single_run()


def partition_days(context: dg.AssetExecutionContext) -> list[dt.date]:
    """The days of the partition, or of the range, a step is materializing."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


# One partition per report request, added when a request is picked up.
request_partitions = dg.DynamicPartitionsDefinition(name="report_requests")
