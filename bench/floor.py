"""The benchmark's floors: what bare DuckDB (and pyzipper) need for the same work
the pipeline does, so bench/run.py can report the pipeline's cost as a ratio.

- ``ingest_floor``: DuckDB's bare ``read_json`` of one landing day into a fresh
  table with explicit columns.
- ``run_report_floor``: bench/report_floor.sql, the five ``reports.*`` tables
  for one day straight from ``state.*_history``; ``compare_with_pipeline``
  checks it against the pipeline's snapshot of that day.
- ``exhaust_floor``: a ``course_progress_exhaust`` batch's rows computed in SQL
  over ``state.*_history``, ``COPY``-ed to CSV, then pyzipper AES-256 of that
  file (same compression settings as the pipeline's report files).

Only DuckDB, Polars and pyzipper are imported here: the floors do not touch
certpipeline, and the test imports this module by path.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import duckdb

REPORT_FLOOR_SQL = Path(__file__).with_name("report_floor.sql")
REPORT_TABLES = (
    "certificate_type_totals",
    "path_certificate_stats",
    "path_certificate_learners",
    "learner_certificate_history",
    "course_batch_dashboard",
)
DEFAULT_SCHEMA = "bench_floor"


def _date_sql(day: dt.date) -> str:
    return f"DATE '{day.isoformat()}'"


def _cutoff_sql(day: dt.date) -> str:
    return f"TIMESTAMPTZ '{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00'"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- ingest floor ----------------------------------------------------------------

INGEST_COLUMNS = "{event_id: 'VARCHAR', event_type: 'VARCHAR', occurred_at: 'TIMESTAMPTZ', payload: 'JSON'}"


def ingest_floor(con: duckdb.DuckDBPyConnection, landing_day_dir: Path, table: str = "events") -> int:
    """``read_json`` every landing file of one day into a fresh table; returns its rows.

    Explicit columns, newline-delimited, lines that do not parse are skipped
    (the floor does no validation, dedup or rejection accounting)."""
    files = sorted(str(p) for p in Path(landing_day_dir).iterdir() if ".jsonl" in p.name)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_json([{', '.join(_quote(f) for f in files)}], "
        f"format = 'newline_delimited', columns = {INGEST_COLUMNS}, ignore_errors = true)"
    )
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


# -- report floor ----------------------------------------------------------------


def report_floor_sql(day: dt.date, schema: str = DEFAULT_SCHEMA) -> str:
    text = REPORT_FLOOR_SQL.read_text(encoding="utf-8")
    return (
        text.replace("__SCHEMA__", schema)
        .replace("__CUTOFF__", _cutoff_sql(day))
        .replace("__SOON__", _date_sql(day + dt.timedelta(days=30)))
        .replace("__DAY__", _date_sql(day))
    )


def _statements(script: str) -> list[str]:
    """The script's statements (it has no ';' inside literals; comments are dropped)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def run_report_floor(con: duckdb.DuckDBPyConnection, day: dt.date, schema: str = DEFAULT_SCHEMA) -> None:
    """Write the five report tables for ``day`` into ``schema`` (replacing them)."""
    for statement in _statements(report_floor_sql(day, schema)):
        con.execute(statement)


def floor_rows(con: duckdb.DuckDBPyConnection, table: str, schema: str = DEFAULT_SCHEMA) -> list[tuple]:
    return con.execute(f"SELECT * FROM {schema}.{table} ORDER BY ALL").fetchall()


def pipeline_rows(con: duckdb.DuckDBPyConnection, table: str, day: dt.date, schema: str = DEFAULT_SCHEMA) -> list[tuple]:
    """The pipeline's snapshot of ``day``, with the floor table's columns in its order."""
    columns = [row[0] for row in con.execute(f"DESCRIBE {schema}.{table}").fetchall()]
    return con.execute(
        f"SELECT {', '.join(columns)} FROM reports.{table} WHERE report_date = ? ORDER BY ALL", [day]
    ).fetchall()


def floor_reports(con: duckdb.DuckDBPyConnection, day: dt.date, schema: str = DEFAULT_SCHEMA) -> dict[str, list[tuple]]:
    """Run the floor for ``day``; the five tables as sorted row lists."""
    run_report_floor(con, day, schema)
    return {table: floor_rows(con, table, schema) for table in REPORT_TABLES}


def compare_with_pipeline(con: duckdb.DuckDBPyConnection, day: dt.date, schema: str = DEFAULT_SCHEMA) -> dict[str, dict]:
    """Per table: row counts and rows only in one side (multiset difference, in
    SQL so it scales), with up to 5 examples of each."""
    result = {}
    for table in REPORT_TABLES:
        columns = ", ".join(row[0] for row in con.execute(f"DESCRIBE {schema}.{table}").fetchall())
        floor_q = f"SELECT {columns} FROM {schema}.{table}"
        pipe_q = f"SELECT {columns} FROM reports.{table} WHERE report_date = {_date_sql(day)}"
        only_floor = con.execute(f"SELECT count(*) FROM ({floor_q} EXCEPT ALL {pipe_q})").fetchall()[0][0]
        only_pipeline = con.execute(f"SELECT count(*) FROM ({pipe_q} EXCEPT ALL {floor_q})").fetchall()[0][0]
        entry = {
            "floor_rows": con.execute(f"SELECT count(*) FROM ({floor_q})").fetchall()[0][0],
            "pipeline_rows": con.execute(f"SELECT count(*) FROM ({pipe_q})").fetchall()[0][0],
            "only_floor": only_floor,
            "only_pipeline": only_pipeline,
        }
        if only_floor or only_pipeline:
            entry["examples_only_floor"] = [
                [str(v) for v in row] for row in con.execute(f"{floor_q} EXCEPT ALL {pipe_q} ORDER BY ALL LIMIT 5").fetchall()
            ]
            entry["examples_only_pipeline"] = [
                [str(v) for v in row] for row in con.execute(f"{pipe_q} EXCEPT ALL {floor_q} ORDER BY ALL LIMIT 5").fetchall()
            ]
        result[table] = entry
    return result


# -- exhaust floor ---------------------------------------------------------------

EXHAUST_COLUMNS = (
    "Course Id", "Course Name", "Batch Id", "Batch Name", "User UUID", "Enrolment Date", "Completion Date",
    "Progress", "Certificate Status", "Total Score",
)
_TEXT_COLUMNS = ("Course Id", "Course Name", "Batch Id", "Batch Name", "User UUID", "Certificate Status")
_ORD = "(occurred_at, landing_date, file, line_number)"


# Contract section 5 as the pipeline writes it (FORMULA_TRIGGER in
# certpipeline/report_files.py, repeated because floors do not import the
# pipeline; test_bench_floor.py checks both give the same cells).
_FORMULA_TRIGGER = r"^(?:[\s\p{Z}\x0B\x{85}]*[=+\-@|]|[\t\r\n])"


def _neutralized(column: str) -> str:
    """A leading quote on a text cell a spreadsheet could run as a formula."""
    return f"CASE WHEN regexp_matches({column}, {_quote(_FORMULA_TRIGGER)}) THEN '''' || {column} ELSE {column} END"


def exhaust_floor_sql(batch_id: str, day: dt.date) -> str:
    """The course_progress_exhaust rows of one batch as of ``day`` (contract
    section 5), in the pipeline's order (user, enrolment time, enrollment id).

    An answer scores for the user's enrollment in the batch that started last
    before it was given (ASOF join), or for their first enrollment when it was
    given before any; the certificate status is that of the enrollment's most
    recent counted award."""
    b, cutoff, d = _quote(batch_id), _cutoff_sql(day), _date_sql(day)
    soon = _date_sql(day + dt.timedelta(days=30))
    return f"""
    WITH batch AS (
        SELECT s.session_id, s.a.course_id AS course_id, s.a.name AS name FROM (
            SELECT session_id, max_by({{'course_id': course_id, 'name': name}}, {_ORD}) FILTER (WHERE NOT is_deleted) AS a
            FROM state.session_history WHERE session_id = {b} AND occurred_at < {cutoff} GROUP BY session_id
        ) s
    ), header AS (
        SELECT batch.course_id, c.name AS course_name, batch.session_id, batch.name AS batch_name
        FROM batch LEFT JOIN (
            SELECT course_id, max_by({{'name': name}}, {_ORD}).name AS name
            FROM state.course_history
            WHERE occurred_at < {cutoff} AND course_id = (SELECT course_id FROM batch)
            GROUP BY course_id
        ) c ON c.course_id = batch.course_id
    ), enrollment AS (
        SELECT enrollment_id,
            max_by(is_deleted, {_ORD}) AS is_deleted,
            max_by({{'user_id': user_id, 'session_id': session_id, 'enrolled_at': enrolled_at}}, {_ORD})
                FILTER (WHERE NOT is_deleted) AS a
        FROM state.enrollment_history
        WHERE occurred_at < {cutoff}
          AND enrollment_id IN (SELECT enrollment_id FROM state.enrollment_history WHERE session_id = {b})
        GROUP BY enrollment_id
    ), live AS (
        SELECT enrollment_id, a.user_id AS user_id, a.enrolled_at AS enrolled_at
        FROM enrollment WHERE NOT is_deleted AND a.session_id = {b}
    ), progress AS (
        SELECT enrollment_id,
            max_by({{'progress_percent': progress_percent, 'completed_at': completed_at}}, {_ORD}) AS p
        FROM state.enrollment_progress_history
        WHERE occurred_at < {cutoff} AND enrollment_id IN (SELECT enrollment_id FROM live)
        GROUP BY enrollment_id
    ), answer AS (
        SELECT x.a.user_id AS user_id, x.a.answered_at AS answered_at, x.a.score AS score FROM (
            SELECT max_by({{'session_id': session_id, 'user_id': user_id, 'answered_at': answered_at, 'score': score}}, {_ORD}) AS a
            FROM state.answer_history
            WHERE occurred_at < {cutoff}
              AND session_id = {b}
            GROUP BY user_id, session_id, question_set_id, attempt_id, question_id
        ) x
        WHERE x.a.session_id = {b}
    ), first_enrollment AS (
        SELECT user_id, arg_min(enrollment_id, enrolled_at) AS enrollment_id FROM live GROUP BY user_id
    ), scored AS (
        SELECT coalesce(l.enrollment_id, f.enrollment_id) AS enrollment_id, answer.score
        FROM answer
        ASOF LEFT JOIN live l ON l.user_id = answer.user_id AND answer.answered_at >= l.enrolled_at
        JOIN first_enrollment f ON f.user_id = answer.user_id
    ), scores AS (
        SELECT enrollment_id, sum(score) AS total_score FROM scored GROUP BY enrollment_id
    ), award AS (
        SELECT award_id,
            max_by(is_revoked, {_ORD}) AS is_revoked,
            max_by({{'certificate_id': certificate_id, 'issued_at': issued_at, 'enrollment_id': enrollment_id}}, {_ORD})
                FILTER (WHERE NOT is_revoked) AS a
        FROM state.award_history
        WHERE occurred_at < {cutoff}
          AND award_id IN (SELECT award_id FROM state.award_history WHERE enrollment_id IN (SELECT enrollment_id FROM live))
        GROUP BY award_id
    ), counted AS (
        SELECT award.award_id, award.a.enrollment_id AS enrollment_id, award.a.issued_at AS issued_at,
            CASE WHEN c.validity_months IS NOT NULL
                 THEN CAST(CAST(award.a.issued_at AS DATE) + to_months(c.validity_months) AS DATE) END AS expiration_date
        FROM award
        LEFT JOIN (
            SELECT certificate_id, max_by({{'validity_months': validity_months}}, {_ORD}).validity_months AS validity_months
            FROM state.certificate_history WHERE occurred_at < {cutoff} GROUP BY certificate_id
        ) c ON c.certificate_id = award.a.certificate_id
        WHERE NOT award.is_revoked AND award.a.issued_at < {cutoff}
          AND award.a.enrollment_id IN (SELECT enrollment_id FROM live)
    ), award_status AS (
        SELECT enrollment_id,
            CASE WHEN e <= {d} THEN 'Expired' WHEN e <= {soon} THEN 'Expiring soon' ELSE 'Valid' END AS status
        FROM (SELECT enrollment_id, max_by({{'e': expiration_date}}, (issued_at, award_id)).e AS e FROM counted GROUP BY enrollment_id)
    ), rows AS (
        SELECT h.course_id, h.course_name, h.session_id, h.batch_name,
            live.user_id, live.enrolled_at, live.enrollment_id,
            CAST(live.enrolled_at AS DATE) AS enrolment_date,
            CAST(progress.p.completed_at AS DATE) AS completion_date,
            coalesce(progress.p.progress_percent, 0) AS progress,
            coalesce(award_status.status, 'Not obtained') AS certificate_status,
            coalesce(scores.total_score, 0) AS total_score
        FROM live
        CROSS JOIN header h
        LEFT JOIN progress USING (enrollment_id)
        LEFT JOIN scores USING (enrollment_id)
        LEFT JOIN award_status USING (enrollment_id)
    )
    SELECT
        {_neutralized('course_id')} AS "Course Id",
        {_neutralized('course_name')} AS "Course Name",
        {_neutralized('session_id')} AS "Batch Id",
        {_neutralized('batch_name')} AS "Batch Name",
        {_neutralized('user_id')} AS "User UUID",
        enrolment_date AS "Enrolment Date",
        completion_date AS "Completion Date",
        progress AS "Progress",
        {_neutralized('certificate_status')} AS "Certificate Status",
        total_score AS "Total Score"
    FROM rows
    ORDER BY user_id, enrolled_at, enrollment_id
    """


def exhaust_floor(
    con: duckdb.DuckDBPyConnection, batch_id: str, day: dt.date, csv_path: Path, zip_path: Path, password: str
) -> int:
    """COPY the batch's exhaust rows to ``csv_path``, then AES-256 zip that file
    to ``zip_path`` (deflate level 1, the pipeline's setting) and remove the
    plaintext. Returns the number of rows."""
    import pyzipper

    con.execute("SET TimeZone = 'UTC'")
    result = con.execute(
        f"COPY ({exhaust_floor_sql(batch_id, day)}) TO {_quote(str(csv_path))} (HEADER, DELIMITER ',')"
    ).fetchall()
    rows = result[0][0] if result else -1
    with pyzipper.AESZipFile(
        zip_path, "w", compression=pyzipper.ZIP_DEFLATED, compresslevel=1, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(password.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        zf.write(csv_path, arcname=Path(csv_path).name)
    os.unlink(csv_path)
    return rows


def read_encrypted_csv(zip_path: Path, password: str) -> bytes:
    import pyzipper

    with pyzipper.AESZipFile(zip_path) as zf:
        zf.setpassword(password.encode("utf-8"))
        (name,) = zf.namelist()
        return zf.read(name)


def largest_batch(con: duckdb.DuckDBPyConnection, day: dt.date) -> tuple[str, int]:
    """The non-deleted batch with the most non-deleted enrollments as of ``day``
    (from the floor's own state logic); (batch_id, enrollments)."""
    cutoff = _cutoff_sql(day)
    row = con.execute(
        f"""
        WITH s AS (
            SELECT session_id, max_by(is_deleted, {_ORD}) AS is_deleted
            FROM state.session_history WHERE occurred_at < {cutoff} GROUP BY session_id
        ), e AS (
            SELECT enrollment_id, max_by(is_deleted, {_ORD}) AS is_deleted,
                max_by({{'session_id': session_id}}, {_ORD}) FILTER (WHERE NOT is_deleted) AS a
            FROM state.enrollment_history WHERE occurred_at < {cutoff} GROUP BY enrollment_id
        )
        SELECT e.a.session_id AS batch_id, count(*) AS n
        FROM e JOIN s ON s.session_id = e.a.session_id
        WHERE NOT e.is_deleted AND NOT s.is_deleted
        GROUP BY ALL ORDER BY n DESC, batch_id LIMIT 1
        """
    ).fetchall()
    return (row[0][0], row[0][1]) if row else (None, 0)
