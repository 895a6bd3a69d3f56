"""The ``reports.*`` warehouse tables: one snapshot per report date.

Each table is built from the state as of its report date with the default
filters (seed-001 tables: active users; totals and dashboard: every user) and
written by replacing that date's snapshot, so re-running a day changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import duckdb
import polars as pl

from certpipeline.faults import crash_point
from certpipeline.reports import certificate_totals, course_dashboard, path_certificates
from certpipeline.state import State

REPORT_BUILDERS: dict[str, Callable[[State], pl.DataFrame]] = {
    "certificate_type_totals": certificate_totals.certificate_type_totals,
    "path_certificate_stats": path_certificates.path_certificate_stats,
    "path_certificate_learners": path_certificates.path_certificate_learners,
    "learner_certificate_history": path_certificates.learner_certificate_history,
    "course_batch_dashboard": course_dashboard.course_batch_dashboard,
}

# The report tables need every entity but the answers.
REPORT_ENTITIES = (
    "users", "groups", "group_members", "group_closure", "courses", "sessions", "certificates", "enrollments", "awards",
)

# Columns that identify a row within a snapshot (the asset checks hold them unique).
REPORT_KEYS: dict[str, tuple[str, ...]] = {
    "certificate_type_totals": ("course_id", "certificate_type"),
    "path_certificate_stats": ("certificate_id",),
    "path_certificate_learners": ("certificate_id", "user_id"),
    "learner_certificate_history": ("enrollment_id", "certificate_id"),
    "course_batch_dashboard": ("batch_id",),
}

REPORT_DDL = """
CREATE SCHEMA IF NOT EXISTS reports;
CREATE TABLE IF NOT EXISTS reports.certificate_type_totals (
    course_id VARCHAR, certificate_type VARCHAR, total_certificates_issued BIGINT, report_date DATE);
CREATE TABLE IF NOT EXISTS reports.path_certificate_stats (
    certificate_id VARCHAR, title VARCHAR, owner_group VARCHAR, validity_period_months INTEGER,
    certified_learners BIGINT, enrolled_learners BIGINT, associated_paths BIGINT, report_date DATE);
CREATE TABLE IF NOT EXISTS reports.path_certificate_learners (
    certificate_id VARCHAR, user_id VARCHAR, learner_name VARCHAR, learner_email VARCHAR,
    latest_status VARCHAR, delivery_date DATE, expiration_date DATE, report_date DATE);
CREATE TABLE IF NOT EXISTS reports.learner_certificate_history (
    certificate_id VARCHAR, user_id VARCHAR, enrollment_id VARCHAR, certification_status VARCHAR,
    delivery_date DATE, expiration_date DATE, path_name VARCHAR, path_session VARCHAR,
    path_status VARCHAR, auto_reenrollment BOOLEAN, report_date DATE);
CREATE TABLE IF NOT EXISTS reports.course_batch_dashboard (
    course_id VARCHAR, batch_id VARCHAR, batch_name VARCHAR, start_date DATE, end_date DATE,
    batch_status VARCHAR, total_enrollment BIGINT, report_date DATE);
"""


def build_reports(state: State) -> dict[str, pl.DataFrame]:
    return {
        name: build(state).with_columns(report_date=pl.lit(state.as_of, pl.Date))
        for name, build in REPORT_BUILDERS.items()
    }


def write_snapshots(con: duckdb.DuckDBPyConnection, day: dt.date, reports: dict[str, pl.DataFrame]) -> None:
    """Replace the ``day`` snapshot of every report table, in one transaction."""
    con.execute(REPORT_DDL)
    con.execute("BEGIN TRANSACTION")
    try:
        for name, frame in reports.items():
            con.execute(f"DELETE FROM reports.{name} WHERE report_date = ?", [day])
            con.register("snapshot", frame)
            con.execute(f"INSERT INTO reports.{name} BY NAME SELECT * FROM snapshot")
            con.unregister("snapshot")
            crash_point("reports.table_written")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
