"""Report requests: filing, permissions, lifecycle, and producing the files.

Lifecycle (contract section 6): Submitted -> Pending -> Success | Failure;
Success -> Expired once its file is deleted after the retention period
(contract section 8).

This module holds the rules and the SQL; ``request_service`` runs the
lifecycle over a ``Warehouse`` for the CLI, the HTTP API and Dagster. What
each report type takes (scope, who may request it, password, filters, CSV
columns) is in ``certpipeline.reports.catalog``.

- Filing checks everything it can at once (report type, scope, rights,
  filters, mandatory password, an identical request still waiting) against
  the published warehouse, and stores nothing when it refuses.
- A processing pass claims waiting requests (Submitted, or Pending whose
  lease ran out: left behind by a crash) and marks them Pending. Production
  re-checks rights against the working database; a refusal then is a
  permanent Failure. Any other error leaves the request Pending for the next
  pass, three attempts in all, then Failure with the last error. An attempt
  counts when its production ends (a file or an error): a claim whose process
  was killed before that spends none.
- Production is serialized by the work lock and skips a request that is no
  longer Pending, so a request is produced at most once even when a sensor run
  and ``process-requests`` both picked it up.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from certpipeline.report_files import ReportFile, safe_file_component, write_report_file
from certpipeline.reports import catalog
from certpipeline.reports.catalog import (
    ALL,
    BATCH,
    BATCH_TEAM,
    CERTIFICATE,
    CERTIFICATE_VIEWERS,
    COURSE,
    COURSE_TEAM,
    LEARNER,
    POPULATION_FILTERS,
)
from certpipeline.reports.filters import EVERYTHING, USER_STATUSES, PopulationFilter, requester_visibility
from certpipeline.state import State

SUBMITTED, PENDING, SUCCESS, FAILURE, EXPIRED = "Submitted", "Pending", "Success", "Failure", "Expired"
MAX_ATTEMPTS = 3
LISTED_REQUESTS = 10
DEFAULT_LEASE = dt.timedelta(minutes=30)

REQUESTS_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.report_requests (
    request_id VARCHAR PRIMARY KEY,
    report_type VARCHAR NOT NULL,
    scope VARCHAR NOT NULL,
    filters VARCHAR NOT NULL,
    requested_by VARCHAR NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    status VARCHAR NOT NULL,
    status_reason VARCHAR,
    file_path VARCHAR,
    row_count BIGINT,
    completed_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_expires_at TIMESTAMPTZ,
    encrypted BOOLEAN NOT NULL DEFAULT false,
    password_ciphertext BLOB
);
"""
# What the published warehouse shows: everything but the ciphertext.
PUBLIC_COLUMNS = (
    "request_id, report_type, scope, filters, requested_by, requested_at, status, status_reason, "
    "file_path, row_count, completed_at, attempts, encrypted"
)


class RequestRefused(ValueError):
    """A request that cannot be filed or produced, with a reason a person can act on."""


class RequestForbidden(RequestRefused):
    """Refused because of who asks: unknown or deleted requester, or outside their rights."""


class RequestConflict(RequestRefused):
    """Refused because an identical request is still waiting."""


# -- what may be requested: the report catalog's files ---------------------------


@dataclass(frozen=True)
class RequestSpec:
    report_type: str
    requested_by: str
    course: str | None = None
    batch: str | None = None
    certificate: str | None = None
    learner: str | None = None
    filters: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def scope(self) -> str:
        """Canonical scope text, e.g. ``batch=b-1`` or ``certificate=c-1;learner=u-1``."""
        parts = [f"{kind}={value}" for kind, value in self.scope_ids().items()]
        return ";".join(parts) if parts else ALL

    def scope_ids(self) -> dict[str, str]:
        given = {COURSE: self.course, BATCH: self.batch, CERTIFICATE: self.certificate, LEARNER: self.learner}
        return {kind: value for kind, value in given.items() if value is not None}

    @property
    def filters_json(self) -> str:
        return json.dumps(dict(sorted(self.filters)), sort_keys=True)

    @classmethod
    def from_row(cls, report_type: str, requested_by: str, scope: str, filters: str) -> "RequestSpec":
        """Inverse of ``scope``. Ids may contain ``;`` and ``=``: the scope starts with
        its one kind, and a learner, when the report type takes one, comes last."""
        ids: dict[str, str] = {}
        if scope != ALL:
            kind, _, value = scope.partition("=")
            known = catalog.FILES.get(report_type)
            if kind == CERTIFICATE and known is not None and LEARNER in known.scope:
                value, _, ids[LEARNER] = value.rpartition(f";{LEARNER}=")
            ids[kind] = value
        return cls(report_type, requested_by, filters=tuple(sorted(json.loads(filters).items())), **ids)


def parse_filters(spec: RequestSpec) -> PopulationFilter:
    """Filters (contract section 7): user_status, group, registered_from,
    registered_to and custom.KEY=VALUE."""
    options: dict = {}
    custom = []
    for key, value in spec.filters:
        if key == "user_status":
            if value not in USER_STATUSES:
                raise RequestRefused(f"filter user_status must be one of {', '.join(USER_STATUSES)}, not {value!r}")
            options["user_status"] = value
        elif key == "group":
            options["group_id"] = value
        elif key in ("registered_from", "registered_to"):
            try:
                options[key] = dt.date.fromisoformat(value)
            except ValueError:
                raise RequestRefused(f"filter {key} must be a date YYYY-MM-DD, not {value!r}") from None
        elif key.startswith("custom.") and len(key) > len("custom."):
            custom.append((key[len("custom."):], value))
        else:
            raise RequestRefused(
                f"unknown filter {key!r}: use {', '.join(POPULATION_FILTERS[:-1])} or {POPULATION_FILTERS[-1]}"
            )
    return PopulationFilter(custom_fields=tuple(custom), **options)


def _shape_check(spec: RequestSpec) -> catalog.File:
    report_type = catalog.FILES.get(spec.report_type)
    if report_type is None:
        raise RequestRefused(f"unknown report type {spec.report_type!r}; known: {', '.join(catalog.FILES)}")
    given = set(spec.scope_ids())
    if given != set(report_type.scope):
        wanted = " and ".join(f"--{kind}" for kind in report_type.scope) or "no scope option"
        raise RequestRefused(f"{spec.report_type} takes {wanted}")
    if spec.filters and not report_type.filters:
        raise RequestRefused(f"{spec.report_type} takes no filters; filters apply to path certificate reports")
    if report_type.filters:
        parse_filters(spec)
    return report_type


# -- who may request what (contract section 5) ------------------------------


def _first(frame: pl.DataFrame, column: str):
    return frame[column][0] if not frame.is_empty() else None


def _user_ids(frame: pl.DataFrame, column: str) -> list[str]:
    """The first row's list cell (authors, instructors, mentors) as a Python list.
    Polars returns a list cell as a Series, whose truth value is an error."""
    value = _first(frame, column)
    if value is None:
        return []
    return value.to_list() if isinstance(value, pl.Series) else list(value)


def check_rights(state: State, spec: RequestSpec) -> None:
    """Raise RequestRefused unless the scope exists and the requester may request it."""
    report_type = _shape_check(spec)
    user = state.users.filter(pl.col("user_id") == spec.requested_by)
    if user.is_empty():
        raise RequestForbidden(f"unknown requester {spec.requested_by!r}")
    if user["status"][0] != "active":
        raise RequestForbidden(f"requester {spec.requested_by!r} is a deleted user")
    is_admin = user["platform_role"][0] == "admin"
    me = spec.requested_by

    if report_type.requesters == COURSE_TEAM:
        course = state.courses.filter(pl.col("course_id") == spec.course)
        if course.is_empty():
            raise RequestRefused(f"unknown course {spec.course!r}")
        if not (is_admin or _first(course, "created_by") == me or me in _user_ids(course, "authors")
                or me in _user_ids(course, "instructors")):
            raise RequestForbidden(
                f"{me} may not request {spec.report_type} for course {spec.course}: "
                "only platform admins, the course creator, authors and instructors may"
            )
    if report_type.requesters in (BATCH_TEAM, catalog.BATCH_OWNERS):
        batch = state.sessions.filter((pl.col("session_id") == spec.batch) & ~pl.col("is_deleted"))
        if batch.is_empty():
            raise RequestRefused(f"unknown batch {spec.batch!r}")
        course = state.courses.filter(pl.col("course_id") == batch["course_id"][0])
        creators = {_first(batch, "created_by"), _first(course, "created_by")} - {None}
        mentors_may = report_type.requesters == BATCH_TEAM
        allowed = is_admin or me in creators or (mentors_may and me in _user_ids(batch, "mentors"))
        if not allowed:
            who = "the course or batch creator" + (" and batch mentors" if mentors_may else "")
            raise RequestForbidden(
                f"{me} may not request {spec.report_type} for batch {spec.batch}: only platform admins, {who} may"
            )
    if report_type.requesters == CERTIFICATE_VIEWERS:
        visibility = requester_visibility(state, me)
        if not visibility.sees_anything:
            raise RequestForbidden(
                f"{me} may not request {spec.report_type}: only platform admins, group admins, coaches, "
                "and authors or instructors of paths may"
            )
        population = parse_filters(spec)
        if population.group_id and state.groups.filter(pl.col("group_id") == population.group_id).is_empty():
            raise RequestRefused(f"unknown group {population.group_id!r}")
        if spec.certificate is not None:
            if state.certificates.filter(pl.col("certificate_id") == spec.certificate).is_empty():
                raise RequestRefused(f"unknown certificate {spec.certificate!r}")
            if not visibility.may_see_certificate(spec.certificate):
                raise RequestForbidden(
                    f"{me} may not request {spec.report_type} for certificate {spec.certificate}: "
                    "it is not granted by a path they author or instruct"
                )
        if spec.learner is not None:
            if state.users.filter(pl.col("user_id") == spec.learner).is_empty():
                raise RequestRefused(f"unknown learner {spec.learner!r}")
            if not visibility.may_see_learner(spec.certificate, spec.learner):
                raise RequestForbidden(
                    f"{me} may not see learner {spec.learner} for certificate {spec.certificate}"
                )


# -- the request queue ---------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_request_id(now: dt.datetime) -> str:
    return f"req-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


def file_request(
    con: duckdb.DuckDBPyConnection,
    state: State,
    spec: RequestSpec,
    password_ciphertext: bytes | None,
    now: dt.datetime | None = None,
) -> str:
    """Check and store a request as Submitted; returns its id. ``con`` is the
    request queue; ``state`` what the rights are checked against."""
    now = now or _now()
    report_type = _shape_check(spec)
    if report_type.password_mandatory and password_ciphertext is None:
        raise RequestRefused(f"{spec.report_type} contains personal data: a password is mandatory")
    check_rights(state, spec)
    con.execute("BEGIN TRANSACTION")
    try:
        waiting = con.execute(
            "SELECT request_id, status FROM ops.report_requests WHERE report_type = ? AND scope = ? "
            "AND filters = ? AND status IN (?, ?) ORDER BY requested_at LIMIT 1",
            [spec.report_type, spec.scope, spec.filters_json, SUBMITTED, PENDING],
        ).fetchall()
        if waiting:
            raise RequestConflict(
                f"an identical request {waiting[0][0]} is still {waiting[0][1]}; it can be requested again once it is processed"
            )
        request_id = new_request_id(now)
        con.execute(
            "INSERT INTO ops.report_requests (request_id, report_type, scope, filters, requested_by, requested_at, "
            "status, status_reason, encrypted, password_ciphertext) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [request_id, spec.report_type, spec.scope, spec.filters_json, spec.requested_by, now, SUBMITTED,
             None, password_ciphertext is not None, password_ciphertext],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return request_id


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    spec: RequestSpec
    status: str
    attempts: int
    password_ciphertext: bytes | None


def get_request(con: duckdb.DuckDBPyConnection, request_id: str) -> StoredRequest | None:
    row = con.execute(
        "SELECT request_id, report_type, requested_by, scope, filters, status, attempts, password_ciphertext "
        "FROM ops.report_requests WHERE request_id = ?",
        [request_id],
    ).fetchall()
    if not row:
        return None
    row = row[0]
    return StoredRequest(row[0], RequestSpec.from_row(row[1], row[2], row[3], row[4]), row[5], row[6], row[7])


def pending_among(con: duckdb.DuckDBPyConnection, request_ids: list[str]) -> list[str]:
    """Those of ``request_ids`` that are Pending."""
    if not request_ids:
        return []
    rows = con.execute(
        "SELECT request_id FROM ops.report_requests WHERE status = 'Pending' AND request_id IN (SELECT unnest(?))",
        [list(request_ids)],
    ).fetchall()
    return [request_id for (request_id,) in rows]


def claim_waiting(
    con: duckdb.DuckDBPyConnection,
    now: dt.datetime | None = None,
    lease: dt.timedelta = DEFAULT_LEASE,
    include_leased: bool = False,
) -> list[tuple[str, int]]:
    """Mark waiting requests Pending; returns (id, attempts so far), oldest first.

    Waiting: Submitted, or Pending whose lease ran out (a crashed or failed
    attempt). ``include_leased`` also takes Pending requests still on lease:
    ``process-requests`` does, since production re-checks the status under the
    work lock and never produces a request twice."""
    now = now or _now()
    rows = con.execute(
        """
        UPDATE ops.report_requests
        SET status = 'Pending', lease_expires_at = $lease_end
        WHERE status = 'Submitted'
           OR (status = 'Pending' AND ($include_leased OR lease_expires_at IS NULL OR lease_expires_at <= $now))
        RETURNING request_id, attempts, requested_at
        """,
        {"now": now, "lease_end": now + lease, "include_leased": include_leased},
    ).fetchall()
    return [(request_id, attempts) for request_id, attempts, _ in sorted(rows, key=lambda row: (row[2], row[0]))]


def mark_success(con, request_id: str, report_file: ReportFile, now: dt.datetime | None = None) -> None:
    con.execute(
        "UPDATE ops.report_requests SET status = 'Success', status_reason = NULL, file_path = ?, row_count = ?, "
        "completed_at = ?, lease_expires_at = NULL, password_ciphertext = NULL, attempts = attempts + 1 "
        "WHERE request_id = ?",
        [str(report_file.path), report_file.row_count, now or _now(), request_id],
    )


def mark_failed_attempt(con, request_id: str, reason: str, permanent: bool, now: dt.datetime | None = None) -> str:
    """Record a failed attempt (it reached production and ended); returns the resulting status."""
    now = now or _now()
    attempts = con.execute(
        "UPDATE ops.report_requests SET attempts = attempts + 1 WHERE request_id = ? RETURNING attempts", [request_id]
    ).fetchall()[0][0]
    if permanent or attempts >= MAX_ATTEMPTS:
        con.execute(
            "UPDATE ops.report_requests SET status = 'Failure', status_reason = ?, completed_at = ?, "
            "lease_expires_at = NULL, password_ciphertext = NULL WHERE request_id = ?",
            [reason, now, request_id],
        )
        return FAILURE
    con.execute(
        "UPDATE ops.report_requests SET status_reason = ?, lease_expires_at = ? WHERE request_id = ?",
        [f"attempt {attempts} of {MAX_ATTEMPTS} failed, retried on the next pass: {reason}", now, request_id],
    )
    return PENDING


def files_completed_before(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> list[tuple[str, str]]:
    """(request_id, file_path) of every Success whose file was made before ``cutoff``."""
    return con.execute(
        "SELECT request_id, file_path FROM ops.report_requests WHERE status = 'Success' AND completed_at <= ? "
        "ORDER BY completed_at, request_id",
        [cutoff],
    ).fetchall()


def mark_expired(con: duckdb.DuckDBPyConnection, request_ids: list[str], retention_days: int) -> None:
    """The row stays, without its file: contract section 8."""
    con.execute(
        "UPDATE ops.report_requests SET status = 'Expired', file_path = NULL, "
        "status_reason = ? WHERE status = 'Success' AND request_id IN (SELECT unnest(?))",
        [f"the file was deleted after the {retention_days}-day retention period", list(request_ids)],
    )


def public_request(con: duckdb.DuckDBPyConnection, request_id: str) -> dict | None:
    """One request as the published ``ops.report_requests`` shows it: never the password."""
    cursor = con.execute(f"SELECT {PUBLIC_COLUMNS} FROM ops.report_requests WHERE request_id = ?", [request_id])
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    return dict(zip(names, rows[0], strict=True)) if rows else None


def list_requests(con: duckdb.DuckDBPyConnection, kind: str, scope_id: str,
                  requested_by: str | None = None) -> pl.DataFrame:
    """The last ten requests of a scope, newest first (of one requester's, when
    given). A certificate's requests include those for one of its learners."""
    scope = f"{kind}={scope_id}"
    return con.sql(
        f"""
        SELECT {PUBLIC_COLUMNS}
        FROM ops.report_requests
        WHERE (scope = $scope OR scope LIKE $scope_prefix ESCAPE '\\')
          AND ($requested_by::VARCHAR IS NULL OR requested_by = $requested_by)
        ORDER BY requested_at DESC, request_id DESC
        LIMIT {LISTED_REQUESTS}
        """,
        params={"scope": scope, "scope_prefix": _like_escape(scope) + ";%", "requested_by": requested_by},
    ).pl()


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- producing the files (contract section 5) ------------------------------------


def report_frame(state: State, spec: RequestSpec) -> pl.DataFrame:
    """The report's rows with exactly the contract's CSV columns (from the catalog)."""
    report = catalog.FILES.get(spec.report_type)
    if report is None:
        raise RequestRefused(f"unknown report type {spec.report_type!r}")
    # Filters and the requester's visibility narrow the reports that take filters.
    population = parse_filters(spec) if report.filters else PopulationFilter()
    visibility = requester_visibility(state, spec.requested_by) if report.filters else EVERYTHING
    return report.frame(state, catalog.Ask(spec.scope_ids(), population, visibility))


def report_file_location(exhausts_dir: Path, request_id: str, spec: RequestSpec) -> tuple[Path, str]:
    """``exhausts/<report_type>/<scope>-<request_id>``: ids are sanitized, so
    nothing a requester types can leave the exhausts folder. A long scope is
    shortened (with a hash of the whole); the request id always stays whole."""
    directory = exhausts_dir / safe_file_component(spec.report_type)
    return directory, f"{safe_file_component(spec.scope)}-{safe_file_component(request_id)}"


def produce(state: State, exhausts_dir: Path, request_id: str, spec: RequestSpec, password: str | None) -> ReportFile:
    check_rights(state, spec)
    frame = report_frame(state, spec)
    directory, stem = report_file_location(exhausts_dir, request_id, spec)
    # A production killed mid-write leaves its hidden temporary file behind.
    for stale in directory.glob(f".{stem}.*.tmp"):
        stale.unlink(missing_ok=True)
    return write_report_file(frame, directory, stem, password)

