"""Every report, defined once (contract sections 4 and 5), as data.

A report is a warehouse table (``reports.<name>``, one snapshot per report
date), a file users request, or both. Its entry says what it is and how its
rows are built; for a table, the columns that identify a row and each column
with its DuckDB type and meaning; for a file, its scope, who may request it,
whether a password is mandatory, which filters it takes, and its CSV columns
exactly as the contract writes them, each with the column or expression of
the report's rows it comes from.

The DDL and snapshots (``tables``), the asset specs, column schemas and checks
(``defs/reports.py``, ``checks``), request validation and the files
(``report_requests``) all read this module, as ingestion reads
``certpipeline.events`` for the input contract.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import polars as pl

from certpipeline.reports import certificate_totals, course_dashboard, path_certificates
from certpipeline.reports.filters import PopulationFilter, Visibility
from certpipeline.state import State

# Scope kinds: what a request names (the CLI's options, the API's scope keys).
COURSE, BATCH, CERTIFICATE, LEARNER = "course", "batch", "certificate", "learner"
ALL = "all"  # the scope text of a request that names none

# Who may request a file, in the contract's words (section 5).
COURSE_TEAM = "platform admin, course creator, author, instructor"
BATCH_TEAM = "platform admin, course or batch creator, batch mentor"
BATCH_OWNERS = "platform admin, course or batch creator"
CERTIFICATE_VIEWERS = ("platform admin; group admin or coach (their groups' learners); "
                       "author or instructor (certificates of their paths)")

# The seed-001 filters (contract section 7); ``custom.KEY`` stands for any key.
POPULATION_FILTERS = ("user_status", "group", "registered_from", "registered_to", "custom.KEY")


@dataclass(frozen=True)
class Column:
    """A warehouse column: its name, DuckDB type as ``duckdb_columns()`` spells it, and meaning."""

    name: str
    type: str
    meaning: str


@dataclass(frozen=True)
class Table:
    """A ``reports.*`` table: its rows as of a day (default filters, everything
    visible), the columns that identify a row within a snapshot, and every
    column in table order (``report_date`` last).

    The rows are in no particular order: a table has none, and its snapshot
    is diffed and queried, never read in order. The two largest skip the sort
    their files need (``ordered=False``), which took a third of a second each
    per report day at a million learners."""

    build: Callable[[State], pl.DataFrame]
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # One row per learner, most of them the same from one day to the next:
    # a night closes a few of the versions in each of the lake's files of
    # the table, and the lake keeps those deletes in its catalog
    # (``publication.INLINED_ROWS``).
    mostly_unchanged_nightly: bool = False


@dataclass(frozen=True)
class CsvColumn:
    """A column of the file: the contract's header and what it holds, a column
    of the report's rows or an expression over them."""

    header: str
    source: str | pl.Expr

    def expr(self) -> pl.Expr:
        value = pl.col(self.source) if isinstance(self.source, str) else self.source
        return value.alias(self.header)


@dataclass(frozen=True)
class PerKeyColumns:
    """Columns that depend on the data: one for each ``<prefix>KEY`` column of
    the report's rows, sorted by key, headed ``header`` with ``{key}`` filled in."""

    prefix: str
    header: str


@dataclass(frozen=True)
class Ask:
    """What a requested report's rows depend on besides the state."""

    scope: Mapping[str, str]  # scope kind -> id, as the request names them
    population: PopulationFilter
    visibility: Visibility


@dataclass(frozen=True)
class File:
    """A report users request as a CSV file.

    ``rows`` builds the report's rows for a request, with every row of its
    scope or more; ``scope_columns`` names the column each scope id selects
    rows by (a batch report is built for its batch alone); ``report_date`` is
    added to the rows, so a file can show the day it is as of."""

    scope: tuple[str, ...]
    requesters: str
    rows: Callable[[State, Ask], pl.DataFrame]
    columns: tuple[CsvColumn, ...]
    scope_columns: Mapping[str, str]
    password_mandatory: bool = False
    filters: tuple[str, ...] = ()
    per_key_columns: PerKeyColumns | None = None

    def frame(self, state: State, ask: Ask) -> pl.DataFrame:
        """The file's rows, with exactly its CSV columns."""
        rows = self.rows(state, ask).with_columns(report_date=pl.lit(state.as_of, pl.Date))
        for kind, column in self.scope_columns.items():
            rows = rows.filter(pl.col(column) == ask.scope[kind])
        extra = []
        if self.per_key_columns is not None:
            prefix, header = self.per_key_columns.prefix, self.per_key_columns.header
            extra = [pl.col(name).alias(header.format(key=name.removeprefix(prefix)))
                     for name in sorted(name for name in rows.columns if name.startswith(prefix))]
        return rows.select(*(column.expr() for column in self.columns), *extra)


@dataclass(frozen=True)
class Report:
    name: str
    description: str
    table: Table | None = None
    file: File | None = None


REPORT_DATE = Column("report_date", "DATE", "The day the snapshot is as of: events that occurred before the next "
                     "day 00:00 UTC.")
EXPIRATION = "Delivery date + validity months, clamped to the month's end"
BATCH_HEADER = (CsvColumn("Course Id", "course_id"), CsvColumn("Course Name", "course_name"),
                CsvColumn("Batch Id", "batch_id"), CsvColumn("Batch Name", "batch_name"))


def _path_rows(build: Callable[[State, PopulationFilter, Visibility], pl.DataFrame]):
    """A path certificate report for a request: its population, the requester's visibility."""
    return lambda state, ask: build(state, ask.population, ask.visibility)


def _batch_rows(build: Callable[[State, str], pl.DataFrame]):
    return lambda state, ask: build(state, ask.scope[BATCH])


REPORTS: tuple[Report, ...] = (
    Report(
        "certificate_type_totals",
        "Counted awards per course and certificate type (seed 000).",
        table=Table(certificate_totals.certificate_type_totals, key=("course_id", "certificate_type"), columns=(
            Column("course_id", "VARCHAR", "The award's course, else the course of its enrollment's session."),
            Column("certificate_type", "VARCHAR", "The certificate's type (e.g. verified, honor)."),
            Column("total_certificates_issued", "BIGINT", "Counted awards: issued on or before the report date, "
                   "not revoked, enrollment (when named) not deleted nor in a deleted session."),
            REPORT_DATE,
        )),
        file=File(
            scope=(COURSE,), requesters=COURSE_TEAM, scope_columns={COURSE: "course_id"},
            rows=lambda state, ask: certificate_totals.certificate_type_totals(state),
            columns=(CsvColumn("CourseID", "course_id"), CsvColumn("Certificate Type", "certificate_type"),
                     CsvColumn("Total Certificates Issued", "total_certificates_issued"),
                     CsvColumn("Date Report Run", "report_date")),
        ),
    ),
    Report(
        "path_certificate_stats",
        "Per path certificate: certified and enrolled learners, associated paths (seed 001, active users).",
        table=Table(path_certificates.path_certificate_stats, key=("certificate_id",), columns=(
            Column("certificate_id", "VARCHAR", "A certificate with at least one active learner enrolled in a "
                   "session granting it."),
            Column("title", "VARCHAR", "The certificate's title."),
            Column("owner_group", "VARCHAR", "The group owning the certificate, if any."),
            Column("validity_period_months", "INTEGER", "Months an award stays valid; empty when it never expires."),
            Column("certified_learners", "BIGINT", "Unique active users with a counted award, whatever its "
                   "validity or session status."),
            Column("enrolled_learners", "BIGINT", "Unique active users with a non-deleted enrollment in a "
                   "non-archived session granting it."),
            Column("associated_paths", "BIGINT", "Courses with a non-deleted session granting the certificate."),
            REPORT_DATE,
        )),
        file=File(
            scope=(), requesters=CERTIFICATE_VIEWERS, scope_columns={}, filters=POPULATION_FILTERS,
            rows=_path_rows(path_certificates.path_certificate_stats),
            columns=(CsvColumn("Title", "title"), CsvColumn("Owner group", "owner_group"),
                     CsvColumn("Validity period", "validity_period_months"),
                     CsvColumn("Certified learners", "certified_learners"),
                     CsvColumn("Enrolled learners", "enrolled_learners"),
                     CsvColumn("Associated paths", "associated_paths")),
        ),
    ),
    Report(
        "path_certificate_learners",
        "Per certificate and enrolled learner: latest status, delivery and expiration (seed 001, active users).",
        table=Table(partial(path_certificates.path_certificate_learners, ordered=False),
                    key=("certificate_id", "user_id"), mostly_unchanged_nightly=True, columns=(
            Column("certificate_id", "VARCHAR", "The certificate."),
            Column("user_id", "VARCHAR", "An active learner with a non-deleted enrollment in a session granting it."),
            Column("learner_name", "VARCHAR", "The learner's name."),
            Column("learner_email", "VARCHAR", "The learner's email."),
            Column("latest_status", "VARCHAR", "Status of the learner's most recent counted award for the "
                   "certificate: Valid, Expiring soon (expires within 30 days), Expired, or Not obtained."),
            Column("delivery_date", "DATE", "Issue date of that award."),
            Column("expiration_date", "DATE", EXPIRATION + "; empty if it never expires."),
            REPORT_DATE,
        )),
        file=File(
            scope=(CERTIFICATE,), requesters=CERTIFICATE_VIEWERS, scope_columns={CERTIFICATE: "certificate_id"},
            filters=POPULATION_FILTERS, rows=_path_rows(path_certificates.path_certificate_learners),
            columns=(
                # ``Name <email>``; a learner without a profile shows their id.
                CsvColumn("Learner", pl.format("{} <{}>", pl.col("learner_name").fill_null(pl.col("user_id")),
                                               pl.col("learner_email").fill_null(""))),
                CsvColumn("Latest status", "latest_status"), CsvColumn("Delivery date", "delivery_date"),
                CsvColumn("Expiration date", "expiration_date"),
            ),
        ),
    ),
    Report(
        "learner_certificate_history",
        "Per enrollment in a session granting a certificate (seed 001, active users).",
        table=Table(partial(path_certificates.learner_certificate_history, ordered=False),
                    key=("enrollment_id", "certificate_id"), mostly_unchanged_nightly=True, columns=(
            Column("certificate_id", "VARCHAR", "The certificate the session grants."),
            Column("user_id", "VARCHAR", "The enrolled active learner."),
            Column("enrollment_id", "VARCHAR", "A non-deleted enrollment in a session granting the certificate."),
            Column("certification_status", "VARCHAR", "Status of the most recent counted award of that enrollment "
                   "(or Not obtained)."),
            Column("delivery_date", "DATE", "Issue date of that award."),
            Column("expiration_date", "DATE", EXPIRATION + "."),
            Column("path_name", "VARCHAR", "The course (path) of the session."),
            Column("path_session", "VARCHAR", "The session's name."),
            Column("path_status", "VARCHAR", "The enrollment's status (not_started, in_progress, completed, failed)."),
            Column("auto_reenrollment", "BOOLEAN", "The enrollment's auto_reenrolled flag."),
            REPORT_DATE,
        )),
        file=File(
            scope=(CERTIFICATE, LEARNER), requesters=CERTIFICATE_VIEWERS, filters=POPULATION_FILTERS,
            scope_columns={CERTIFICATE: "certificate_id", LEARNER: "user_id"},
            rows=_path_rows(path_certificates.learner_certificate_history),
            columns=(
                CsvColumn("Certification status", "certification_status"),
                CsvColumn("Delivery date", "delivery_date"), CsvColumn("Expiration date", "expiration_date"),
                CsvColumn("Path name", "path_name"), CsvColumn("Path session", "path_session"),
                CsvColumn("Path status", "path_status"),
                CsvColumn("Automatic re-enrollment activated?",
                          pl.when(pl.col("auto_reenrollment")).then(pl.lit("Yes")).otherwise(pl.lit("No"))),
            ),
        ),
    ),
    Report(
        "course_batch_dashboard",
        "Per batch: dates, Live or Expired, total enrollment (seed 002).",
        table=Table(course_dashboard.course_batch_dashboard, key=("batch_id",), columns=(
            Column("course_id", "VARCHAR", "The batch's course."),
            Column("batch_id", "VARCHAR", "A non-deleted session (batch) of the course."),
            Column("batch_name", "VARCHAR", "The batch's name."),
            Column("start_date", "DATE", "The batch's start date."),
            Column("end_date", "DATE", "The batch's end date."),
            Column("batch_status", "VARCHAR", "Expired when end_date is before the report date, else Live."),
            Column("total_enrollment", "BIGINT", "Non-deleted enrollments in the batch, every user counted."),
            REPORT_DATE,
        )),
    ),
    Report(
        "course_progress_exhaust",
        "Per non-deleted enrollment in a batch: dates, progress, certificate status, total score; no personal "
        "data (seed 002).",
        file=File(
            scope=(BATCH,), requesters=BATCH_TEAM, scope_columns={},
            rows=_batch_rows(course_dashboard.course_progress_exhaust),
            columns=(*BATCH_HEADER, CsvColumn("User UUID", "user_id"), CsvColumn("Enrolment Date", "enrolled_on"),
                     CsvColumn("Completion Date", "completed_on"), CsvColumn("Progress", "progress_percent"),
                     CsvColumn("Certificate Status", "certificate_status"),
                     CsvColumn("Total Score", "total_score")),
        ),
    ),
    Report(
        "user_profile_exhaust",
        "Per user enrolled in a batch: profile and custom fields (seed 002, personal data: password mandatory).",
        file=File(
            scope=(BATCH,), requesters=BATCH_OWNERS, scope_columns={}, password_mandatory=True,
            rows=_batch_rows(course_dashboard.user_profile_exhaust),
            columns=(*BATCH_HEADER, CsvColumn("User UUID", "user_id"), CsvColumn("User Name", "user_name"),
                     CsvColumn("Email ID", "email"), CsvColumn("Registration Date", "registered_on"),
                     CsvColumn("User Status", "user_status")),
            per_key_columns=PerKeyColumns(course_dashboard.CUSTOM_FIELD_PREFIX, "Custom: {key}"),
        ),
    ),
    Report(
        "question_set_report",
        "Per answer in a batch by a learner enrolled in it (seed 002).",
        file=File(
            scope=(BATCH,), requesters=BATCH_TEAM, scope_columns={},
            rows=_batch_rows(course_dashboard.question_set_report),
            columns=(*BATCH_HEADER, CsvColumn("User UUID", "user_id"), CsvColumn("QuestionSet Id", "question_set_id"),
                     CsvColumn("Attempt Id", "attempt_id"), CsvColumn("Attempted On", "answered_on"),
                     CsvColumn("Question Id", "question_id"), CsvColumn("Question Title", "question_text"),
                     CsvColumn("Question Response", "response"), CsvColumn("Question Score", "score"),
                     CsvColumn("Question Max Score", "max_score")),
        ),
    ),
)

BY_NAME: dict[str, Report] = {report.name: report for report in REPORTS}
# The reports.* tables and the requestable files, in the contract's order.
TABLES: dict[str, Table] = {report.name: report.table for report in REPORTS if report.table is not None}
FILES: dict[str, File] = {report.name: report.file for report in REPORTS if report.file is not None}


def table_columns(name: str) -> list[tuple[str, str, str]]:
    """(column, DuckDB type, meaning) of a report table, in table order."""
    return [(column.name, column.type, column.meaning) for column in TABLES[name].columns]
