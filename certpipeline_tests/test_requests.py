"""Report requests (contract sections 5, 6 and 7): filing and its refusals, the
request lifecycle through the real Dagster sensor and ``report_exhaust``
asset, the seven report files value by value, encrypted zips opened with the
real ``7z``, and the ``request`` / ``requests`` / ``process-requests`` CLI.

One small world is built with the landing helpers and run through one nightly
day of the production definitions; each test gets its own copy of the data
directory. Dates are relative to today (UTC) because a request is produced as
of the day it is processed.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import itertools
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from certpipeline import lake, pipeline
from certpipeline import report_requests as rq
from certpipeline import request_rules
from certpipeline.defs.requests import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    report_exhaust,
    report_request_sensor,
)
from certpipeline.defs.resources import WarehouseResource
from certpipeline.request_service import Outcome, RequestService
from certpipeline.state import load_state
from certpipeline_tests.conftest import Landing, published, run_nightly

REPOSITORY = Path(__file__).resolve().parent.parent
PASSWORD = "Tr0ub4dor&3-zebra"

TODAY = dt.datetime.now(dt.timezone.utc).date()
DAY = TODAY - dt.timedelta(days=3)  # the nightly landing day of the world
LATER_DAY = DAY + dt.timedelta(days=1)  # a later landing day, still inside the daily partitions


def ago(days: int) -> dt.date:
    return TODAY - dt.timedelta(days=days)


def stamp(day: dt.date, time: str = "09:00:00") -> str:
    return f"{day.isoformat()}T{time}Z"


def add_months(day: dt.date, months: int) -> dt.date:
    """Contract section 3: calendar months, clamped to the month's last day."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# -- the world -------------------------------------------------------------------

COURSE = "c-ds"
COURSE_NAME = "+Data Science 101"  # formula prefixes in names, contract section 5
LIVE = "b-live"
LIVE_NAME = "-Live batch"
EXPIRED = "b-expired"
EXPIRED_NAME = "@Expired batch"
PATH = "c-path"
PATH_SESSION = "p-1"
CERT_COURSE = "cert-ds"
CERT_PATH = "cert-cloud"
INJECTED_NAME = '=HYPERLINK("x")'

ADMIN, CREATOR, BATCH_CREATOR, MENTOR = "u-admin", "u-creator", "u-bcreator", "u-mentor"
AUTHOR, INSTRUCTOR, COACH, GROUP_ADMIN = "u-author", "u-instructor", "u-coach", "u-gadmin"
L1, L2, L3, L4, GONE = "u-l1", "u-l2", "u-l3", "u-l4", "u-gone"

ENROLLED_L1 = ago(50)
COMPLETED_L1 = ago(20)
ENROLLED_L2 = ago(40)
ENROLLED_GONE = ago(45)
ANSWERED_L1 = ago(25)
ISSUED_L1 = ago(20)  # cert-ds, 12 months: Valid
ISSUED_L2 = ago(10)  # cert-cloud, 1 month: Expiring soon
ENROLLED_PATH_L2 = ago(30)
ENROLLED_PATH_L3 = ago(28)


def write_world(landing: Landing, day: dt.date = DAY) -> None:
    d = day
    landing.user(d, ADMIN, platform_role="admin")
    for user_id in (CREATOR, BATCH_CREATOR, MENTOR, AUTHOR, INSTRUCTOR, COACH, GROUP_ADMIN):
        landing.user(d, user_id)
    landing.user(d, L1, name="Asha Menon", registered_at="2025-03-04T10:00:00Z",
                 custom_fields={"state": "Kerala", "district": "Ernakulam"})
    landing.user(d, L2, name=INJECTED_NAME, email="l2@example.org", registered_at="2025-06-30T23:30:00Z",
                 custom_fields={"state": "Goa"})
    landing.user(d, L3, registered_at="2024-02-29T00:00:00Z")
    landing.user(d, L4, custom_fields={"zone": "north"})  # not in the live batch: no "Custom: zone" there
    landing.user(d, GONE, name="Gone Person", registered_at="2025-01-02T00:00:00Z")
    landing.event(d, "user.deleted", {"user_id": GONE}, occurred_at=stamp(d, "18:00:00"))

    # A group tree: g-top > g-sub > g-leaf. The coach leads the top, the group admin the middle.
    landing.group(d, "g-top", name="Top group")
    landing.group(d, "g-sub", parent="g-top", name="Sub group")
    landing.group(d, "g-leaf", parent="g-sub", name="Leaf group")
    landing.member(d, "g-top", COACH, role="coach")
    landing.member(d, "g-sub", GROUP_ADMIN, role="admin")
    landing.member(d, "g-top", L1)
    landing.member(d, "g-sub", L2)
    landing.member(d, "g-leaf", L3)

    landing.certificate(d, CERT_COURSE, validity_months=12, certificate_type="verified", owner_group_id="g-top",
                        title="DS Certificate")
    landing.certificate(d, CERT_PATH, validity_months=1, certificate_type="honor", owner_group_id="g-sub",
                        title="Cloud Certificate")

    landing.course(d, COURSE, name=COURSE_NAME, created_by=CREATOR)
    landing.session(d, LIVE, COURSE, certificate_id=CERT_COURSE, name=LIVE_NAME, created_by=BATCH_CREATOR,
                    mentors=[MENTOR], start_date=ago(60).isoformat(),
                    end_date=(TODAY + dt.timedelta(days=100)).isoformat())
    landing.session(d, EXPIRED, COURSE, name=EXPIRED_NAME, created_by=GONE, mentors=[MENTOR],
                    start_date=ago(200).isoformat(), end_date=ago(30).isoformat(), status="ended")
    landing.course(d, PATH, name="Cloud Path", created_by=ADMIN, authors=[AUTHOR], instructors=[INSTRUCTOR])
    landing.session(d, PATH_SESSION, PATH, certificate_id=CERT_PATH, name="Cloud Path Session 1",
                    auto_reenrollment=True)

    # The live batch: L1 completed with an award and answers, L2 in progress, the deleted user enrolled.
    landing.enroll(d, "e-l1", L1, LIVE, enrolled_at=stamp(ENROLLED_L1))
    landing.progress(d, "e-l1", status="completed", progress_percent=100, completed_at=stamp(COMPLETED_L1, "15:00:00"))
    landing.enroll(d, "e-l2", L2, LIVE, enrolled_at=stamp(ENROLLED_L2))
    landing.progress(d, "e-l2", status="in_progress", progress_percent=40)
    landing.enroll(d, "e-gone", GONE, LIVE, enrolled_at=stamp(ENROLLED_GONE))
    landing.award(d, "a-l1", L1, CERT_COURSE, stamp(ISSUED_L1, "16:00:00"), enrollment_id="e-l1")
    for question, text, response, score in (("q-1", "What is a mean?", "An average", 3),
                                            ("q-2", "@SUM(A1)", "-1", 2)):
        landing.event(d, "question.answered", {
            "attempt_id": "att-1", "user_id": L1, "session_id": LIVE, "question_set_id": "qs-1",
            "question_id": question, "question_text": text, "response": response, "score": score,
            "max_score": 5, "answered_at": stamp(ANSWERED_L1, "10:00:00")})
    landing.event(d, "question.answered", {
        "attempt_id": "att-2", "user_id": L2, "session_id": LIVE, "question_set_id": "qs-1",
        "question_id": "q-1", "question_text": "What is a mean?", "response": "A median", "score": 0,
        "max_score": 5, "answered_at": stamp(ago(15), "11:00:00")})

    # The expired batch: L1 again.
    landing.enroll(d, "e-l1-old", L1, EXPIRED, enrolled_at=stamp(ago(190)))
    landing.progress(d, "e-l1-old", status="completed", progress_percent=100, completed_at=stamp(ago(150)))

    # The path: L2 certified (expiring soon), L3 enrolled without an award.
    landing.enroll(d, "e-p-l2", L2, PATH_SESSION, enrolled_at=stamp(ENROLLED_PATH_L2), auto_reenrolled=True)
    landing.progress(d, "e-p-l2", status="in_progress", progress_percent=60)
    landing.enroll(d, "e-p-l3", L3, PATH_SESSION, enrolled_at=stamp(ENROLLED_PATH_L3))
    landing.award(d, "a-l2", L2, CERT_PATH, stamp(ISSUED_L2, "08:00:00"), enrollment_id="e-p-l2")


@pytest.fixture(scope="module")
def built_world(tmp_path_factory) -> Path:
    """The world after one nightly day, built once per module."""
    root = tmp_path_factory.mktemp("world") / "data"
    root.mkdir()
    write_world(Landing(root))
    with dg.DagsterInstance.ephemeral() as ephemeral:
        result = run_nightly(WarehouseResource(data_dir=str(root)), DAY, ephemeral)
        assert result.success
    return root


@pytest.fixture
def world(built_world, data_dir) -> WarehouseResource:
    """A fresh copy of the built world in this test's data directory."""
    shutil.copytree(built_world, data_dir, dirs_exist_ok=True)
    return WarehouseResource(data_dir=str(data_dir))


# -- helpers ---------------------------------------------------------------------


def seal(warehouse: WarehouseResource, password: str = PASSWORD) -> bytes:
    return warehouse.get_warehouse().vault.seal(password)


def file(warehouse: WarehouseResource, report_type: str, by: str, password: str | None = None,
         now: dt.datetime | None = None, day: dt.date = TODAY, **scope) -> str:
    """File a request the way the CLI does, checking rights against the state as of ``day``."""
    filters = tuple(sorted(scope.pop("filters", ())))
    spec = rq.RequestSpec(report_type, by, filters=filters, **scope)
    ciphertext = seal(warehouse, password) if password else None
    with warehouse.work() as con:
        state = load_state(con, day)
    with warehouse.requests() as queue:
        return rq.file_request(queue, state, spec, ciphertext, now=now)


def request_rows(warehouse: WarehouseResource, where: str = "true", params=None) -> list[dict]:
    with warehouse.requests() as queue:
        cursor = queue.execute(f"SELECT * FROM ops.report_requests WHERE {where} ORDER BY requested_at", params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def request_row(warehouse: WarehouseResource, request_id: str) -> dict:
    rows = request_rows(warehouse, "request_id = ?", [request_id])
    assert len(rows) == 1
    return rows[0]


def evaluate_sensor(warehouse: WarehouseResource, instance: dg.DagsterInstance) -> dg.RunRequest | None:
    """One evaluation of the real sensor, which claims every waiting request, with its
    dynamic partition requests applied the way the daemon would. Returns its one run
    request (over the range of the claimed partitions), or None when it skipped."""
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
    result = report_request_sensor(context)
    if isinstance(result, dg.SkipReason):
        return None
    assert isinstance(result, dg.SensorResult)
    for partitions_request in result.dynamic_partitions_requests:
        assert partitions_request.partitions_def_name == "report_requests"
        instance.add_dynamic_partitions("report_requests", list(partitions_request.partition_keys))
    [run_request] = result.run_requests
    return run_request


def covered(instance: dg.DagsterInstance, run_request: dg.RunRequest) -> list[str]:
    """The request partitions a run request covers: one key, or the range of its tags."""
    if run_request.partition_key is not None:
        return [run_request.partition_key]
    keys = instance.get_dynamic_partitions("report_requests")
    start, end = run_request.tags[RANGE_START_TAG], run_request.tags[RANGE_END_TAG]
    return keys[keys.index(start):keys.index(end) + 1]


def run_claimed(warehouse: WarehouseResource, instance: dg.DagsterInstance, run_request: dg.RunRequest,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """The run the daemon launches for a run request: ``report_exhaust`` over its partitions."""
    return dg.materialize(
        [report_exhaust], partition_key=run_request.partition_key, resources={"warehouse": warehouse},
        instance=instance, tags=dict(run_request.tags), raise_on_error=raise_on_error,
    )


def sensor_pass(warehouse: WarehouseResource, instance: dg.DagsterInstance,
                raise_on_error: bool = True) -> dg.ExecuteInProcessResult | None:
    """The sensor, then the run it asked for; None when nothing was waiting."""
    run_request = evaluate_sensor(warehouse, instance)
    return None if run_request is None else run_claimed(warehouse, instance, run_request, raise_on_error)


def materialize_request(warehouse: WarehouseResource, instance: dg.DagsterInstance, request_id: str,
                        raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """``report_exhaust`` for one request partition, as launched from the UI."""
    return dg.materialize([report_exhaust], partition_key=request_id, resources={"warehouse": warehouse},
                          instance=instance, raise_on_error=raise_on_error)


def produce_request(warehouse: WarehouseResource, request_id: str) -> Outcome:
    """What a pass does for one request, through the request service."""
    return RequestService(warehouse.get_warehouse()).produce_batch([request_id])[0]


def exhaust_files(warehouse: WarehouseResource) -> list[Path]:
    root = warehouse.paths.exhausts
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "report files are UTF-8 with a byte-order mark (contract section 5)"
    text = data[3:].decode("utf-8")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    header, body = rows[0], rows[1:]
    return header, [dict(zip(header, row, strict=True)) for row in body]


def require_7z() -> str:
    exe = shutil.which("7z")
    assert exe is not None, "7z (p7zip-full) is required for these tests"
    return exe


def run_7z(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_7z(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)


def unzip(zip_path: Path, password: str, out: Path) -> Path:
    done = run_7z("x", f"-p{password}", f"-o{out}", "-y", str(zip_path))
    assert done.returncode == 0, done.stdout + done.stderr
    members = sorted(out.iterdir())
    assert len(members) == 1
    return members[0]


def produce_and_read(warehouse: WarehouseResource, instance, request_id: str, tmp_path: Path,
                     password: str | None = None) -> tuple[list[str], list[dict]]:
    assert sensor_pass(warehouse, instance).success
    row = request_row(warehouse, request_id)
    assert row["status"] == rq.SUCCESS, row["status_reason"]
    path = Path(row["file_path"])
    if password is None:
        assert path.suffix == ".csv"
        return read_csv(path)
    assert path.suffix == ".zip"
    return read_csv(unzip(path, password, tmp_path / f"unzipped-{request_id}"))


def later_landing(warehouse: WarehouseResource) -> Landing:
    """Landing helpers for a later day of a copied world, with event ids the world has not used."""
    landing = Landing(Path(warehouse.data_dir))
    landing._ids = itertools.count(100_000)
    return landing


def request_count(warehouse: WarehouseResource) -> int:
    with warehouse.requests() as queue:
        return queue.execute("SELECT count(*) FROM ops.report_requests").fetchall()[0][0]


# -- 1. filing: who may request what, and every refusal ---------------------------

KNOWN_TYPES = ("certificate_type_totals, path_certificate_stats, path_certificate_learners, "
               "learner_certificate_history, course_progress_exhaust, user_profile_exhaust, question_set_report")
PATH_REPORT_RIGHTS = "only platform admins, group admins, coaches, and authors or instructors of paths may"
BATCH_RIGHTS = "only platform admins, the course or batch creator and batch mentors may"

# (id, report type, requester, password, scope and filters, refusal)
REFUSALS = [
    ("unknown-type", "bogus_report", ADMIN, None, {"batch": LIVE},
     f"unknown report type 'bogus_report'; known: {KNOWN_TYPES}"),
    ("batch-report-given-course", "course_progress_exhaust", ADMIN, None, {"course": COURSE},
     "course_progress_exhaust takes --batch"),
    ("batch-report-given-batch-and-course", "question_set_report", ADMIN, None, {"batch": LIVE, "course": COURSE},
     "question_set_report takes --batch"),
    ("course-report-without-scope", "certificate_type_totals", ADMIN, None, {},
     "certificate_type_totals takes --course"),
    ("history-without-learner", "learner_certificate_history", ADMIN, None, {"certificate": CERT_PATH},
     "learner_certificate_history takes --certificate and --learner"),
    ("stats-given-a-batch", "path_certificate_stats", ADMIN, None, {"batch": LIVE},
     "path_certificate_stats takes no scope option"),
    ("learners-given-a-course", "path_certificate_learners", ADMIN, None, {"course": PATH},
     "path_certificate_learners takes --certificate"),
    ("unknown-course", "certificate_type_totals", ADMIN, None, {"course": "c-nope"}, "unknown course 'c-nope'"),
    ("unknown-batch", "question_set_report", ADMIN, None, {"batch": "b-nope"}, "unknown batch 'b-nope'"),
    ("unknown-batch-profile", "user_profile_exhaust", ADMIN, PASSWORD, {"batch": "b-nope"}, "unknown batch 'b-nope'"),
    ("unknown-certificate", "path_certificate_learners", ADMIN, None, {"certificate": "cert-nope"},
     "unknown certificate 'cert-nope'"),
    ("unknown-learner", "learner_certificate_history", ADMIN, None, {"certificate": CERT_PATH, "learner": "u-nope"},
     "unknown learner 'u-nope'"),
    ("unknown-group-filter", "path_certificate_stats", ADMIN, None, {"filters": [("group", "g-nope")]},
     "unknown group 'g-nope'"),
    ("unknown-requester", "course_progress_exhaust", "u-nobody", None, {"batch": LIVE},
     "unknown requester 'u-nobody'"),
    # The deleted user created the expired batch: deleted, not merely without the right.
    ("deleted-requester", "course_progress_exhaust", GONE, None, {"batch": EXPIRED},
     "requester 'u-gone' is a deleted user"),
    ("totals-by-learner", "certificate_type_totals", L1, None, {"course": COURSE},
     "u-l1 may not request certificate_type_totals for course c-ds: "
     "only platform admins, the course creator, authors and instructors may"),
    ("totals-by-mentor", "certificate_type_totals", MENTOR, None, {"course": COURSE},
     "u-mentor may not request certificate_type_totals for course c-ds: "
     "only platform admins, the course creator, authors and instructors may"),
    ("totals-by-author-of-another-course", "certificate_type_totals", AUTHOR, None, {"course": COURSE},
     "u-author may not request certificate_type_totals for course c-ds: "
     "only platform admins, the course creator, authors and instructors may"),
    ("stats-by-learner", "path_certificate_stats", L1, None, {},
     f"u-l1 may not request path_certificate_stats: {PATH_REPORT_RIGHTS}"),
    ("stats-by-course-creator", "path_certificate_stats", CREATOR, None, {},
     f"u-creator may not request path_certificate_stats: {PATH_REPORT_RIGHTS}"),
    ("learners-by-mentor", "path_certificate_learners", MENTOR, None, {"certificate": CERT_PATH},
     f"u-mentor may not request path_certificate_learners: {PATH_REPORT_RIGHTS}"),
    ("history-by-learner", "learner_certificate_history", L2, None, {"certificate": CERT_PATH, "learner": L2},
     f"u-l2 may not request learner_certificate_history: {PATH_REPORT_RIGHTS}"),
    # The group admin leads g-sub (L2, L3), not L1 in g-top; cert-ds is no path of theirs.
    ("history-of-a-learner-outside-the-groups", "learner_certificate_history", GROUP_ADMIN, None,
     {"certificate": CERT_COURSE, "learner": L1}, "u-gadmin may not see learner u-l1 for certificate cert-ds"),
    ("progress-by-learner", "course_progress_exhaust", L1, None, {"batch": LIVE},
     f"u-l1 may not request course_progress_exhaust for batch b-live: {BATCH_RIGHTS}"),
    ("progress-by-author-of-another-course", "course_progress_exhaust", AUTHOR, None, {"batch": LIVE},
     f"u-author may not request course_progress_exhaust for batch b-live: {BATCH_RIGHTS}"),
    ("progress-by-creator-of-another-batch", "course_progress_exhaust", BATCH_CREATOR, None, {"batch": EXPIRED},
     f"u-bcreator may not request course_progress_exhaust for batch b-expired: {BATCH_RIGHTS}"),
    ("profile-by-mentor", "user_profile_exhaust", MENTOR, PASSWORD, {"batch": LIVE},
     "u-mentor may not request user_profile_exhaust for batch b-live: "
     "only platform admins, the course or batch creator may"),
    ("questions-by-coach", "question_set_report", COACH, None, {"batch": LIVE},
     f"u-coach may not request question_set_report for batch b-live: {BATCH_RIGHTS}"),
    ("profile-without-password", "user_profile_exhaust", CREATOR, None, {"batch": LIVE},
     "user_profile_exhaust contains personal data: a password is mandatory"),
    ("filters-on-a-batch-report", "course_progress_exhaust", ADMIN, None,
     {"batch": LIVE, "filters": [("user_status", "all")]},
     "course_progress_exhaust takes no filters; filters apply to path certificate reports"),
    ("filters-on-totals", "certificate_type_totals", ADMIN, None, {"course": COURSE, "filters": [("group", "g-top")]},
     "certificate_type_totals takes no filters; filters apply to path certificate reports"),
    ("bad-user-status", "path_certificate_stats", ADMIN, None, {"filters": [("user_status", "bogus")]},
     "filter user_status must be one of active, deleted, all, not 'bogus'"),
    ("bad-registered-from", "path_certificate_learners", ADMIN, None,
     {"certificate": CERT_PATH, "filters": [("registered_from", "notadate")]},
     "filter registered_from must be a date YYYY-MM-DD, not 'notadate'"),
    ("bad-registered-to", "path_certificate_stats", ADMIN, None, {"filters": [("registered_to", "2025-13-01")]},
     "filter registered_to must be a date YYYY-MM-DD, not '2025-13-01'"),
    ("unknown-filter", "path_certificate_stats", ADMIN, None, {"filters": [("colour", "red")]},
     "unknown filter 'colour': use user_status, group, registered_from, registered_to or custom.KEY"),
]


@pytest.mark.parametrize(
    "report_type, by, password, scope, refusal", [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS]
)
def test_refused_at_filing_with_a_clear_reason_and_no_row(world, report_type, by, password, scope, refusal):
    with pytest.raises(rq.RequestRefused) as refused:
        file(world, report_type, by, password=password, **dict(scope))
    assert str(refused.value) == refusal
    assert request_count(world) == 0


# (id, report type, requester, password, scope): every role the contract lets request.
ALLOWED = [
    ("totals-admin", "certificate_type_totals", ADMIN, None, {"course": COURSE}),
    ("totals-creator", "certificate_type_totals", CREATOR, None, {"course": COURSE}),
    ("totals-author", "certificate_type_totals", AUTHOR, None, {"course": PATH}),
    ("totals-instructor", "certificate_type_totals", INSTRUCTOR, None, {"course": PATH}),
    ("stats-admin", "path_certificate_stats", ADMIN, None, {}),
    ("stats-coach", "path_certificate_stats", COACH, None, {}),
    ("stats-group-admin", "path_certificate_stats", GROUP_ADMIN, None, {}),
    ("stats-author", "path_certificate_stats", AUTHOR, None, {}),
    ("stats-instructor", "path_certificate_stats", INSTRUCTOR, None, {}),
    ("learners-admin", "path_certificate_learners", ADMIN, None, {"certificate": CERT_COURSE}),
    ("learners-coach", "path_certificate_learners", COACH, None, {"certificate": CERT_PATH}),
    ("learners-author", "path_certificate_learners", AUTHOR, None, {"certificate": CERT_PATH}),
    ("history-admin", "learner_certificate_history", ADMIN, None, {"certificate": CERT_COURSE, "learner": L1}),
    ("history-instructor", "learner_certificate_history", INSTRUCTOR, None, {"certificate": CERT_PATH, "learner": L3}),
    ("history-coach", "learner_certificate_history", COACH, None, {"certificate": CERT_COURSE, "learner": L1}),
    # L3 is in g-leaf, a subgroup two levels below the coach's g-top and one below the admin's g-sub.
    ("history-group-admin-subgroup", "learner_certificate_history", GROUP_ADMIN, None,
     {"certificate": CERT_PATH, "learner": L3}),
    ("progress-admin", "course_progress_exhaust", ADMIN, None, {"batch": LIVE}),
    ("progress-course-creator", "course_progress_exhaust", CREATOR, None, {"batch": EXPIRED}),
    ("progress-batch-creator", "course_progress_exhaust", BATCH_CREATOR, None, {"batch": LIVE}),
    ("progress-mentor", "course_progress_exhaust", MENTOR, None, {"batch": LIVE}),
    ("progress-mentor-with-password", "course_progress_exhaust", MENTOR, PASSWORD, {"batch": EXPIRED}),
    ("profile-admin", "user_profile_exhaust", ADMIN, PASSWORD, {"batch": EXPIRED}),
    ("profile-course-creator", "user_profile_exhaust", CREATOR, PASSWORD, {"batch": LIVE}),
    ("profile-batch-creator", "user_profile_exhaust", BATCH_CREATOR, PASSWORD, {"batch": LIVE}),
    ("questions-admin", "question_set_report", ADMIN, None, {"batch": LIVE}),
    ("questions-creator", "question_set_report", CREATOR, None, {"batch": LIVE}),
    ("questions-batch-creator", "question_set_report", BATCH_CREATOR, None, {"batch": LIVE}),
    ("questions-mentor", "question_set_report", MENTOR, PASSWORD, {"batch": LIVE}),
]


@pytest.mark.parametrize(
    "report_type, by, password, scope", [case[1:] for case in ALLOWED], ids=[case[0] for case in ALLOWED]
)
def test_filed_as_submitted_by_every_role_the_contract_allows(world, report_type, by, password, scope):
    before = dt.datetime.now(dt.timezone.utc)
    request_id = file(world, report_type, by, password=password, **scope)
    row = request_row(world, request_id)
    spec = rq.RequestSpec(report_type, by, **scope)
    assert request_id.startswith("req-")
    assert (row["report_type"], row["scope"], row["filters"], row["requested_by"]) == (
        report_type, spec.scope, "{}", by)
    assert row["status"] == rq.SUBMITTED
    assert row["requested_at"] >= before
    assert (row["status_reason"], row["file_path"], row["row_count"], row["completed_at"]) == (None, None, None, None)
    assert row["attempts"] == 0
    assert row["encrypted"] is (password is not None)
    assert (row["password_ciphertext"] is not None) is (password is not None)
    assert request_count(world) == 1


def test_scope_text_is_canonical(world):
    request_id = file(world, "learner_certificate_history", ADMIN, certificate=CERT_PATH, learner=L2,
                      filters=[("user_status", "all"), ("custom.state", "Goa")])
    row = request_row(world, request_id)
    assert row["scope"] == "certificate=cert-cloud;learner=u-l2"
    assert row["filters"] == '{"custom.state": "Goa", "user_status": "all"}'
    assert request_row(world, file(world, "path_certificate_stats", ADMIN))["scope"] == "all"


def test_identical_request_refused_while_submitted_and_pending_then_allowed_after_success(world, instance):
    first = file(world, "course_progress_exhaust", MENTOR, batch=LIVE)
    # Identical = same report type, scope and filters, whoever asks.
    for by in (MENTOR, CREATOR):
        with pytest.raises(rq.RequestRefused) as refused:
            file(world, "course_progress_exhaust", by, batch=LIVE)
        assert str(refused.value) == (
            f"an identical request {first} is still Submitted; it can be requested again once it is processed")
    assert request_count(world) == 1
    # Another report type or another batch is not identical.
    other_type = file(world, "question_set_report", MENTOR, batch=LIVE)
    other_batch = file(world, "course_progress_exhaust", MENTOR, batch=EXPIRED)

    claimed = evaluate_sensor(world, instance)
    assert covered(instance, claimed) == [first, other_type, other_batch]
    assert request_row(world, first)["status"] == rq.PENDING
    with pytest.raises(rq.RequestRefused) as refused:
        file(world, "course_progress_exhaust", MENTOR, batch=LIVE)
    assert str(refused.value) == (
        f"an identical request {first} is still Pending; it can be requested again once it is processed")
    assert request_count(world) == 3

    assert run_claimed(world, instance, claimed).success
    assert request_row(world, first)["status"] == rq.SUCCESS
    again = file(world, "course_progress_exhaust", MENTOR, batch=LIVE)
    assert again != first
    assert request_row(world, again)["status"] == rq.SUBMITTED
    assert request_count(world) == 4


def test_identical_filters_in_another_order_are_identical(world):
    first = file(world, "path_certificate_stats", ADMIN, filters=[("user_status", "all"), ("group", "g-top")])
    with pytest.raises(rq.RequestRefused, match=f"an identical request {first} is still Submitted"):
        file(world, "path_certificate_stats", ADMIN, filters=[("group", "g-top"), ("user_status", "all")])
    file(world, "path_certificate_stats", ADMIN, filters=[("group", "g-sub"), ("user_status", "all")])
    assert request_count(world) == 2


def test_same_path_report_by_two_requesters_waits_then_gives_each_their_view(world, instance, tmp_path):
    """Contract section 6: identical means same report type, scope and filters,
    whoever asks. The path certificate reports show what the requester may see,
    so once the group admin's request is processed the admin gets their own view."""
    by_group_admin = file(world, "path_certificate_stats", GROUP_ADMIN)
    with pytest.raises(rq.RequestRefused, match=f"an identical request {by_group_admin} is still Submitted"):
        file(world, "path_certificate_stats", ADMIN)
    assert sensor_pass(world, instance).success
    by_admin = file(world, "path_certificate_stats", ADMIN)
    assert sensor_pass(world, instance).success
    _, group_admin_rows = read_csv(Path(request_row(world, by_group_admin)["file_path"]))
    _, admin_rows = read_csv(Path(request_row(world, by_admin)["file_path"]))
    # The group admin sees L2 and L3 (g-sub and g-leaf): in the DS batch only L2, uncertified.
    assert [(r["Title"], r["Certified learners"], r["Enrolled learners"]) for r in group_admin_rows] == [
        ("Cloud Certificate", "1", "2"), ("DS Certificate", "0", "1")]
    assert [(r["Title"], r["Certified learners"], r["Enrolled learners"]) for r in admin_rows] == [
        ("Cloud Certificate", "1", "2"), ("DS Certificate", "1", "2")]


# -- 2. lifecycle: Submitted -> Pending -> Success | Failure ----------------------


def test_submitted_pending_success_through_the_sensor_and_the_asset(world, instance):
    request_id = file(world, "user_profile_exhaust", BATCH_CREATOR, password=PASSWORD, batch=LIVE)
    assert request_row(world, request_id)["status"] == rq.SUBMITTED

    before_claim = dt.datetime.now(dt.timezone.utc)
    claimed = evaluate_sensor(world, instance)
    assert covered(instance, claimed) == [request_id]
    assert claimed.run_key and request_id in claimed.run_key
    pending = request_row(world, request_id)
    assert pending["status"] == rq.PENDING
    assert pending["attempts"] == 0  # an attempt counts once its production ends
    assert pending["lease_expires_at"] >= before_claim + rq.DEFAULT_LEASE
    assert pending["password_ciphertext"] is not None
    assert (pending["file_path"], pending["completed_at"]) == (None, None)
    assert instance.get_dynamic_partitions("report_requests") == [request_id]

    result = run_claimed(world, instance, claimed)
    assert result.success
    assert [m.partition for m in result.asset_materializations_for_node("report_exhaust")] == [request_id]

    done = request_row(world, request_id)
    assert done["status"] == rq.SUCCESS
    assert done["status_reason"] is None
    assert done["row_count"] == 3
    assert done["completed_at"] >= pending["requested_at"]
    assert done["password_ciphertext"] is None  # wiped once the request ends
    assert done["lease_expires_at"] is None
    assert done["attempts"] == 1
    path = Path(done["file_path"])
    assert path.parent == world.paths.exhausts / "user_profile_exhaust"
    assert path.name == f"batch_b-live_9c7b587a32-{request_id}.zip"  # ids sanitized into the name
    assert exhaust_files(world) == [path]
    # Nothing is waiting any more.
    assert evaluate_sensor(world, instance) is None


def test_rights_gone_before_production_is_a_failure_without_a_file(world, instance):
    request_id = file(world, "course_progress_exhaust", MENTOR, password=PASSWORD, batch=LIVE)
    # A later landing day takes the mentor off the batch (an upsert replaces the whole batch).
    later_landing(world).session(
        LATER_DAY, LIVE, COURSE, certificate_id=CERT_COURSE, name=LIVE_NAME, created_by=BATCH_CREATOR, mentors=[],
        start_date=ago(60).isoformat(), end_date=(TODAY + dt.timedelta(days=100)).isoformat())
    assert run_nightly(world, LATER_DAY, instance).success

    assert sensor_pass(world, instance).success  # the run worked; the request did not
    row = request_row(world, request_id)
    assert row["status"] == rq.FAILURE
    assert row["status_reason"] == f"u-mentor may not request course_progress_exhaust for batch b-live: {BATCH_RIGHTS}"
    assert (row["file_path"], row["row_count"]) == (None, None)
    assert row["completed_at"] is not None
    assert row["password_ciphertext"] is None
    assert row["attempts"] == 1
    assert exhaust_files(world) == []
    # A refusal is final: not retried.
    assert evaluate_sensor(world, instance) is None
    assert request_row(world, request_id)["status"] == rq.FAILURE
    # And the mentor can no longer file it either.
    with pytest.raises(rq.RequestRefused, match="u-mentor may not request course_progress_exhaust for batch b-live"):
        file(world, "course_progress_exhaust", MENTOR, batch=LIVE)


LATER_CHANGES = {
    "batch-deleted": (lambda landing: landing.event(LATER_DAY, "session.deleted", {"session_id": LIVE}),
                      "unknown batch 'b-live'"),
    "requester-deleted": (lambda landing: landing.event(LATER_DAY, "user.deleted", {"user_id": MENTOR}),
                          "requester 'u-mentor' is a deleted user"),
}


@pytest.mark.parametrize("change", sorted(LATER_CHANGES))
def test_scope_or_requester_gone_before_production_is_a_failure(world, instance, change):
    write_change, reason = LATER_CHANGES[change]
    request_id = file(world, "question_set_report", MENTOR, batch=LIVE)
    write_change(later_landing(world))
    assert run_nightly(world, LATER_DAY, instance).success
    assert sensor_pass(world, instance).success
    row = request_row(world, request_id)
    assert (row["status"], row["status_reason"], row["file_path"], row["attempts"]) == (
        rq.FAILURE, reason, None, 1)
    assert exhaust_files(world) == []


def test_nightly_request_schedule_claims_waiting_requests(world, tmp_path):
    from certpipeline.defs.requests import nightly_request_schedule

    # A schedule context needs a persistent instance, as under the daemon.
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as instance:
        def evaluate():
            # Closed right away: the context enters its own instance, which must not outlive this one.
            with dg.build_schedule_context(instance=instance, resources={"warehouse": world}) as context:
                return nightly_request_schedule(context)

        assert isinstance(evaluate(), dg.SkipReason)
        request_id = file(world, "question_set_report", MENTOR, batch=EXPIRED)
        [run_request] = evaluate()
        assert instance.get_dynamic_partitions("report_requests") == [request_id]
        assert covered(instance, run_request) == [request_id]
        assert request_row(world, request_id)["status"] == rq.PENDING
        assert isinstance(evaluate(), dg.SkipReason)  # claimed: not handed out twice
        assert run_claimed(world, instance, run_request).success
        assert request_row(world, request_id)["status"] == rq.SUCCESS


def test_production_error_is_retried_on_the_next_passes_then_a_failure_with_the_last_error(
        world, instance, monkeypatch):
    calls = []

    def broken_report_frame(state, spec):
        calls.append(spec.report_type)
        raise RuntimeError(f"disk on fire #{len(calls)}")

    monkeypatch.setattr(request_rules, "report_frame", broken_report_frame)
    request_id = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)

    run_keys = []
    for attempt in (1, 2):
        claimed = evaluate_sensor(world, instance)
        assert covered(instance, claimed) == [request_id]
        run_keys.append(claimed.run_key)
        assert not run_claimed(world, instance, claimed, raise_on_error=False).success
        row = request_row(world, request_id)
        assert row["status"] == rq.PENDING
        assert row["attempts"] == attempt
        assert row["status_reason"] == (
            f"attempt {attempt} of 3 failed, retried on the next pass: RuntimeError: disk on fire #{attempt}")
        assert row["password_ciphertext"] is not None  # still needed for the next attempt
        assert (row["file_path"], row["completed_at"]) == (None, None)
        # Still waiting: an identical request is refused meanwhile.
        with pytest.raises(rq.RequestRefused, match=f"an identical request {request_id} is still Pending"):
            file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)

    claimed = evaluate_sensor(world, instance)
    assert covered(instance, claimed) == [request_id]
    run_keys.append(claimed.run_key)
    assert len(set(run_keys)) == 3  # each pass is a new run, not deduplicated by the daemon
    assert not run_claimed(world, instance, claimed, raise_on_error=False).success
    row = request_row(world, request_id)
    assert row["status"] == rq.FAILURE
    assert row["status_reason"] == "RuntimeError: disk on fire #3"
    assert row["attempts"] == 3
    assert row["completed_at"] is not None
    assert row["password_ciphertext"] is None
    assert row["file_path"] is None
    assert calls == ["user_profile_exhaust"] * 3
    assert exhaust_files(world) == []
    assert evaluate_sensor(world, instance) is None  # three attempts in all
    # Once it failed, it may be requested again, and without the fault it succeeds.
    monkeypatch.undo()
    again = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)
    assert sensor_pass(world, instance).success
    assert request_row(world, again)["status"] == rq.SUCCESS


# -- 3. a request left Pending by a crash -----------------------------------------


def test_request_left_pending_by_a_crash_is_produced_once_its_lease_expired(world, instance):
    request_id = file(world, "question_set_report", MENTOR, batch=LIVE)
    crashed_at = dt.datetime.now(dt.timezone.utc)
    with world.requests() as queue:
        assert rq.claim_waiting(queue, now=crashed_at) == [(request_id, 0)]
    # ... and the process died before producing. While the lease runs, the sensor leaves it alone.
    assert evaluate_sensor(world, instance) is None
    with world.requests() as queue:
        assert rq.claim_waiting(queue, now=crashed_at + rq.DEFAULT_LEASE - dt.timedelta(seconds=1)) == []
        assert rq.claim_waiting(queue, now=crashed_at + rq.DEFAULT_LEASE + dt.timedelta(minutes=1)) == [
            (request_id, 0)]  # the crashed claim spent no attempt
    instance.add_dynamic_partitions("report_requests", [request_id])
    assert materialize_request(world, instance, request_id).success
    row = request_row(world, request_id)
    assert (row["status"], row["attempts"], row["row_count"]) == (rq.SUCCESS, 1, 3)
    assert len(exhaust_files(world)) == 1


def test_lease_expiry_is_picked_up_by_the_sensor(world, instance):
    request_id = file(world, "question_set_report", MENTOR, batch=LIVE)
    with world.requests() as queue:
        assert rq.claim_waiting(queue, now=dt.datetime.now(dt.timezone.utc) - 2 * rq.DEFAULT_LEASE) == [
            (request_id, 0)]
    claimed = evaluate_sensor(world, instance)
    assert covered(instance, claimed) == [request_id]
    assert run_claimed(world, instance, claimed).success
    assert request_row(world, request_id)["status"] == rq.SUCCESS


def test_process_requests_takes_a_leased_request_at_once_and_it_is_produced_once(world, instance):
    request_id = file(world, "course_progress_exhaust", CREATOR, batch=LIVE)
    with world.requests() as queue:
        assert rq.claim_waiting(queue) == [(request_id, 0)]
        assert rq.claim_waiting(queue) == []  # still on lease
        assert rq.claim_waiting(queue, include_leased=True) == [(request_id, 0)]
    instance.add_dynamic_partitions("report_requests", [request_id])
    # Both the sensor's run and process-requests' run got it: the second finds it done.
    assert materialize_request(world, instance, request_id).success
    assert request_row(world, request_id)["status"] == rq.SUCCESS
    assert materialize_request(world, instance, request_id).success
    files = exhaust_files(world)
    assert files == [Path(request_row(world, request_id)["file_path"])]
    mtime = files[0].stat().st_mtime_ns
    assert produce_request(world, request_id).skipped is True
    assert files[0].stat().st_mtime_ns == mtime
    assert request_row(world, request_id)["attempts"] == 1  # produced once


def test_unknown_request_id_is_skipped(world):
    assert produce_request(world, "req-does-not-exist").skipped is True
    assert exhaust_files(world) == []


# -- 4. listing --------------------------------------------------------------------


def test_listing_shows_the_ten_newest_of_a_batch_newest_first(world):
    base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=1)
    kinds = [("course_progress_exhaust", None), ("question_set_report", None), ("user_profile_exhaust", PASSWORD)]
    filed = []
    for number in range(12):
        report_type, password = kinds[number % 3]
        request_id = file(world, report_type, CREATOR, password=password, batch=LIVE,
                          now=base + dt.timedelta(minutes=number))
        filed.append(request_id)
        # Processed before the next identical one may be filed.
        with world.requests() as queue:
            assert rq.claim_waiting(queue) == [(request_id, 0)]
        assert produce_request(world, request_id).status == rq.SUCCESS
        if number == 5:  # another batch's request, in between
            other = file(world, "course_progress_exhaust", CREATOR, batch=EXPIRED,
                         now=base + dt.timedelta(minutes=number, seconds=30))
            with world.requests() as queue:
                assert rq.claim_waiting(queue) == [(other, 0)]
            assert produce_request(world, other).status == rq.SUCCESS
    with world.requests() as queue:
        listed = rq.list_requests(queue, "batch", LIVE)
        assert rq.list_requests(queue, "batch", EXPIRED)["request_id"].to_list() == [other]
        assert rq.list_requests(queue, "batch", "b-li%").is_empty()  # no wildcard matching
    assert listed["request_id"].to_list() == list(reversed(filed))[:10]
    assert listed["requested_at"].to_list() == [base + dt.timedelta(minutes=n) for n in range(11, 1, -1)]
    assert set(listed["status"]) == {rq.SUCCESS}
    assert listed["report_type"].to_list() == [kinds[n % 3][0] for n in range(11, 1, -1)]
    assert all(path.endswith(f"{rid}.csv") or path.endswith(f"{rid}.zip")
               for rid, path in zip(listed["request_id"], listed["file_path"]))
    assert request_count(world) == 13


def test_listing_a_certificate_includes_its_learner_requests(world):
    learners = file(world, "path_certificate_learners", ADMIN, certificate=CERT_PATH)
    history = file(world, "learner_certificate_history", ADMIN, certificate=CERT_PATH, learner=L2)
    file(world, "path_certificate_learners", ADMIN, certificate=CERT_COURSE)
    with world.requests() as queue:
        listed = rq.list_requests(queue, "certificate", CERT_PATH)
    assert listed["request_id"].to_list() == [history, learners]


# -- 5. live and expired batches ---------------------------------------------------


def test_live_and_expired_batches_both_produce_files(world, instance):
    assert published(world, "SELECT batch_id, batch_status, total_enrollment FROM reports.course_batch_dashboard "
                            "WHERE report_date = ? ORDER BY batch_id", [DAY]) == [
        (EXPIRED, "Expired", 1), (LIVE, "Live", 3), (PATH_SESSION, "Live", 2)]
    live = file(world, "course_progress_exhaust", MENTOR, batch=LIVE)
    expired = file(world, "course_progress_exhaust", MENTOR, batch=EXPIRED)
    expired_profile = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=EXPIRED)
    claimed = evaluate_sensor(world, instance)
    assert covered(instance, claimed) == [live, expired, expired_profile]
    assert run_claimed(world, instance, claimed).success
    assert [request_row(world, r)["status"] for r in (live, expired, expired_profile)] == [rq.SUCCESS] * 3
    assert [request_row(world, r)["row_count"] for r in (live, expired, expired_profile)] == [3, 1, 1]
    header, rows = read_csv(Path(request_row(world, expired)["file_path"]))
    assert rows == [{
        "Course Id": COURSE, "Course Name": "'" + COURSE_NAME, "Batch Id": EXPIRED, "Batch Name": "'" + EXPIRED_NAME,
        "User UUID": L1, "Enrolment Date": ago(190).isoformat(), "Completion Date": ago(150).isoformat(),
        "Progress": rows[0]["Progress"], "Certificate Status": "Not obtained", "Total Score": rows[0]["Total Score"],
    }]
    assert float(rows[0]["Progress"]) == 100
    assert float(rows[0]["Total Score"]) == 0


# -- 6. the seven report files, column by column ------------------------------------

BATCH_HEADER = ["Course Id", "Course Name", "Batch Id", "Batch Name"]
LIVE_CELLS = {"Course Id": COURSE, "Course Name": "'+Data Science 101", "Batch Id": LIVE, "Batch Name": "'-Live batch"}


def test_certificate_type_totals_file(world, instance, tmp_path):
    request_id = file(world, "certificate_type_totals", CREATOR, course=COURSE)
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == ["CourseID", "Certificate Type", "Total Certificates Issued", "Date Report Run"]
    assert rows == [{"CourseID": COURSE, "Certificate Type": "verified", "Total Certificates Issued": "1",
                     "Date Report Run": TODAY.isoformat()}]
    assert request_row(world, request_id)["row_count"] == 1


def test_path_certificate_stats_file(world, instance, tmp_path):
    request_id = file(world, "path_certificate_stats", AUTHOR)
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == ["Title", "Owner group", "Validity period", "Certified learners", "Enrolled learners",
                      "Associated paths"]
    # The author sees the certificates of their path only.
    assert rows == [{"Title": "Cloud Certificate", "Owner group": "Sub group", "Validity period": "1",
                     "Certified learners": "1", "Enrolled learners": "2", "Associated paths": "1"}]


def test_path_certificate_stats_with_a_custom_field_filter(world, instance, tmp_path):
    request_id = file(world, "path_certificate_stats", ADMIN, filters=[("custom.state", "Goa")])
    _, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert [(r["Title"], r["Certified learners"], r["Enrolled learners"]) for r in rows] == [
        ("Cloud Certificate", "1", "1"), ("DS Certificate", "0", "1")]


def test_path_certificate_learners_file(world, instance, tmp_path):
    request_id = file(world, "path_certificate_learners", COACH, certificate=CERT_PATH)
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == ["Learner", "Latest status", "Delivery date", "Expiration date"]
    assert rows == [
        {"Learner": "'" + INJECTED_NAME + " <l2@example.org>", "Latest status": "Expiring soon",
         "Delivery date": ISSUED_L2.isoformat(), "Expiration date": add_months(ISSUED_L2, 1).isoformat()},
        {"Learner": "Name u-l3 <u-l3@example.com>", "Latest status": "Not obtained", "Delivery date": "",
         "Expiration date": ""},
    ]


def test_path_certificate_learners_group_filter_includes_subgroups(world, instance, tmp_path):
    request_id = file(world, "path_certificate_learners", ADMIN, certificate=CERT_PATH, filters=[("group", "g-sub")])
    _, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert [r["Learner"] for r in rows] == ["'" + INJECTED_NAME + " <l2@example.org>", "Name u-l3 <u-l3@example.com>"]
    request_id = file(world, "path_certificate_learners", ADMIN, certificate=CERT_PATH, filters=[("group", "g-leaf")])
    _, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert [r["Learner"] for r in rows] == ["Name u-l3 <u-l3@example.com>"]


def test_learner_certificate_history_file(world, instance, tmp_path):
    request_id = file(world, "learner_certificate_history", GROUP_ADMIN, password=PASSWORD,
                      certificate=CERT_PATH, learner=L2)
    header, rows = produce_and_read(world, instance, request_id, tmp_path, password=PASSWORD)
    assert header == ["Certification status", "Delivery date", "Expiration date", "Path name", "Path session",
                      "Path status", "Automatic re-enrollment activated?"]
    assert rows == [{"Certification status": "Expiring soon", "Delivery date": ISSUED_L2.isoformat(),
                     "Expiration date": add_months(ISSUED_L2, 1).isoformat(), "Path name": "Cloud Path",
                     "Path session": "Cloud Path Session 1", "Path status": "in_progress",
                     "Automatic re-enrollment activated?": "Yes"}]


def test_course_progress_exhaust_file_has_no_personal_data(world, instance, tmp_path):
    request_id = file(world, "course_progress_exhaust", MENTOR, batch=LIVE)
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == BATCH_HEADER + ["User UUID", "Enrolment Date", "Completion Date", "Progress",
                                     "Certificate Status", "Total Score"]
    assert [r["User UUID"] for r in rows] == [GONE, L1, L2]  # by user
    l1 = rows[1]
    assert {k: l1[k] for k in BATCH_HEADER} == LIVE_CELLS
    assert (l1["Enrolment Date"], l1["Completion Date"], l1["Certificate Status"]) == (
        ENROLLED_L1.isoformat(), COMPLETED_L1.isoformat(), "Valid")
    assert float(l1["Progress"]) == 100
    assert float(l1["Total Score"]) == 5  # 3 + 2 for the two answers in the batch
    l2 = rows[2]
    assert (l2["Enrolment Date"], l2["Completion Date"], l2["Certificate Status"]) == (
        ENROLLED_L2.isoformat(), "", "Not obtained")
    assert (float(l2["Progress"]), float(l2["Total Score"])) == (40, 0)
    text = Path(request_row(world, request_id)["file_path"]).read_text(encoding="utf-8")
    for personal in ("@", "example.com", "example.org", "Asha", "Menon", "Gone Person", "HYPERLINK", "Name u-"):
        assert personal not in text
    assert not any(column.lower() in ("user name", "email id", "name", "email") for column in header)


def test_user_profile_exhaust_file(world, instance, tmp_path):
    request_id = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)
    header, rows = produce_and_read(world, instance, request_id, tmp_path, password=PASSWORD)
    assert header == BATCH_HEADER + ["User UUID", "User Name", "Email ID", "Registration Date", "User Status",
                                     "Custom: district", "Custom: state"]  # L4's "zone" is not in the batch
    assert rows == [
        {**LIVE_CELLS, "User UUID": GONE, "User Name": "Gone Person", "Email ID": "u-gone@example.com",
         "Registration Date": "2025-01-02", "User Status": "deleted", "Custom: district": "", "Custom: state": ""},
        {**LIVE_CELLS, "User UUID": L1, "User Name": "Asha Menon", "Email ID": "u-l1@example.com",
         "Registration Date": "2025-03-04", "User Status": "active", "Custom: district": "Ernakulam",
         "Custom: state": "Kerala"},
        {**LIVE_CELLS, "User UUID": L2, "User Name": "'" + INJECTED_NAME, "Email ID": "l2@example.org",
         "Registration Date": "2025-06-30", "User Status": "active", "Custom: district": "",
         "Custom: state": "Goa"},
    ]


def test_question_set_report_file(world, instance, tmp_path):
    request_id = file(world, "question_set_report", BATCH_CREATOR, batch=LIVE)
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == BATCH_HEADER + ["User UUID", "QuestionSet Id", "Attempt Id", "Attempted On", "Question Id",
                                     "Question Title", "Question Response", "Question Score", "Question Max Score"]
    assert [(r["User UUID"], r["Question Id"]) for r in rows] == [(L1, "q-1"), (L1, "q-2"), (L2, "q-1")]
    first = rows[0]
    assert {k: v for k, v in first.items() if k not in ("Question Score", "Question Max Score")} == {
        **LIVE_CELLS, "User UUID": L1, "QuestionSet Id": "qs-1", "Attempt Id": "att-1",
        "Attempted On": ANSWERED_L1.isoformat(), "Question Id": "q-1", "Question Title": "What is a mean?",
        "Question Response": "An average"}
    assert (float(first["Question Score"]), float(first["Question Max Score"])) == (3, 5)
    assert (rows[2]["Attempt Id"], rows[2]["Attempted On"], rows[2]["Question Response"]) == (
        "att-2", ago(15).isoformat(), "A median")


def test_a_report_with_no_rows_is_a_header_only_file(world, instance, tmp_path):
    request_id = file(world, "question_set_report", MENTOR, batch=EXPIRED)  # nobody answered there
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert header == BATCH_HEADER + ["User UUID", "QuestionSet Id", "Attempt Id", "Attempted On", "Question Id",
                                     "Question Title", "Question Response", "Question Score", "Question Max Score"]
    assert rows == []
    assert request_row(world, request_id)["row_count"] == 0


# -- 7. encrypted zips -------------------------------------------------------------


def test_encrypted_zip_opens_with_7z_and_its_password_only(world, instance, tmp_path):
    request_id = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)
    assert sensor_pass(world, instance).success
    zip_path = Path(request_row(world, request_id)["file_path"])
    assert exhaust_files(world) == [zip_path]  # no plaintext CSV beside it
    assert zip_path.read_bytes()[:2] == b"PK"
    assert b"Asha Menon" not in zip_path.read_bytes()

    listing = run_7z("l", "-slt", str(zip_path))
    assert listing.returncode == 0, listing.stdout + listing.stderr
    members = [line.split(" = ", 1)[1] for line in listing.stdout.splitlines() if line.startswith("Path = ")]
    assert members == [str(zip_path), zip_path.with_suffix(".csv").name]  # the archive, then its only member
    assert "Encrypted = +" in listing.stdout
    [method] = [line for line in listing.stdout.splitlines() if line.startswith("Method = ")]
    assert "AES-256" in method

    wrong = run_7z("x", "-pnot-the-password", f"-o{tmp_path / 'wrong'}", "-y", str(zip_path))
    assert wrong.returncode != 0
    assert not any((tmp_path / "wrong").glob("*.csv")) or all(
        p.stat().st_size == 0 for p in (tmp_path / "wrong").glob("*.csv"))

    csv_path = unzip(zip_path, PASSWORD, tmp_path / "right")
    assert csv_path.name == zip_path.with_suffix(".csv").name
    header, rows = read_csv(csv_path)
    assert header[:5] == BATCH_HEADER + ["User UUID"]
    assert [r["User UUID"] for r in rows] == [GONE, L1, L2]


def test_optional_password_encrypts_a_report_that_does_not_need_one(world, instance, tmp_path):
    request_id = file(world, "certificate_type_totals", ADMIN, password="only-for-this", course=COURSE)
    header, rows = produce_and_read(world, instance, request_id, tmp_path, password="only-for-this")
    assert header[0] == "CourseID" and len(rows) == 1
    assert request_row(world, request_id)["encrypted"] is True


# -- 8. formula injection ------------------------------------------------------------


def test_formula_prefixes_are_neutralized_in_every_text_cell(world, instance, tmp_path):
    profile = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)
    questions = file(world, "question_set_report", CREATOR, batch=LIVE)
    progress = file(world, "course_progress_exhaust", CREATOR, batch=EXPIRED)
    sensor_pass(world, instance)
    _, profile_rows = read_csv(unzip(Path(request_row(world, profile)["file_path"]), PASSWORD, tmp_path / "p"))
    _, question_rows = read_csv(Path(request_row(world, questions)["file_path"]))
    _, progress_rows = read_csv(Path(request_row(world, progress)["file_path"]))
    assert profile_rows[2]["User Name"] == "'=HYPERLINK(\"x\")"  # =
    assert profile_rows[0]["Course Name"] == "'+Data Science 101"  # +
    assert profile_rows[0]["Batch Name"] == "'-Live batch"  # -
    assert progress_rows[0]["Batch Name"] == "'@Expired batch"  # @
    assert (question_rows[1]["Question Title"], question_rows[1]["Question Response"]) == ("'@SUM(A1)", "'-1")
    # Ids and names without a prefix are left alone.
    assert (profile_rows[1]["User Name"], profile_rows[1]["Batch Id"]) == ("Asha Menon", LIVE)


# -- 9. the password is never stored or logged in plain text -------------------------


def duckdb_cells_containing(path: Path, needle: str) -> list[str]:
    """Every table.column of a DuckDB file with a cell containing ``needle``,
    found by SQL (the file's own bytes may be compressed)."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return cells_containing(con, con.sql("SELECT current_database()").fetchall()[0][0], needle)
    finally:
        con.close()


def cells_containing(con, database: str, needle: str) -> list[str]:
    hits = []
    columns = con.execute(
        "SELECT schema_name, table_name, column_name FROM duckdb_columns() "
        "WHERE NOT internal AND database_name = ?", [database]).fetchall()
    for schema, table, column in columns:
        found = con.execute(
            f'SELECT count(*) FROM "{database}"."{schema}"."{table}" '
            f'WHERE contains(CAST("{column}" AS VARCHAR), ?)', [needle]).fetchall()[0][0]
        if found:
            hits.append(f"{schema}.{table}.{column}")
    return hits


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file() and needle in p.read_bytes()]


def test_password_is_never_stored_or_logged_in_plain_text(world, tmp_path, monkeypatch, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    original_report_frame = request_rules.report_frame

    def failing_for_the_expired_batch(state, spec):
        if spec.batch == EXPIRED:
            raise RuntimeError("the expired batch cannot be read")
        return original_report_frame(state, spec)

    monkeypatch.setattr(request_rules, "report_frame", failing_for_the_expired_batch)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
        later_landing(world).user(LATER_DAY, "u-newcomer")
        assert run_nightly(world, LATER_DAY, instance).success  # a later day, logged in this instance too
        produced = file(world, "user_profile_exhaust", CREATOR, password=PASSWORD, batch=LIVE)
        failed = file(world, "user_profile_exhaust", ADMIN, password=PASSWORD, batch=EXPIRED)
        for _ in range(3):
            sensor_pass(world, instance, raise_on_error=False)
        waiting = file(world, "learner_certificate_history", ADMIN, password=PASSWORD,
                       certificate=CERT_PATH, learner=L2)
        assert [request_row(world, r)["status"] for r in (produced, failed, waiting)] == [
            rq.SUCCESS, rq.FAILURE, rq.SUBMITTED]
        with world.work() as con:
            pipeline.publish_warehouse(con, world.get_warehouse())
        runs = instance.get_runs()
        assert len(runs) == 4  # the nightly run, then three passes (the first produces both)
        for run in runs:
            assert PASSWORD not in repr(run.run_config) and PASSWORD not in repr(run.tags)

    # The published warehouse shows the requests, without any ciphertext column.
    assert published(world, "SELECT count(*) FROM ops.report_requests") == [(3,)]
    columns = [row[0] for row in published(
        world, "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'ops' AND table_name = 'report_requests'")]
    assert "password_ciphertext" not in columns
    assert {"request_id", "report_type", "scope", "requested_by", "requested_at", "status", "status_reason",
            "file_path", "row_count", "completed_at"} <= set(columns)

    # The waiting request holds only a ciphertext, which the vault opens.
    ciphertext = request_row(world, waiting)["password_ciphertext"]
    assert PASSWORD.encode() not in ciphertext
    vault = world.get_warehouse().vault
    assert vault.open(ciphertext) == PASSWORD
    assert vault.key_file.stat().st_mode & 0o777 == 0o600
    assert not vault.key_file.is_relative_to(world.paths.root)  # not beside the ciphertexts

    data_dir = Path(world.data_dir)
    scanned = [p for p in data_dir.rglob("*") if p.is_file()] + [p for p in dagster_home.rglob("*") if p.is_file()]
    assert {"work.duckdb", "requests.duckdb", "catalog.sqlite"} <= {p.name for p in scanned}
    assert any(p.suffix == ".parquet" for p in scanned)  # the lake's data files
    assert any(p.suffix == ".db" for p in dagster_home.rglob("*"))  # Dagster's run and event storage
    needle = PASSWORD.encode("utf-8")
    assert files_containing(data_dir, needle) == []
    assert files_containing(dagster_home, needle) == []
    for database in (world.paths.work_db, world.paths.requests_db):
        assert duckdb_cells_containing(database, PASSWORD) == []
    with lake.reader(world.lake) as analyst:
        assert cells_containing(analyst, lake.ALIAS, PASSWORD) == []
        assert cells_containing(analyst, lake.ALIAS, produced) == ["ops.report_requests.request_id",
                                                                   "ops.report_requests.file_path"]
    # The scan does find what is there: the request ids, in the queue and in Dagster's storage.
    assert duckdb_cells_containing(world.paths.requests_db, produced) == [
        "ops.report_requests.request_id", "ops.report_requests.file_path"]
    assert files_containing(dagster_home, produced.encode())

    captured = capfd.readouterr()
    assert PASSWORD not in captured.out and PASSWORD not in captured.err
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


# -- ids that look like scope syntax ---------------------------------------------------


def test_a_batch_id_with_a_semicolon_is_produced(world, instance, tmp_path):
    """Scope text is ``batch=<id>``; an LMS id containing ``;`` or ``=`` must not
    turn a request into one that never reaches Success nor Failure."""
    landing = later_landing(world)
    landing.session(LATER_DAY, "b;2026=q4", COURSE, name="Q4 batch", created_by=BATCH_CREATOR, mentors=[MENTOR],
                    start_date=ago(10).isoformat(), end_date=(TODAY + dt.timedelta(days=10)).isoformat())
    landing.enroll(LATER_DAY, "e-q4", L3, "b;2026=q4", enrolled_at=stamp(ago(5)))
    assert run_nightly(world, LATER_DAY, instance).success
    request_id = file(world, "course_progress_exhaust", MENTOR, batch="b;2026=q4")
    header, rows = produce_and_read(world, instance, request_id, tmp_path)
    assert [(r["Batch Id"], r["User UUID"]) for r in rows] == [("b;2026=q4", L3)]
    with world.requests() as queue:
        assert rq.list_requests(queue, "batch", "b;2026=q4")["request_id"].to_list() == [request_id]


def test_scope_text_round_trips(world):
    for spec in (
        rq.RequestSpec("course_progress_exhaust", MENTOR, batch="b;x=1"),
        rq.RequestSpec("certificate_type_totals", ADMIN, course="c=1;2"),
        rq.RequestSpec("path_certificate_learners", ADMIN, certificate="c;learner=x"),
        rq.RequestSpec("learner_certificate_history", ADMIN, certificate="c;1", learner="u=2;3"),
        rq.RequestSpec("path_certificate_stats", ADMIN, filters=(("group", "g;1"),)),
    ):
        assert rq.RequestSpec.from_row(spec.report_type, spec.requested_by, spec.scope, spec.filters_json) == spec


# -- 10. the command line, end to end -----------------------------------------------


def cli(env: dict, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certpipeline.cli", *args], input=stdin, capture_output=True,
                          text=True, env=env, cwd=REPOSITORY, timeout=600)


def test_published_warehouse_has_the_request_table_before_any_request(world):
    """Failed before: ops.report_requests appeared only once a request had been filed."""
    assert published(world, "SELECT count(*) FROM ops.report_requests") == [(0,)]
    columns = published(world, "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'ops' "
                               "AND table_name = 'report_requests' ORDER BY column_index")
    assert [name for (name,) in columns] == [name.strip() for name in rq.PUBLIC_COLUMNS.split(",")]


@pytest.mark.slow
def test_cli_listing_shows_each_requests_filters(world, tmp_path):
    """Failed before: two requests of one scope with different filters listed alike."""
    plain = file(world, "path_certificate_learners", ADMIN, certificate=CERT_PATH)
    filtered = file(world, "path_certificate_learners", ADMIN, certificate=CERT_PATH,
                    filters=(("user_status", "all"), ("custom.state", "Goa")))
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(world.paths.root), "DAGSTER_HOME": str(tmp_path / "home")}
    done = cli(env, "requests", "--certificate", CERT_PATH)
    assert done.returncode == 0, done.stderr
    scope = f"certificate={CERT_PATH}"
    assert [line.split("  by ")[0].split() for line in done.stdout.splitlines()] == [
        [filtered, rq.SUBMITTED, "path_certificate_learners", scope, "filters", "custom.state=Goa,", "user_status=all"],
        [plain, rq.SUBMITTED, "path_certificate_learners", scope, "no", "filters"],
    ]


@pytest.mark.slow
def test_cli_request_list_process_and_open(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    yesterday = TODAY - dt.timedelta(days=1)
    write_world(Landing(data), day=yesterday)
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    env.pop("CERTPIPELINE_SECRET_KEY", None)
    outputs = []

    def ok(*args, stdin=None) -> str:
        done = cli(env, *args, stdin=stdin)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def refused(*args, stdin=None) -> str:
        done = cli(env, *args, stdin=stdin)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode != 0
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        return lines[0]

    ok("run", "--date", yesterday.isoformat())
    assert (data / "warehouse" / "catalog.sqlite").exists()

    request_id = ok("request", "user_profile_exhaust", "--batch", LIVE, "--by", CREATOR, "--password-stdin",
                    stdin=PASSWORD + "\n").strip()
    assert request_id.startswith("req-") and "\n" not in request_id

    assert refused("request", "user_profile_exhaust", "--batch", LIVE, "--by", MENTOR, "--password-stdin",
                   stdin=PASSWORD + "\n") == (
        "certpipeline request: refused: u-mentor may not request user_profile_exhaust for batch b-live: "
        "only platform admins, the course or batch creator may")
    assert refused("request", "user_profile_exhaust", "--batch", LIVE, "--by", BATCH_CREATOR, "--password-stdin",
                   stdin=PASSWORD + "\n") == (
        f"certpipeline request: refused: an identical request {request_id} is still Submitted; "
        "it can be requested again once it is processed")
    assert refused("request", "user_profile_exhaust", "--batch", LIVE, "--by", CREATOR) == (
        "certpipeline request: refused: user_profile_exhaust contains personal data: a password is mandatory")
    assert refused("request", "nonsense", "--batch", LIVE, "--by", CREATOR).startswith(
        "certpipeline request: refused: unknown report type 'nonsense'")

    listed = ok("requests", "--batch", LIVE).splitlines()
    assert len(listed) == 1
    assert listed[0].split()[:3] == [request_id, rq.SUBMITTED, "user_profile_exhaust"]
    assert ok("requests", "--batch", EXPIRED).strip() == f"no requests for batch {EXPIRED}"

    processed = ok("process-requests").splitlines()
    assert len(processed) == 1
    assert processed[0].split()[:2] == [request_id, rq.SUCCESS]
    zip_path = Path(processed[0].split()[2])
    assert zip_path.parent == data / "exhausts" / "user_profile_exhaust" and zip_path.suffix == ".zip"
    assert ok("process-requests").strip() == "no waiting requests"

    listed = ok("requests", "--batch", LIVE).splitlines()
    assert listed[0].split()[:2] == [request_id, rq.SUCCESS]
    assert listed[0].endswith(str(zip_path))

    assert run_7z("x", "-pwrong", f"-o{tmp_path / 'wrong'}", "-y", str(zip_path)).returncode != 0
    header, rows = read_csv(unzip(zip_path, PASSWORD, tmp_path / "out"))
    assert header == BATCH_HEADER + ["User UUID", "User Name", "Email ID", "Registration Date", "User Status",
                                     "Custom: district", "Custom: state"]
    assert [r["User UUID"] for r in rows] == [GONE, L1, L2]
    assert rows[1]["Email ID"] == "u-l1@example.com"

    # The published warehouse shows the request as done; the password is nowhere.
    assert published(WarehouseResource(data_dir=str(data)),
                     "SELECT request_id, status, row_count FROM ops.report_requests") == [(request_id, "Success", 3)]
    assert all(PASSWORD not in output for output in outputs)
    assert files_containing(data, PASSWORD.encode()) == []
    assert files_containing(tmp_path / "dagster_home", PASSWORD.encode()) == []
