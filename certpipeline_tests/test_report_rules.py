"""The report rules of contract sections 3 and 4, end to end.

Each test writes a few hand-made landing events, runs the real nightly Dagster
definitions in process (``run_nightly``) and compares the exact rows of the
``reports.*`` snapshots. The filter and visibility tests call the plain
functions of ``certpipeline.reports.filters`` on the state the run produced.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from certpipeline.reports import path_certificates
from certpipeline.reports.catalog import table_columns
from certpipeline.reports.filters import (
    EVERYTHING,
    PopulationFilter,
    Visibility,
    population_user_ids,
    requester_visibility,
)
from certpipeline.reports.tables import REPORT_BUILDERS
from certpipeline.state import load_state
from certpipeline_tests.conftest import published, query, run_nightly

D = dt.date(2026, 3, 10)
REPORT_TABLES = tuple(REPORT_BUILDERS)

# Column lists in their contract order (section 4, which test_catalog.py holds
# the catalog to), without report_date.
COLUMNS = {table: ", ".join(name for name, _, _ in table_columns(table) if name != "report_date")
           for table in REPORT_TABLES}
ORDER = {
    "certificate_type_totals": "course_id, certificate_type",
    "path_certificate_stats": "certificate_id",
    "path_certificate_learners": "certificate_id, user_id",
    "learner_certificate_history": "certificate_id, user_id, enrollment_id",
    "course_batch_dashboard": "course_id, batch_id",
}


def report(warehouse, table: str, day: dt.date) -> list[tuple]:
    """One snapshot of a report table, contract columns, stable order."""
    return query(
        warehouse,
        f"SELECT {COLUMNS[table]} FROM reports.{table} WHERE report_date = ? ORDER BY {ORDER[table]}",
        [day],
    )


def all_reports(warehouse) -> dict[str, list[tuple]]:
    """Every row of every report table, every snapshot, including report_date."""
    return {
        table: query(warehouse, f"SELECT *, FROM reports.{table} ORDER BY report_date, {ORDER[table]}")
        for table in REPORT_TABLES
    }


def nightly(warehouse, day, instance) -> dg.ExecuteInProcessResult:
    result = run_nightly(warehouse, day, instance)
    assert result.success
    return result


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def one_path(landing, day, certificate_id="k1", validity_months=12, course_id="c1", session_id="s1", **session):
    """A certificate, a path (course) and one session granting it."""
    landing.certificate(day, certificate_id, validity_months=validity_months)
    landing.course(day, course_id)
    landing.session(day, session_id, course_id, certificate_id, **session)


# --------------------------------------------------------------------------
# 1. Which awards count
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case, counted",
    [
        ("normal", True),
        ("revoked", False),
        ("issued_after_day", False),
        ("enrollment_deleted", False),
        ("session_deleted", False),
        # Revocation or deletion that occurs after D does not change D's snapshot.
        ("revoked_after_day", True),
        ("enrollment_deleted_after_day", True),
    ],
)
def test_award_counts_only_when_issued_not_revoked_and_enrollment_alive(landing, warehouse, instance, case, counted):
    one_path(landing, D)
    landing.session(D, "s2", "c1", "k1")
    # u0 keeps k1 listed in the active view whatever happens to u1's award.
    landing.user(D, "u0")
    landing.enroll(D, "e0", "u0", "s1")
    landing.user(D, "u1")
    session = "s2" if case == "session_deleted" else "s1"
    landing.enroll(D, "e1", "u1", session)
    issued_at = "2026-03-11T08:00:00Z" if case == "issued_after_day" else "2026-03-10T08:00:00Z"
    landing.award(D, "a1", "u1", "k1", issued_at, enrollment_id="e1")
    if case == "revoked":
        landing.event(D, "certificate.revoked", {"award_id": "a1"}, occurred_at="2026-03-10T13:00:00Z")
    if case == "revoked_after_day":
        landing.event(D, "certificate.revoked", {"award_id": "a1"}, occurred_at="2026-03-11T00:00:00Z")
    if case == "enrollment_deleted":
        landing.event(D, "enrollment.deleted", {"enrollment_id": "e1"}, occurred_at="2026-03-10T13:00:00Z")
    if case == "enrollment_deleted_after_day":
        landing.event(D, "enrollment.deleted", {"enrollment_id": "e1"}, occurred_at="2026-03-11T00:00:00Z")
    if case == "session_deleted":
        landing.event(D, "session.deleted", {"session_id": "s2"}, occurred_at="2026-03-10T13:00:00Z")

    nightly(warehouse, D, instance)

    assert report(warehouse, "certificate_type_totals", D) == ([("c1", "verified", 1)] if counted else [])
    # u1's enrollment itself is gone when it (or its session) is deleted.
    enrolled = 1 if case in ("enrollment_deleted", "session_deleted") else 2
    assert report(warehouse, "path_certificate_stats", D) == [
        ("k1", "Certificate k1", None, 12, 1 if counted else 0, enrolled, 1),
    ]


# --------------------------------------------------------------------------
# 2. Certificate type totals
# --------------------------------------------------------------------------


def test_certificate_type_totals_course_from_award_else_enrollment_session(landing, warehouse, instance):
    landing.certificate(D, "kv", certificate_type="verified")
    landing.certificate(D, "kh", certificate_type="honor")
    landing.course(D, "c1")
    landing.course(D, "c2")
    landing.session(D, "s1", "c1", "kv")
    landing.session(D, "s2", "c1", "kh")
    for user in ("u1", "u2", "u3"):
        landing.user(D, user)
    landing.enroll(D, "e1", "u1", "s1")
    landing.enroll(D, "e2", "u2", "s1")
    landing.enroll(D, "e3", "u1", "s2")
    # Course from the enrollment's session (c1), two verified and one honor.
    landing.award(D, "a1", "u1", "kv", "2026-03-01T10:00:00Z", enrollment_id="e1")
    landing.award(D, "a2", "u2", "kv", "2026-03-02T10:00:00Z", enrollment_id="e2")
    landing.award(D, "a3", "u1", "kh", "2026-03-03T10:00:00Z", enrollment_id="e3")
    # The award's own course_id wins over its enrollment's session course.
    landing.award(D, "a4", "u3", "kv", "2026-03-04T10:00:00Z", course_id="c2")
    landing.award(D, "a5", "u2", "kh", "2026-03-04T10:00:00Z", enrollment_id="e2", course_id="c2")

    nightly(warehouse, D, instance)

    assert query(
        warehouse,
        "SELECT course_id, certificate_type, total_certificates_issued, report_date "
        "FROM reports.certificate_type_totals ORDER BY course_id, certificate_type",
    ) == [
        ("c1", "honor", 1, D),
        ("c1", "verified", 2, D),
        ("c2", "honor", 1, D),
        ("c2", "verified", 1, D),
    ]


# --------------------------------------------------------------------------
# 3. Calendar-month expiry
# --------------------------------------------------------------------------


def test_expiration_adds_calendar_months_clamped_to_month_end(landing, warehouse, instance):
    day = d("2025-06-01")
    landing.certificate(day, "k1", validity_months=1)
    landing.certificate(day, "k0", validity_months=None)
    landing.course(day, "c1")
    landing.session(day, "s1", "c1", "k1")
    landing.session(day, "s0", "c1", "k0")
    for user in ("u1", "u2", "u3"):
        landing.user(day, user)
    landing.enroll(day, "e1", "u1", "s1", enrolled_at="2025-01-02T09:00:00Z")
    landing.enroll(day, "e2", "u2", "s1", enrolled_at="2024-01-02T09:00:00Z")
    landing.enroll(day, "e3", "u3", "s0", enrolled_at="2025-01-02T09:00:00Z")
    landing.award(day, "a1", "u1", "k1", "2025-01-31T10:00:00Z", enrollment_id="e1")
    landing.award(day, "a2", "u2", "k1", "2024-01-31T10:00:00Z", enrollment_id="e2")
    landing.award(day, "a3", "u3", "k0", "2025-01-31T10:00:00Z", enrollment_id="e3")

    nightly(warehouse, day, instance)

    assert report(warehouse, "path_certificate_learners", day) == [
        ("k0", "u3", "Name u3", "u3@example.com", "Valid", d("2025-01-31"), None),
        ("k1", "u1", "Name u1", "u1@example.com", "Expired", d("2025-01-31"), d("2025-02-28")),
        ("k1", "u2", "Name u2", "u2@example.com", "Expired", d("2024-01-31"), d("2024-02-29")),
    ]


# --------------------------------------------------------------------------
# 4. The 30-day "Expiring soon" window
# --------------------------------------------------------------------------


def test_expiring_soon_window_edges(landing, warehouse, instance):
    one_path(landing, D, validity_months=1)
    # issued_at + 1 month lands on D, D+1, D+30 and D+31.
    issued = {
        "u_d": "2026-02-10T10:00:00Z",  # expires 2026-03-10 = D
        "u_d1": "2026-02-11T10:00:00Z",  # expires 2026-03-11 = D+1
        "u_d30": "2026-03-09T10:00:00Z",  # expires 2026-04-09 = D+30
        "u_d31": "2026-03-10T10:00:00Z",  # expires 2026-04-10 = D+31
    }
    for n, (user, issued_at) in enumerate(issued.items()):
        landing.user(D, user)
        landing.enroll(D, f"e{n}", user, "s1", enrolled_at="2026-01-05T09:00:00Z")
        landing.award(D, f"a{n}", user, "k1", issued_at, enrollment_id=f"e{n}")

    nightly(warehouse, D, instance)

    assert D + dt.timedelta(days=30) == d("2026-04-09")
    assert query(
        warehouse,
        "SELECT user_id, latest_status, delivery_date, expiration_date FROM reports.path_certificate_learners "
        "WHERE report_date = ? ORDER BY expiration_date",
        [D],
    ) == [
        ("u_d", "Expired", d("2026-02-10"), d("2026-03-10")),
        ("u_d1", "Expiring soon", d("2026-02-11"), d("2026-03-11")),
        ("u_d30", "Expiring soon", d("2026-03-09"), d("2026-04-09")),
        ("u_d31", "Valid", d("2026-03-10"), d("2026-04-10")),
    ]


# --------------------------------------------------------------------------
# 5. Latest status: most recent award, not latest enrollment
# --------------------------------------------------------------------------


def test_latest_status_is_most_recent_award_not_latest_enrollment(landing, warehouse, instance):
    one_path(landing, D)
    landing.session(D, "s2", "c1", "k1")
    landing.user(D, "u1")
    landing.enroll(D, "e1", "u1", "s1", enrolled_at="2026-01-05T09:00:00Z")
    landing.progress(D, "e1", status="completed", progress_percent=100, completed_at="2026-02-01T10:00:00Z")
    landing.award(D, "a1", "u1", "k1", "2026-02-01T10:00:00Z", enrollment_id="e1")
    landing.enroll(D, "e2", "u1", "s2", enrolled_at="2026-03-01T09:00:00Z")
    # u2: an expired award, then a newer valid one, then an unfinished enrollment.
    landing.user(D, "u2")
    landing.enroll(D, "e3", "u2", "s1", enrolled_at="2024-05-01T09:00:00Z")
    landing.award(D, "a3", "u2", "k1", "2024-06-01T10:00:00Z", enrollment_id="e3")
    landing.enroll(D, "e4", "u2", "s2", enrolled_at="2026-01-05T09:00:00Z")
    landing.award(D, "a4", "u2", "k1", "2026-02-15T10:00:00Z", enrollment_id="e4")
    landing.enroll(D, "e5", "u2", "s1", enrolled_at="2026-03-02T09:00:00Z", auto_reenrolled=True)

    nightly(warehouse, D, instance)

    assert report(warehouse, "path_certificate_learners", D) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", d("2026-02-01"), d("2027-02-01")),
        ("k1", "u2", "Name u2", "u2@example.com", "Valid", d("2026-02-15"), d("2027-02-15")),
    ]
    assert report(warehouse, "learner_certificate_history", D) == [
        ("k1", "u1", "e1", "Valid", d("2026-02-01"), d("2027-02-01"), "Course c1", "Session s1", "completed", False),
        ("k1", "u1", "e2", "Not obtained", None, None, "Course c1", "Session s2", "not_started", False),
        ("k1", "u2", "e3", "Expired", d("2024-06-01"), d("2025-06-01"), "Course c1", "Session s1", "not_started", False),
        ("k1", "u2", "e4", "Valid", d("2026-02-15"), d("2027-02-15"), "Course c1", "Session s2", "not_started", False),
        ("k1", "u2", "e5", "Not obtained", None, None, "Course c1", "Session s1", "not_started", True),
    ]


# --------------------------------------------------------------------------
# 6. Archived sessions
# --------------------------------------------------------------------------


def test_archived_session_learner_is_certified_but_not_enrolled(landing, warehouse, instance):
    one_path(landing, D, status="archived")
    landing.user(D, "u1")
    landing.enroll(D, "e1", "u1", "s1", enrolled_at="2026-01-05T09:00:00Z")
    landing.award(D, "a1", "u1", "k1", "2026-02-01T10:00:00Z", enrollment_id="e1")
    # u2 is enrolled, without an award, in a live session of another path.
    landing.course(D, "c2")
    landing.session(D, "s2", "c2", "k1")
    landing.user(D, "u2")
    landing.enroll(D, "e2", "u2", "s2")

    nightly(warehouse, D, instance)

    assert report(warehouse, "path_certificate_stats", D) == [
        ("k1", "Certificate k1", None, 12, 1, 1, 2),
    ]
    # The archived enrollment still lists the learner and their certificate.
    assert report(warehouse, "path_certificate_learners", D) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", d("2026-02-01"), d("2027-02-01")),
        ("k1", "u2", "Name u2", "u2@example.com", "Not obtained", None, None),
    ]


# --------------------------------------------------------------------------
# 7. Deleted users: out of the seed-001 tables, in totals and dashboard
# --------------------------------------------------------------------------


def test_deleted_user_left_out_of_path_tables_but_counted_in_totals_and_dashboard(landing, warehouse, instance):
    one_path(landing, D)
    for user in ("u1", "u2"):
        landing.user(D, user)
        landing.enroll(D, f"e-{user}", user, "s1", enrolled_at="2026-01-05T09:00:00Z")
        landing.award(D, f"a-{user}", user, "k1", "2026-02-01T10:00:00Z", enrollment_id=f"e-{user}")
    landing.event(D, "user.deleted", {"user_id": "u2"}, occurred_at="2026-03-10T15:00:00Z")

    nightly(warehouse, D, instance)

    assert report(warehouse, "path_certificate_learners", D) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", d("2026-02-01"), d("2027-02-01")),
    ]
    assert [row[:4] for row in report(warehouse, "learner_certificate_history", D)] == [
        ("k1", "u1", "e-u1", "Valid"),
    ]
    assert report(warehouse, "path_certificate_stats", D) == [("k1", "Certificate k1", None, 12, 1, 1, 1)]
    assert report(warehouse, "certificate_type_totals", D) == [("c1", "verified", 2)]
    assert report(warehouse, "course_batch_dashboard", D) == [
        ("c1", "s1", "Session s1", d("2026-01-01"), d("2026-12-31"), "Live", 2),
    ]


# --------------------------------------------------------------------------
# 8. User status "all" lists every certificate
# --------------------------------------------------------------------------


def test_certificate_without_active_learner_listed_only_with_user_status_all(landing, warehouse, instance):
    landing.group(D, "g1", name="Owners")
    landing.course(D, "c1")
    landing.certificate(D, "k-active", owner_group_id="g1")
    landing.certificate(D, "k-deleted", validity_months=None)
    landing.certificate(D, "k-none", validity_months=6)
    landing.session(D, "s-active", "c1", "k-active")
    landing.session(D, "s-deleted", "c1", "k-deleted")
    landing.user(D, "u1")
    landing.user(D, "u2")
    landing.enroll(D, "e1", "u1", "s-active")
    landing.enroll(D, "e2", "u2", "s-deleted")
    landing.award(D, "a2", "u2", "k-deleted", "2026-02-01T10:00:00Z", enrollment_id="e2")
    landing.event(D, "user.deleted", {"user_id": "u2"}, occurred_at="2026-03-10T15:00:00Z")

    nightly(warehouse, D, instance)

    assert report(warehouse, "path_certificate_stats", D) == [
        ("k-active", "Certificate k-active", "Owners", 12, 0, 1, 1),
    ]
    with warehouse.work() as con:
        state = load_state(con, D)
    stats = path_certificates.path_certificate_stats(state, PopulationFilter(user_status="all"))
    assert stats.rows() == [
        ("k-active", "Certificate k-active", "Owners", 12, 0, 1, 1),
        ("k-deleted", "Certificate k-deleted", None, None, 1, 1, 1),
        ("k-none", "Certificate k-none", None, 6, 0, 0, 0),
    ]
    deleted = path_certificates.path_certificate_stats(state, PopulationFilter(user_status="deleted"))
    assert deleted.rows() == [("k-deleted", "Certificate k-deleted", None, None, 1, 1, 1)]


# --------------------------------------------------------------------------
# 9. Late arrivals and idempotent re-runs
# --------------------------------------------------------------------------


def test_late_event_corrects_earlier_day_when_it_is_rerun(landing, warehouse, instance):
    day1, day2 = d("2026-03-01"), d("2026-03-02")
    one_path(landing, day1)
    landing.user(day1, "u1")
    landing.enroll(day1, "e1", "u1", "s1")
    # Lands on day 2 but occurred on day 1.
    landing.event(
        day2,
        "certificate.issued",
        {"award_id": "a1", "user_id": "u1", "certificate_id": "k1", "issued_at": "2026-03-01T15:00:00Z",
         "enrollment_id": "e1", "course_id": None},
        occurred_at="2026-03-01T15:00:00Z",
    )

    nightly(warehouse, day1, instance)
    not_obtained = ("k1", "u1", "Name u1", "u1@example.com", "Not obtained", None, None)
    assert report(warehouse, "path_certificate_learners", day1) == [not_obtained]
    assert report(warehouse, "certificate_type_totals", day1) == []

    nightly(warehouse, day2, instance)
    nightly(warehouse, day1, instance)

    assert report(warehouse, "path_certificate_learners", day1) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", day1, d("2027-03-01")),
    ]
    assert report(warehouse, "certificate_type_totals", day1) == [("c1", "verified", 1)]
    assert report(warehouse, "path_certificate_stats", day1) == [("k1", "Certificate k1", None, 12, 1, 1, 1)]


def test_rerunning_a_day_gives_identical_report_rows(landing, warehouse, instance):
    one_path(landing, D, validity_months=1)
    landing.session(D, "s2", "c1", "k1", status="archived", end_date="2026-03-01")
    for user in ("u1", "u2", "u3"):
        landing.user(D, user)
        landing.enroll(D, f"e-{user}", user, "s1")
    landing.enroll(D, "e-u1-2", "u1", "s2", auto_reenrolled=True)
    landing.award(D, "a1", "u1", "k1", "2026-02-10T10:00:00Z", enrollment_id="e-u1")
    landing.award(D, "a2", "u2", "k1", "2026-03-01T10:00:00Z", enrollment_id="e-u2")
    landing.award(D, "a3", "u3", "k1", "2026-03-01T10:00:00Z", course_id="c1")
    landing.event(D, "certificate.revoked", {"award_id": "a3"}, occurred_at="2026-03-10T15:00:00Z")
    landing.event(D, "user.deleted", {"user_id": "u3"}, occurred_at="2026-03-10T15:00:00Z")

    nightly(warehouse, D, instance)
    before = all_reports(warehouse)
    assert all(before.values()), "every report table has rows to compare"

    nightly(warehouse, D, instance)

    assert all_reports(warehouse) == before


# --------------------------------------------------------------------------
# 10. Automatic re-enrollments
# --------------------------------------------------------------------------


def test_automatic_reenrollments_each_have_a_history_row(landing, warehouse, instance):
    one_path(landing, D, auto_reenrollment=True)
    landing.user(D, "u1")
    landing.enroll(D, "e1", "u1", "s1", enrolled_at="2026-01-05T09:00:00Z")
    landing.progress(D, "e1", status="completed", progress_percent=100, completed_at="2026-01-20T10:00:00Z")
    landing.award(D, "a1", "u1", "k1", "2026-01-20T10:00:00Z", enrollment_id="e1")
    landing.enroll(D, "e2", "u1", "s1", enrolled_at="2026-03-05T09:00:00Z", auto_reenrolled=True)
    landing.progress(D, "e2", status="in_progress", progress_percent=10)

    nightly(warehouse, D, instance)

    assert report(warehouse, "learner_certificate_history", D) == [
        ("k1", "u1", "e1", "Valid", d("2026-01-20"), d("2027-01-20"), "Course c1", "Session s1", "completed", False),
        ("k1", "u1", "e2", "Not obtained", None, None, "Course c1", "Session s1", "in_progress", True),
    ]
    assert report(warehouse, "path_certificate_learners", D) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", d("2026-01-20"), d("2027-01-20")),
    ]


# --------------------------------------------------------------------------
# 11. Course batch dashboard
# --------------------------------------------------------------------------


def test_course_batch_dashboard_status_and_enrollment_totals(landing, warehouse, instance):
    landing.course(D, "c1")
    landing.course(D, "c2")
    landing.session(D, "b-past", "c1", start_date="2026-01-01", end_date="2026-03-09")
    landing.session(D, "b-today", "c1", start_date="2026-02-01", end_date="2026-03-10")
    landing.session(D, "b-open", "c2", start_date="2026-03-01", end_date=None)
    landing.session(D, "b-gone", "c2", start_date="2026-01-01", end_date="2026-12-31")
    for user in ("u1", "u2", "u3"):
        landing.user(D, user)
    landing.enroll(D, "e1", "u1", "b-today")
    landing.enroll(D, "e2", "u2", "b-today")
    landing.enroll(D, "e3", "u3", "b-today")
    landing.enroll(D, "e4", "u1", "b-past")
    landing.enroll(D, "e5", "u1", "b-gone")
    landing.event(D, "enrollment.deleted", {"enrollment_id": "e3"}, occurred_at="2026-03-10T15:00:00Z")
    landing.event(D, "session.deleted", {"session_id": "b-gone"}, occurred_at="2026-03-10T15:00:00Z")

    nightly(warehouse, D, instance)

    assert query(
        warehouse,
        "SELECT course_id, batch_id, batch_name, start_date, end_date, batch_status, total_enrollment, report_date "
        "FROM reports.course_batch_dashboard ORDER BY course_id, batch_id",
    ) == [
        ("c1", "b-past", "Session b-past", d("2026-01-01"), d("2026-03-09"), "Expired", 1, D),
        ("c1", "b-today", "Session b-today", d("2026-02-01"), d("2026-03-10"), "Live", 2, D),
        ("c2", "b-open", "Session b-open", d("2026-03-01"), None, "Live", 0, D),
    ]


# --------------------------------------------------------------------------
# 12. As-of semantics
# --------------------------------------------------------------------------


def test_award_issued_on_day_two_absent_from_day_one_even_when_rerun_later(landing, warehouse, instance):
    day1, day2 = d("2026-03-01"), d("2026-03-02")
    one_path(landing, day1)
    landing.user(day1, "u1")
    landing.enroll(day1, "e1", "u1", "s1")
    landing.award(day2, "a1", "u1", "k1", "2026-03-02T10:00:00Z", enrollment_id="e1")

    nightly(warehouse, day1, instance)
    nightly(warehouse, day2, instance)
    nightly(warehouse, day1, instance)

    not_obtained = ("k1", "u1", "Name u1", "u1@example.com", "Not obtained", None, None)
    assert report(warehouse, "path_certificate_learners", day1) == [not_obtained]
    assert report(warehouse, "certificate_type_totals", day1) == []
    assert report(warehouse, "path_certificate_stats", day1) == [("k1", "Certificate k1", None, 12, 0, 1, 1)]
    assert report(warehouse, "path_certificate_learners", day2) == [
        ("k1", "u1", "Name u1", "u1@example.com", "Valid", day2, d("2027-03-02")),
    ]
    assert report(warehouse, "certificate_type_totals", day2) == [("c1", "verified", 1)]


# --------------------------------------------------------------------------
# 13. Filters and visibility as plain functions
# --------------------------------------------------------------------------


@pytest.fixture
def filter_state(landing, warehouse, instance):
    """Groups g1 > g2 > g3 and g9; users with registration dates and custom
    fields; two paths (c1 authored by u-author, c2 with instructor u-instr)."""
    landing.group(D, "g1")
    landing.group(D, "g2", parent="g1")
    landing.group(D, "g3", parent="g2")
    landing.group(D, "g9")
    users = {
        "u1": ("2025-01-09T23:59:59Z", {"dept": "sales"}),
        "u2": ("2025-01-10T00:00:00Z", {"dept": "eng"}),
        "u3": ("2025-01-20T23:59:59Z", {"dept": "sales", "site": "paris"}),
        "u4": ("2025-01-21T00:00:00Z", {}),
        "u5": ("2025-01-15T00:00:00Z", {"dept": "sales"}),
    }
    for user, (registered_at, custom) in users.items():
        landing.user(D, user, registered_at=registered_at, custom_fields=custom)
    staff = {"registered_at": "2024-06-01T00:00:00Z"}
    landing.user(D, "u-admin", platform_role="admin", **staff)
    landing.user(D, "u-gone-admin", platform_role="admin", **staff)
    landing.user(D, "u-coach", **staff)
    landing.user(D, "u-group-admin", **staff)
    landing.user(D, "u-author", **staff)
    landing.user(D, "u-instr", **staff)
    landing.member(D, "g1", "u1")
    landing.member(D, "g2", "u2")
    landing.member(D, "g3", "u3")
    landing.member(D, "g9", "u4")
    landing.member(D, "g3", "u5")
    landing.member(D, "g2", "u-coach", role="coach")
    landing.member(D, "g1", "u-group-admin", role="admin")
    landing.certificate(D, "k1")
    landing.certificate(D, "k2")
    landing.course(D, "c1", authors=["u-author"])
    landing.course(D, "c2", instructors=["u-instr"])
    landing.session(D, "s1", "c1", "k1")
    landing.session(D, "s2", "c2", "k2")
    landing.enroll(D, "e1", "u1", "s1")
    landing.enroll(D, "e2", "u2", "s2")
    landing.enroll(D, "e3", "u3", "s1")
    landing.enroll(D, "e4", "u4", "s2")
    landing.enroll(D, "e5", "u5", "s2")
    landing.event(D, "user.deleted", {"user_id": "u5"}, occurred_at="2026-03-10T15:00:00Z")
    landing.event(D, "user.deleted", {"user_id": "u-gone-admin"}, occurred_at="2026-03-10T15:00:00Z")
    nightly(warehouse, D, instance)
    with warehouse.work() as con:
        return load_state(con, D)


def ids(series) -> list[str]:
    return sorted(series.to_list())


def learner_pairs(state, population=PopulationFilter(), visibility=EVERYTHING) -> list[tuple]:
    frame = path_certificates.path_certificate_learners(state, population, visibility)
    return frame.select("certificate_id", "user_id").rows()


def test_group_filter_includes_subgroups_at_any_depth(filter_state):
    assert ids(population_user_ids(filter_state, PopulationFilter(group_id="g1"))) == ["u1", "u2", "u3"]
    assert ids(population_user_ids(filter_state, PopulationFilter(group_id="g2"))) == ["u2", "u3"]
    assert ids(population_user_ids(filter_state, PopulationFilter(group_id="g3"))) == ["u3"]
    # Deleted u5 in g3 shows up with user status "all".
    assert ids(population_user_ids(filter_state, PopulationFilter(group_id="g1", user_status="all"))) == [
        "u1", "u2", "u3", "u5",
    ]
    assert learner_pairs(filter_state, PopulationFilter(group_id="g1")) == [("k1", "u1"), ("k1", "u3"), ("k2", "u2")]


def test_registration_date_range_is_inclusive(filter_state):
    population = PopulationFilter(registered_from=d("2025-01-10"), registered_to=d("2025-01-20"))
    # u1 (Jan 9, 23:59:59) and u4 (Jan 21) are outside; u5 is deleted.
    assert ids(population_user_ids(filter_state, population)) == ["u2", "u3"]
    assert learner_pairs(filter_state, population) == [("k1", "u3"), ("k2", "u2")]


def test_custom_field_filter(filter_state):
    assert ids(population_user_ids(filter_state, PopulationFilter(custom_fields=(("dept", "sales"),)))) == [
        "u1", "u3",
    ]
    both = PopulationFilter(custom_fields=(("dept", "sales"), ("site", "paris")))
    assert ids(population_user_ids(filter_state, both)) == ["u3"]
    assert learner_pairs(filter_state, PopulationFilter(custom_fields=(("dept", "sales"),))) == [
        ("k1", "u1"), ("k1", "u3"),
    ]


def test_user_status_filter_deleted_and_all(filter_state):
    assert ids(population_user_ids(filter_state, PopulationFilter(user_status="deleted"))) == ["u-gone-admin", "u5"]
    assert learner_pairs(filter_state, PopulationFilter(user_status="deleted")) == [("k2", "u5")]
    assert learner_pairs(filter_state, PopulationFilter(user_status="all")) == [
        ("k1", "u1"), ("k1", "u3"), ("k2", "u2"), ("k2", "u4"), ("k2", "u5"),
    ]
    assert learner_pairs(filter_state) == [("k1", "u1"), ("k1", "u3"), ("k2", "u2"), ("k2", "u4")]
    with pytest.raises(ValueError):
        PopulationFilter(user_status="archived")


def test_requester_visibility(filter_state):
    assert requester_visibility(filter_state, "u-admin") == EVERYTHING
    coach = requester_visibility(filter_state, "u-coach")
    assert coach == Visibility(everything=False, learner_ids=frozenset({"u2", "u3", "u5"}), leads_groups=True)
    assert learner_pairs(filter_state, visibility=coach) == [("k1", "u3"), ("k2", "u2")]
    group_admin = requester_visibility(filter_state, "u-group-admin")
    assert group_admin == Visibility(everything=False, learner_ids=frozenset({"u1", "u2", "u3", "u5"}), leads_groups=True)
    author = requester_visibility(filter_state, "u-author")
    assert author == Visibility(everything=False, certificate_ids=frozenset({"k1"}))
    assert learner_pairs(filter_state, visibility=author) == [("k1", "u1"), ("k1", "u3")]
    instructor = requester_visibility(filter_state, "u-instr")
    assert instructor == Visibility(everything=False, certificate_ids=frozenset({"k2"}))
    assert learner_pairs(filter_state, visibility=instructor) == [("k2", "u2"), ("k2", "u4")]
    gone = requester_visibility(filter_state, "u-gone-admin")
    assert not gone.sees_anything
    assert learner_pairs(filter_state, visibility=gone) == []
    assert learner_pairs(filter_state, PopulationFilter(user_status="all"), gone) == []
    assert path_certificates.path_certificate_stats(filter_state, PopulationFilter(user_status="all"), gone).rows() \
        == []
    assert not requester_visibility(filter_state, "nobody").sees_anything


# --------------------------------------------------------------------------
# 14. Asset checks and materialization metadata
# --------------------------------------------------------------------------


def test_asset_checks_pass_and_reports_carry_row_count_and_preview(landing, warehouse, instance):
    one_path(landing, D)
    landing.user(D, "u1")
    landing.enroll(D, "e1", "u1", "s1")
    landing.award(D, "a1", "u1", "k1", "2026-03-01T10:00:00Z", enrollment_id="e1")

    result = nightly(warehouse, D, instance)

    evaluations = result.get_asset_check_evaluations()
    assert sorted((e.asset_key.to_user_string(), e.check_name, e.passed) for e in evaluations) == sorted(
        [("entity_history", "references_resolve", True)]
        + [(f"reports/{table}", "keys_unique", True) for table in REPORT_TABLES]
        + [
            ("reports/certificate_type_totals", "totals_reconcile_with_awards", True),
            ("reports/path_certificate_learners", "learner_certificates_listed", True),
        ]
    )
    materialized = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("certificate_reports")
    }
    assert sorted(materialized) == sorted(f"reports/{table}" for table in REPORT_TABLES)
    for table in REPORT_TABLES:
        metadata = materialized[f"reports/{table}"]
        rows = query(warehouse, f"SELECT count(*) FROM reports.{table} WHERE report_date = ?", [D])[0][0]
        assert rows >= 1
        assert metadata["dagster/row_count"].value == rows
        preview = metadata["preview"]
        assert isinstance(preview, dg.TableMetadataValue)
        assert len(preview.records) == min(rows, 10)
        assert [column.name for column in preview.schema.columns] == [
            name for name, _, _ in table_columns(table)]


# --------------------------------------------------------------------------
# 15. Backfill: one snapshot per report date
# --------------------------------------------------------------------------


def test_backfill_leaves_one_snapshot_per_report_date(landing, warehouse, instance):
    days = [d("2026-03-01"), d("2026-03-02"), d("2026-03-03")]
    one_path(landing, days[0])
    for n, day in enumerate(days, start=1):
        landing.user(day, f"u{n}")
        landing.enroll(day, f"e{n}", f"u{n}", "s1")
        landing.award(day, f"a{n}", f"u{n}", "k1", f"{day.isoformat()}T10:00:00Z", enrollment_id=f"e{n}")

    for day in days:
        nightly(warehouse, day, instance)

    per_day = {
        "certificate_type_totals": [1, 1, 1],
        "path_certificate_stats": [1, 1, 1],
        "path_certificate_learners": [1, 2, 3],
        "learner_certificate_history": [1, 2, 3],
        "course_batch_dashboard": [1, 1, 1],
    }
    for table in REPORT_TABLES:
        counts = query(warehouse, f"SELECT report_date, count(*) FROM reports.{table} GROUP BY 1 ORDER BY 1")
        assert counts == list(zip(days, per_day[table])), table
        assert published(warehouse, f"SELECT report_date, count(*) FROM reports.{table} GROUP BY 1 ORDER BY 1") \
            == counts, table
    assert query(
        warehouse,
        "SELECT report_date, total_certificates_issued FROM reports.certificate_type_totals ORDER BY 1",
    ) == list(zip(days, [1, 2, 3]))
