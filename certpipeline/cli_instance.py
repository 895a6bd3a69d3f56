"""The Dagster instance the command line runs in: ``DAGSTER_HOME`` (by
default ``<data dir>/dagster_home``, shared with the UI), the ``dagster.yaml``
it writes there (pools, run monitoring), and running a job quietly, so that a
failure is one line on the terminal while the run in the UI keeps the details."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from certpipeline.settings import Settings


def dagster_instance(settings: Settings):
    """The persistent Dagster instance: ``DAGSTER_HOME``, by default
    ``<data dir>/dagster_home`` so the UI and the CLI share run history."""
    import dagster as dg

    from certpipeline.run_recovery import fail_abandoned_runs
    from certpipeline.warehouse import PRIVATE_FILE_MODE, exclusive_lock, private_directory

    home = str(settings.dagster_home)
    # Dagster's own DagsterInstance.get() (and `dg dev`, started from here) read it.
    os.environ["DAGSTER_HOME"] = home
    private_directory(Path(home))
    # Two commands starting together on a fresh home would both create
    # Dagster's SQLite storage (which the instance does when it is built) and
    # one would fail with "table alembic_version already exists".
    with exclusive_lock(Path(home) / ".instance.lock"):
        config = Path(home) / "dagster.yaml"
        if not config.exists():
            descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(DAGSTER_YAML)
        elif config.read_text() in PREVIOUS_DAGSTER_YAMLS:
            config.write_text(DAGSTER_YAML)
        instance = dg.DagsterInstance.get()
        # Without a daemon nobody else would release a run an earlier, killed
        # command left STARTED holding the pool slot.
        for abandoned in fail_abandoned_runs(instance):
            progress(f"certpipeline: run {abandoned.run_id} of {abandoned.job_name} was abandoned "
                      f"(process {abandoned.pid} is gone); marked failed")
        return instance


# Steps that write the working database take the one slot of the duckdb_work
# pool (pools without a configured limit get default_limit), whoever launched
# the run; the file lock stays the guarantee underneath. Run monitoring fails
# runs stuck starting or canceling and frees the slots of finished runs; the
# abandoned_run_sensor (and the CLI) fail runs whose process was killed.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 5
"""

# What earlier versions wrote; replaced, since their run-tag limit never
# released a run killed while STARTED.
PREVIOUS_DAGSTER_YAMLS = (
    "telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 4\n  tag_concurrency_limits:\n"
    "    - key: certpipeline/warehouse\n      limit: 1\n",
)

# Dagster's console logger would print a step failure with its traceback; the
# CLI says what failed in one line (the run in the UI keeps the details).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@contextlib.contextmanager
def runs_quietly():
    """Standard error of a Dagster run goes nowhere: the console logger is
    already quiet, and this silences what else writes there (the compute-log
    `tail` processes complain when DAGSTER_HOME vanishes). The CLI reports the
    outcome in one line; the run in the UI keeps the details."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
