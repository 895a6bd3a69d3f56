"""Checks that would catch a broken report run, stated in SQL independently of
the Polars transforms that build the tables."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb

from certpipeline.reports import snapshots
from certpipeline.reports.catalog import TABLES
from certpipeline.state import State, cutoff_literal


@dataclass(frozen=True)
class Check:
    table: str
    name: str
    description: str


# Every check, in the order ``run_report_checks`` reports them.
REPORT_CHECKS = (
    *(Check(table, "keys_unique", "No two rows of a snapshot share the report's key.") for table in TABLES),
    Check("certificate_type_totals", "totals_reconcile_with_awards",
          "Total certificates issued equals the counted awards with a course, counted independently in SQL."),
    Check("path_certificate_learners", "learner_certificates_listed",
          "Every learner row's certificate is in path_certificate_stats with user status 'all'."),
)


@dataclass(frozen=True)
class CheckOutcome:
    table: str
    name: str
    problems: int
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.problems == 0


def duplicate_keys(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> int:
    key = ", ".join(TABLES[table].key)
    return con.execute(
        f"SELECT count(*) FROM (SELECT {key} FROM ({snapshots.day_sql(con, table, day)}) GROUP BY ALL HAVING count(*) > 1)"
    ).fetchall()[0][0]


# The state entities the checks read.
CHECKED_ENTITIES = ("awards", "enrollments", "sessions", "certificates")


@contextmanager
def _state_relations(con: duckdb.DuckDBPyConnection, as_of: State):
    """The entities the checks read, from the state the reports were built
    from (registered frames, so it is not aggregated again)."""
    names = {name: f"checked_{name}" for name in CHECKED_ENTITIES}
    for name, view in names.items():
        con.register(view, getattr(as_of, name))
    try:
        yield names
    finally:
        for view in names.values():
            con.unregister(view)


def counted_awards_with_course(con: duckdb.DuckDBPyConnection, day: dt.date, relations: dict[str, str]) -> int:
    """Contract section 3, written once more in SQL: issued on or before the day,
    not revoked, enrollment (when known) not deleted nor in a deleted session."""
    return con.execute(
        f"""
        SELECT count(*)
        FROM {relations['awards']} a
        LEFT JOIN {relations['enrollments']} e ON e.enrollment_id = a.enrollment_id
        LEFT JOIN {relations['sessions']} s ON s.session_id = e.session_id
        WHERE NOT a.is_revoked AND a.issued_at < {cutoff_literal(day)}
          AND NOT coalesce(e.is_deleted, false) AND NOT coalesce(s.is_deleted, false)
          AND coalesce(a.course_id, s.course_id) IS NOT NULL
        """
    ).fetchall()[0][0]


def combine_days(per_day: dict[dt.date, list[CheckOutcome]]) -> list[CheckOutcome]:
    """Each check over several days' snapshots: the problems of every day
    added up, and the detail of each day that had any."""
    days = list(per_day)
    combined = []
    for index, first in enumerate(per_day[days[0]]):
        outcomes = [(day, per_day[day][index]) for day in days]
        details = [f"{day}: {o.detail}" for day, o in outcomes if o.detail and (not o.passed or len(days) == 1)]
        combined.append(CheckOutcome(first.table, first.name, sum(o.problems for _, o in outcomes),
                                     "; ".join(details)[:2000]))
    return combined


def run_report_checks(con: duckdb.DuckDBPyConnection, day: dt.date, as_of: State) -> list[CheckOutcome]:
    """The checks of ``day``'s stored snapshots, against ``as_of`` (the state
    as of ``day`` the reports were built from)."""
    outcomes = [CheckOutcome(table, "keys_unique", duplicate_keys(con, table, day)) for table in TABLES]

    reported = con.execute(
        "SELECT coalesce(sum(total_certificates_issued), 0) "
        f"FROM ({snapshots.day_sql(con, 'certificate_type_totals', day)})"
    ).fetchall()[0][0]
    with _state_relations(con, as_of) as relations:
        expected = counted_awards_with_course(con, day, relations)
        # With user status 'all' every certificate is listed, so each learner row's
        # certificate must be a known certificate as of the day.
        unlisted = con.execute(
            f"SELECT count(*) FROM ({snapshots.day_sql(con, 'path_certificate_learners', day)}) l "
            f"WHERE l.certificate_id NOT IN (SELECT certificate_id FROM {relations['certificates']})"
        ).fetchall()[0][0]
    outcomes.append(
        CheckOutcome(
            "certificate_type_totals",
            "totals_reconcile_with_awards",
            abs(int(reported) - int(expected)),
            f"reported {reported}, counted awards {expected}",
        )
    )
    outcomes.append(CheckOutcome("path_certificate_learners", "learner_certificates_listed", unlisted))
    return outcomes
