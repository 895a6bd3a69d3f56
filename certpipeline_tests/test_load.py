"""1,000 requests filed at once are all produced, none lost, none twice."""

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from certpipeline import report_requests as rq
from certpipeline.definitions import defs
from certpipeline.defs.requests import claim_batch
from certpipeline.state import load_state
from certpipeline_tests.conftest import run_nightly

BATCHES = 500
REPORT_TYPES = ("course_progress_exhaust", "question_set_report")


def write_batches(landing, day) -> None:
    """An admin, one course, and BATCHES batches of one learner each."""
    landing.user(day, "admin", platform_role="admin")
    landing.course(day, "course")
    for number in range(BATCHES):
        landing.session(day, f"batch-{number}", "course")
        landing.user(day, f"learner-{number}")
        landing.enroll(day, f"enrollment-{number}", f"learner-{number}", f"batch-{number}")


@pytest.mark.slow
def test_a_thousand_requests_filed_at_once_are_each_produced_once(landing, warehouse, instance):
    today = dt.datetime.now(dt.timezone.utc).date()
    day = today - dt.timedelta(days=1)
    write_batches(landing, day)
    assert run_nightly(warehouse, day, instance).success
    with warehouse.work() as con:
        state = load_state(con, today)

    specs = [rq.RequestSpec(report_type, "admin", batch=f"batch-{number}")
             for number in range(BATCHES) for report_type in REPORT_TYPES]

    def file_all(chunk):
        ids = []
        for spec in chunk:
            with warehouse.requests() as queue:
                ids.append(rq.file_request(queue, state, spec, None))
        return ids

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        filed = [request_id for ids in pool.map(file_all, [specs[i::4] for i in range(4)]) for request_id in ids]
    filing_seconds = time.monotonic() - started
    assert len(set(filed)) == 1000

    started = time.monotonic()
    batch = claim_batch(warehouse, instance.get_dynamic_partitions("report_requests"))
    instance.add_dynamic_partitions("report_requests", batch.new_partitions)
    result = defs.resolve_job_def("report_request_job").execute_in_process(
        instance=instance, tags=batch.run_request.tags, resources={"warehouse": warehouse},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    producing_seconds = time.monotonic() - started
    assert result.success
    print(f"\nfiled 1,000 requests in {filing_seconds:.1f}s, produced them in {producing_seconds:.1f}s")

    with warehouse.requests() as queue:
        statuses = queue.execute(
            "SELECT status, count(*), count(DISTINCT file_path) FROM ops.report_requests GROUP BY ALL").fetchall()
    assert statuses == [("Success", 1000, 1000)]
    files = [p for p in warehouse.paths.exhausts.rglob("*") if p.is_file()]
    assert len(files) == 1000
    assert sorted(f.name.rsplit("-req-", 1)[1].removesuffix(".csv") for f in files) == sorted(
        request_id.removeprefix("req-") for request_id in filed)
    assert claim_batch(warehouse, instance.get_dynamic_partitions("report_requests")).run_request is None
