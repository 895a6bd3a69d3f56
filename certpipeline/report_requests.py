"""Report requests: the queue (``ops.report_requests``) and its lifecycle.

Lifecycle (contract section 6): Submitted -> Pending -> Success | Failure;
Success -> Expired once its file is deleted after the retention period
(contract section 8).

This module holds the lifecycle's rules and SQL; ``request_rules`` what may be
requested, by whom, and producing the file; ``request_service`` runs the
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
import secrets
from dataclasses import dataclass

import duckdb
import polars as pl

from certpipeline.report_files import ReportFile
from certpipeline.request_rules import RequestConflict, RequestRefused, RequestSpec, check_rights, check_shape
from certpipeline.state import State
from certpipeline.transactions import transaction

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
    report_type = check_shape(spec)
    if report_type.password_mandatory and password_ciphertext is None:
        raise RequestRefused(f"{spec.report_type} contains personal data: a password is mandatory")
    check_rights(state, spec)
    with transaction(con):
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
