"""Named fault points for the crash-safety and failure tests.

With ``CERTPIPELINE_CRASH_AT=<name>`` in its environment, a process kills
itself with SIGKILL when it reaches that point: no cleanup, no rollback, the
way a power cut or the OOM killer would end a nightly run. With
``CERTPIPELINE_DISK_FULL_AT=<name>`` it raises ``OSError(ENOSPC)`` there
instead, the way a full disk fails a write. Unset (always, in production) each
costs one dictionary lookup.
"""

import errno
import os
import signal

ENVIRONMENT_VARIABLE = "CERTPIPELINE_CRASH_AT"
DISK_FULL_VARIABLE = "CERTPIPELINE_DISK_FULL_AT"

# Every point, so a test can check it was reached (and none is misspelt).
POINTS = (
    "ingest.file_loaded",  # inside the ingestion transaction, after the first file
    "history.refreshing",  # inside the entity-history transaction, before commit
    "reports.table_written",  # after the first table's snapshot file of the day is in place
    "carried.files_written",  # a run's state is saved in files, not yet named as the one to carry
    "publish.lake_written",  # inside the lake transaction, before it commits
    "publish.lake_committed",  # the lake has the night, the working database still lists it as pending
    "request.file_written",  # the report file is in place, the request not yet marked Success
)


def crash_point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown crash point {name!r}")
    if os.environ.get(ENVIRONMENT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(DISK_FULL_VARIABLE) == name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
