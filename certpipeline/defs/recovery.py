"""The daemon's side of recovering from killed runs (see certpipeline.run_recovery)."""

import dagster as dg

from certpipeline.run_recovery import fail_abandoned_runs


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks failed every STARTED run whose process is gone (SIGKILL, OOM killer, reboot) and frees "
    "its pool slot, so the runs queued behind it start without anyone touching the instance.",
)
def abandoned_run_sensor(context: dg.SensorEvaluationContext):
    failed = fail_abandoned_runs(context.instance)
    for run in failed:
        context.log.warning(f"run {run.run_id} ({run.job_name}): process {run.pid} is gone; marked failed")
    return dg.SkipReason(f"{len(failed)} abandoned run(s) marked failed" if failed else "no abandoned runs")
