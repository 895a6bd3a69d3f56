"""What each column of the report tables means (contract sections 3 and 4), for
the catalog; the types come from the tables' DDL."""

from __future__ import annotations

import duckdb

from certpipeline.reports.tables import REPORT_DDL

REPORT_DATE = "The day the snapshot is as of: events that occurred before the next day 00:00 UTC."

COLUMN_MEANINGS: dict[str, dict[str, str]] = {
    "certificate_type_totals": {
        "course_id": "The award's course, else the course of its enrollment's session.",
        "certificate_type": "The certificate's type (e.g. verified, honor).",
        "total_certificates_issued": "Counted awards: issued on or before the report date, not revoked, enrollment "
                                     "(when named) not deleted nor in a deleted session.",
        "report_date": REPORT_DATE,
    },
    "path_certificate_stats": {
        "certificate_id": "A certificate with at least one active learner enrolled in a session granting it.",
        "title": "The certificate's title.",
        "owner_group": "The group owning the certificate, if any.",
        "validity_period_months": "Months an award stays valid; empty when it never expires.",
        "certified_learners": "Unique active users with a counted award, whatever its validity or session status.",
        "enrolled_learners": "Unique active users with a non-deleted enrollment in a non-archived session granting it.",
        "associated_paths": "Courses with a non-deleted session granting the certificate.",
        "report_date": REPORT_DATE,
    },
    "path_certificate_learners": {
        "certificate_id": "The certificate.",
        "user_id": "An active learner with a non-deleted enrollment in a session granting it.",
        "learner_name": "The learner's name.",
        "learner_email": "The learner's email.",
        "latest_status": "Status of the learner's most recent counted award for the certificate: Valid, "
                         "Expiring soon (expires within 30 days), Expired, or Not obtained.",
        "delivery_date": "Issue date of that award.",
        "expiration_date": "Delivery date + validity months, clamped to the month's end; empty if it never expires.",
        "report_date": REPORT_DATE,
    },
    "learner_certificate_history": {
        "certificate_id": "The certificate the session grants.",
        "user_id": "The enrolled active learner.",
        "enrollment_id": "A non-deleted enrollment in a session granting the certificate.",
        "certification_status": "Status of the most recent counted award of that enrollment (or Not obtained).",
        "delivery_date": "Issue date of that award.",
        "expiration_date": "Delivery date + validity months, clamped to the month's end.",
        "path_name": "The course (path) of the session.",
        "path_session": "The session's name.",
        "path_status": "The enrollment's status (not_started, in_progress, completed, failed).",
        "auto_reenrollment": "The enrollment's auto_reenrolled flag.",
        "report_date": REPORT_DATE,
    },
    "course_batch_dashboard": {
        "course_id": "The batch's course.",
        "batch_id": "A non-deleted session (batch) of the course.",
        "batch_name": "The batch's name.",
        "start_date": "The batch's start date.",
        "end_date": "The batch's end date.",
        "batch_status": "Expired when end_date is before the report date, else Live.",
        "total_enrollment": "Non-deleted enrollments in the batch, every user counted.",
        "report_date": REPORT_DATE,
    },
}


def report_columns(table: str) -> list[tuple[str, str, str]]:
    """(column, DuckDB type, meaning) of a report table, in table order."""
    con = duckdb.connect()
    try:
        con.execute(REPORT_DDL)
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'reports' AND table_name = ? "
            "ORDER BY column_index", [table]).fetchall()
    finally:
        con.close()
    return [(name, data_type, COLUMN_MEANINGS[table][name]) for name, data_type in columns]
