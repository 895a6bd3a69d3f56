"""The request service without Dagster: filing, claiming, producing, reading
for one acting user, downloading and expiring, over a plain ``Warehouse`` with
an injected clock.

The world of ``test_requests`` is built with the plain pipeline steps (no
Dagster run) and published, as the CLI and the HTTP API find it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pytest

from certpipeline import lake, pipeline
from certpipeline import report_requests as rq
from certpipeline import request_rules
from certpipeline.pipeline import Warehouse
from certpipeline.request_service import FileUnavailable, NotFound, NoWarehouseYet, Outcome, RequestService
from certpipeline_tests.conftest import Landing
from certpipeline_tests.test_requests import (
    ADMIN,
    CREATOR,
    DAY,
    EXPIRED,
    LIVE,
    MENTOR,
    PASSWORD,
    TODAY,
    files_containing,
    read_csv,
    unzip,
    write_world,
)

NOON = dt.datetime.combine(TODAY, dt.time(12), dt.timezone.utc)


def build(warehouse: Warehouse, day: dt.date) -> None:
    """One nightly day with the plain steps, then publication."""
    with warehouse.work() as con:
        pipeline.ingest_landing_day(con, warehouse.paths, day)
        pipeline.refresh_entity_history(con)
        pipeline.build_report_snapshots(con, day)
        pipeline.publish_warehouse(con, warehouse)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("service-world") / "data"
    root.mkdir()
    write_world(Landing(root))
    build(Warehouse(root), DAY)
    return root


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def service(built, data_dir, clock) -> RequestService:
    shutil.copytree(built, data_dir, dirs_exist_ok=True)
    return RequestService(Warehouse(data_dir.resolve(), clock=clock))


def queue_row(service: RequestService, request_id: str) -> dict:
    with service.warehouse.requests() as queue:
        cursor = queue.execute("SELECT * FROM ops.report_requests WHERE request_id = ?", [request_id])
        return dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))


def published_row(service: RequestService, request_id: str) -> tuple:
    from certpipeline import lake

    with lake.reader(service.warehouse.lake) as con:
        return con.execute("SELECT status, file_path, row_count FROM ops.report_requests WHERE request_id = ?",
                           [request_id]).fetchone()


def produce_waiting(service: RequestService) -> list[Outcome]:
    return service.produce_batch([request_id for request_id, _ in service.claim()])


def test_file_claim_produce_download_and_publish(service, clock, tmp_path):
    request_id = service.file(rq.RequestSpec("user_profile_exhaust", CREATOR, batch=LIVE), PASSWORD)
    row = queue_row(service, request_id)
    assert (row["status"], row["requested_at"], row["encrypted"]) == (rq.SUBMITTED, NOON, True)
    assert service.warehouse.vault.open(row["password_ciphertext"]) == PASSWORD

    clock.now = NOON + dt.timedelta(minutes=5)
    assert service.claim() == [(request_id, 0)]  # attempts so far: one counts when production ends
    assert service.claim() == []  # on lease
    [outcome] = service.produce_batch([request_id])
    zip_path = service.warehouse.paths.exhausts / "user_profile_exhaust" / f"batch_b-live_9c7b587a32-{request_id}.zip"
    assert outcome == Outcome(request_id, rq.SUCCESS, str(zip_path), 3)
    row = queue_row(service, request_id)
    assert (row["status"], row["completed_at"], row["password_ciphertext"]) == (rq.SUCCESS, clock.now, None)
    # The pass published the statuses: analysts see the same as the queue.
    assert published_row(service, request_id) == (rq.SUCCESS, str(zip_path), 3)

    assert service.download(request_id, CREATOR) == zip_path
    header, rows = read_csv(unzip(zip_path, PASSWORD, tmp_path / "out"))
    assert header[4:9] == ["User UUID", "User Name", "Email ID", "Registration Date", "User Status"]
    assert len(rows) == 3
    # A second pass over the same id does nothing.
    assert service.produce_batch([request_id]) == [Outcome(request_id, "not pending", skipped=True)]
    assert files_containing(service.warehouse.paths.root, PASSWORD.encode()) == []


def test_refusals_store_nothing(service):
    cases = [
        (rq.RequestSpec("user_profile_exhaust", CREATOR, batch=LIVE), None,
         "user_profile_exhaust contains personal data: a password is mandatory"),
        (rq.RequestSpec("user_profile_exhaust", CREATOR, batch=LIVE), "", "the password is empty"),
        (rq.RequestSpec("user_profile_exhaust", MENTOR, batch=LIVE), PASSWORD,
         "u-mentor may not request user_profile_exhaust for batch b-live: "
         "only platform admins, the course or batch creator may"),
        (rq.RequestSpec("question_set_report", ADMIN, batch="b-nope"), None, "unknown batch 'b-nope'"),
    ]
    for spec, password, refusal in cases:
        with pytest.raises(rq.RequestRefused) as refused:
            service.file(spec, password)
        assert str(refused.value) == refusal
    with service.warehouse.requests() as queue:
        assert queue.execute("SELECT count(*) FROM ops.report_requests").fetchone() == (0,)


def test_filing_needs_a_published_warehouse(tmp_path):
    service = RequestService(Warehouse(tmp_path))
    with pytest.raises(NoWarehouseYet, match="run `certpipeline run` first"):
        service.file(rq.RequestSpec("question_set_report", ADMIN, batch=LIVE), None)


def test_filing_reads_each_new_publication_through_one_kept_lake_session(service, monkeypatch):
    opened = []
    real_open = lake.open_reader
    monkeypatch.setattr(lake, "open_reader", lambda settings: opened.append(settings) or real_open(settings))
    newcomer = "u-new-admin"
    spec = rq.RequestSpec("question_set_report", newcomer, batch=LIVE)
    with pytest.raises(rq.RequestRefused, match="unknown requester 'u-new-admin'"):
        service.file(spec, None)
    # The next night publishes the newcomer as a platform admin.
    next_day = DAY + dt.timedelta(days=1)
    Landing(service.warehouse.root).event(next_day, "user.upserted", event_id="e-newcomer", payload={
        "user_id": newcomer, "name": "New Admin", "email": "new@example.com",
        "registered_at": "2025-01-15T00:00:00Z", "custom_fields": {}, "platform_role": "admin"})
    build(service.warehouse, next_day)
    assert service.file(spec, None).startswith("req-")
    assert service.file(dataclasses.replace(spec, report_type="user_profile_exhaust"), PASSWORD).startswith("req-")
    assert len(opened) == 1


def test_reads_are_for_the_requester_or_a_platform_admin(service):
    mine = service.file(rq.RequestSpec("question_set_report", MENTOR, batch=LIVE), None)
    theirs = service.file(rq.RequestSpec("course_progress_exhaust", CREATOR, batch=LIVE), None)
    assert service.get(mine, MENTOR)["request_id"] == mine
    assert "password_ciphertext" not in service.get(mine, MENTOR)
    for reader, request_id in ((MENTOR, theirs), (CREATOR, mine), ("u-nobody", mine)):
        with pytest.raises(NotFound, match=f"no request '{request_id}'"):
            service.get(request_id, reader)
        with pytest.raises(NotFound):
            service.download(request_id, reader)
    assert service.get(theirs, ADMIN)["requested_by"] == CREATOR
    assert [r["request_id"] for r in service.list_scope("batch", LIVE, MENTOR)] == [mine]
    assert [r["request_id"] for r in service.list_scope("batch", LIVE, CREATOR)] == [theirs]
    assert {r["request_id"] for r in service.list_scope("batch", LIVE, ADMIN)} == {mine, theirs}
    assert {r["request_id"] for r in service.list_scope("batch", LIVE)} == {mine, theirs}  # the operator's CLI
    with pytest.raises(NotFound):
        service.get("req-nope")


def test_no_file_before_success(service):
    request_id = service.file(rq.RequestSpec("question_set_report", MENTOR, batch=LIVE), None)
    with pytest.raises(FileUnavailable, match=f"{request_id} is Submitted: no file to download") as unavailable:
        service.download(request_id, MENTOR)
    assert unavailable.value.expired is False


def test_files_expire_after_the_retention_period(service, clock):
    request_id = service.file(rq.RequestSpec("course_progress_exhaust", MENTOR, batch=EXPIRED), None)
    [outcome] = produce_waiting(service)
    path = Path(outcome.detail)
    clock.now = NOON + dt.timedelta(days=10)
    kept = service.file(rq.RequestSpec("question_set_report", MENTOR, batch=LIVE), None)
    assert produce_waiting(service)[0].status == rq.SUCCESS

    # One second before 30 days: still there. At 30 days: refused, even before the files are deleted.
    clock.now = NOON + dt.timedelta(days=30, seconds=-1)
    assert service.download(request_id, MENTOR) == path
    assert service.expire_files() == []
    clock.now = NOON + dt.timedelta(days=30)
    with pytest.raises(FileUnavailable, match="expired after 30 days") as unavailable:
        service.download(request_id, MENTOR)
    assert unavailable.value.expired is True

    clock.now = NOON + dt.timedelta(days=31)
    assert service.expire_files() == [request_id]
    assert not path.exists()
    row = queue_row(service, request_id)
    assert (row["status"], row["file_path"], row["row_count"]) == (rq.EXPIRED, None, 1)
    assert row["status_reason"] == "the file was deleted after the 30-day retention period"
    assert published_row(service, request_id) == (rq.EXPIRED, None, 1)
    with pytest.raises(FileUnavailable, match="expired after 30 days"):
        service.download(request_id, MENTOR)
    # The later file is kept until its own 30 days.
    assert Path(queue_row(service, kept)["file_path"]).exists()
    assert service.expire_files() == []


def test_retention_days_come_from_the_warehouse(service, clock):
    short = RequestService(dataclasses.replace(service.warehouse, retention_days=1))
    request_id = short.file(rq.RequestSpec("question_set_report", MENTOR, batch=LIVE), None)
    produce_waiting(short)
    clock.now = NOON + dt.timedelta(days=1)
    assert short.expire_files() == [request_id]


def test_a_production_error_is_an_outcome_and_retried(service, monkeypatch):
    monkeypatch.setattr(request_rules, "report_frame", lambda state, spec: (_ for _ in ()).throw(RuntimeError("disk on fire")))
    request_id = service.file(rq.RequestSpec("question_set_report", MENTOR, batch=LIVE), None)
    assert produce_waiting(service) == [Outcome(request_id, rq.PENDING, "RuntimeError: disk on fire",
                                                production_error=True)]
    assert queue_row(service, request_id)["status_reason"] == (
        "attempt 1 of 3 failed, retried on the next pass: RuntimeError: disk on fire")
