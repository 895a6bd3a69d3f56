"""The benchmark's floors: what bare DuckDB (and pyzipper) need for the same work
the pipeline does, so bench/run.py can report the pipeline's cost as a ratio.

- ``ingest_floor``: DuckDB's bare ``read_json`` of one landing day into a fresh
  table with explicit columns.
- ``run_report_floor``: bench/report_floor.sql, the five ``reports.*`` tables
  for one day straight from ``state.*_history``; ``compare_with_pipeline``
  checks it against the pipeline's snapshot of that day.
- ``end_to_end_floor`` (``e2e_ingest_day`` + ``e2e_report_day``): from the
  landing folder alone, each landing day's lines read and parsed as JSON, the contract's
  validation, dedup, typed history of the entities the reports read, then the
  five report tables of every report day (bench/report_floor.sql over that
  history); test_bench_floor.py checks its rows equal the pipeline's.
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


def report_floor_sql(day: dt.date, schema: str = DEFAULT_SCHEMA, state: str = "state") -> str:
    text = REPORT_FLOOR_SQL.read_text(encoding="utf-8")
    return (
        text.replace("__SCHEMA__", schema)
        .replace("__STATE__", state)
        .replace("__CUTOFF__", _cutoff_sql(day))
        .replace("__SOON__", _date_sql(day + dt.timedelta(days=30)))
        .replace("__DAY__", _date_sql(day))
    )


def _statements(script: str) -> list[str]:
    """The script's statements (it has no ';' inside literals; comments are dropped)."""
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def run_report_floor(con: duckdb.DuckDBPyConnection, day: dt.date, schema: str = DEFAULT_SCHEMA,
                     state: str = "state") -> None:
    """Write the five report tables for ``day`` into ``schema`` (replacing them),
    from the ``*_history`` tables of schema ``state``."""
    for statement in _statements(report_floor_sql(day, schema, state)):
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


# -- end-to-end floor --------------------------------------------------------------
#
# From the landing folder alone: each landing day's lines are parsed as JSON,
# validated by the contract's rules, deduplicated (the copy with the earliest
# landing date, file and line counts) and appended to a typed history of the
# entities the five reports read; then bench/report_floor.sql computes every
# report day's five tables from that history. Days must be ingested in
# ascending order (a backfill, then one night at a time), so "seen on an
# earlier day" is "an earlier copy". Answers and group memberships feed no
# report table and are not typed; their lines are read like every other.

E2E_STATE = "e2e_state"  # typed history and the ids already counted
E2E_REPORTS = "e2e_reports"  # every report day's five tables, with report_date
_E2E_DAY = "e2e_day_tables"  # one day's tables, before they are appended

STRING, BOOL, INT, NUMBER, TIMESTAMP, DATE, STRING_LIST, STRING_MAP = (
    "string", "bool", "int", "number", "timestamp", "date", "string_list", "string_map")


def _field(kind=STRING, required=False, allowed=(), minimum=None, maximum=None):
    return {"kind": kind, "required": required, "allowed": allowed, "minimum": minimum, "maximum": maximum}


_REQUIRED = _field(required=True)
# Contract section 2 for the event types the reports read, restated here
# (floors do not import the pipeline): every field of a line is validated,
# also those no report reads, because a bad one rejects the whole line.
E2E_EVENT_TYPES = {
    "user.upserted": {"user_id": _REQUIRED, "name": _REQUIRED, "email": _REQUIRED,
                      "registered_at": _field(TIMESTAMP, True), "custom_fields": _field(STRING_MAP),
                      "platform_role": _field(allowed=("admin",))},
    "user.deleted": {"user_id": _REQUIRED},
    "group.upserted": {"group_id": _REQUIRED, "name": _REQUIRED, "parent_group_id": _field()},
    "course.upserted": {"course_id": _REQUIRED, "name": _REQUIRED, "created_by": _field(),
                        "authors": _field(STRING_LIST), "instructors": _field(STRING_LIST)},
    "session.upserted": {"session_id": _REQUIRED, "course_id": _REQUIRED, "name": _REQUIRED,
                         "start_date": _field(DATE), "end_date": _field(DATE),
                         "status": _field(allowed=("not_started", "ongoing", "ended", "archived")),
                         "certificate_id": _field(), "auto_reenrollment": _field(BOOL), "created_by": _field(),
                         "mentors": _field(STRING_LIST)},
    "session.deleted": {"session_id": _REQUIRED},
    "certificate.upserted": {"certificate_id": _REQUIRED, "title": _REQUIRED, "certificate_type": _field(),
                             "owner_group_id": _field(), "validity_months": _field(INT, minimum=1, maximum=1200)},
    "enrollment.created": {"enrollment_id": _REQUIRED, "user_id": _REQUIRED, "session_id": _REQUIRED,
                           "enrolled_at": _field(TIMESTAMP, True), "auto_reenrolled": _field(BOOL)},
    "enrollment.progressed": {"enrollment_id": _REQUIRED,
                              "status": _field(required=True, allowed=("not_started", "in_progress", "completed", "failed")),
                              "progress_percent": _field(NUMBER, minimum=0, maximum=100),
                              "completed_at": _field(TIMESTAMP)},
    "enrollment.deleted": {"enrollment_id": _REQUIRED},
    "certificate.issued": {"award_id": _REQUIRED, "user_id": _REQUIRED, "certificate_id": _REQUIRED,
                           "issued_at": _field(TIMESTAMP, True), "enrollment_id": _field(), "course_id": _field()},
    "certificate.revoked": {"award_id": _REQUIRED},
}
# entity -> (its event types, the event type that ends it or None, [(column, kind)] the reports read)
E2E_ENTITIES = {
    "user": (("user.upserted", "user.deleted"), "user.deleted", [("user_id", STRING), ("name", STRING), ("email", STRING)]),
    "group": (("group.upserted",), None, [("group_id", STRING), ("name", STRING)]),
    "course": (("course.upserted",), None, [("course_id", STRING), ("name", STRING)]),
    "certificate": (("certificate.upserted",), None, [
        ("certificate_id", STRING), ("title", STRING), ("certificate_type", STRING), ("owner_group_id", STRING),
        ("validity_months", INT)]),
    "session": (("session.upserted", "session.deleted"), "session.deleted", [
        ("session_id", STRING), ("course_id", STRING), ("name", STRING), ("start_date", DATE), ("end_date", DATE),
        ("status", STRING), ("certificate_id", STRING)]),
    "enrollment": (("enrollment.created", "enrollment.deleted"), "enrollment.deleted", [
        ("enrollment_id", STRING), ("user_id", STRING), ("session_id", STRING), ("enrolled_at", TIMESTAMP),
        ("auto_reenrolled", BOOL)]),
    "enrollment_progress": (("enrollment.progressed",), None, [("enrollment_id", STRING), ("status", STRING)]),
    "award": (("certificate.issued", "certificate.revoked"), "certificate.revoked", [
        ("award_id", STRING), ("user_id", STRING), ("certificate_id", STRING), ("issued_at", TIMESTAMP),
        ("enrollment_id", STRING), ("course_id", STRING)]),
}

_JSON_TYPES = {STRING: ("VARCHAR",), BOOL: ("BOOLEAN",), INT: ("BIGINT", "UBIGINT"),
               NUMBER: ("BIGINT", "UBIGINT", "DOUBLE"), TIMESTAMP: ("VARCHAR",), DATE: ("VARCHAR",),
               STRING_LIST: ("ARRAY",), STRING_MAP: ("OBJECT",)}
_IN_RANGE = "BETWEEN TIMESTAMPTZ '1970-01-01' AND TIMESTAMPTZ '2100-01-01'"
_E2E_FIELDS = sorted({name for fields in E2E_EVENT_TYPES.values() for name in fields})


def _field_valid(name: str, field: dict) -> str:
    """True when the payload field (``p.name``, one JSON value, NULL when absent
    or JSON null) is as the contract wants it."""
    v = f"p.{name}"
    text = f"json_extract_string({v}, '$')"
    checks = [f"json_type({v}) IN ({', '.join(_quote(t) for t in _JSON_TYPES[field['kind']])})"]
    if field["kind"] in (TIMESTAMP, DATE):
        checks.append(f"coalesce(try_cast({text} AS TIMESTAMPTZ) {_IN_RANGE}, false)")
    if field["kind"] == STRING_LIST:
        checks.append(f"len(list_filter(json_type({v}, '$[*]'), t -> t <> 'VARCHAR')) = 0")
    if field["kind"] == STRING_MAP:
        checks.append(f"len(list_filter(json_type({v}, '$.*'), t -> t <> 'VARCHAR')) = 0")
    if field["allowed"]:
        checks.append(f"{text} IN ({', '.join(_quote(a) for a in field['allowed'])})")
    if field["minimum"] is not None:
        checks.append(f"coalesce(try_cast({text} AS DOUBLE) >= {field['minimum']}, true)")
    if field["maximum"] is not None:
        checks.append(f"coalesce(try_cast({text} AS DOUBLE) <= {field['maximum']}, true)")
    present = f"({' AND '.join(checks)})"
    return f"{v} IS NOT NULL AND {present}" if field["required"] else f"({v} IS NULL OR {present})"


def _e2e_valid_sql() -> str:
    branches = " ".join(
        f"WHEN {_quote(event_type)} THEN {' AND '.join(_field_valid(n, f) for n, f in fields.items())}"
        for event_type, fields in E2E_EVENT_TYPES.items()
    )
    return f"CASE event_type {branches} END"


_E2E_TYPED = {
    STRING: "json_extract_string(p.{0}, '$')",
    INT: "CAST(p.{0} AS INTEGER)",
    BOOL: "coalesce(CAST(p.{0} AS BOOLEAN), false)",
    TIMESTAMP: "CAST(json_extract_string(p.{0}, '$') AS TIMESTAMPTZ)",
    DATE: "CAST(CAST(json_extract_string(p.{0}, '$') AS TIMESTAMPTZ) AS DATE)",
}


def _e2e_history_select(entity: str) -> str:
    types, ended_by, columns = E2E_ENTITIES[entity]
    typed = [f"{_E2E_TYPED[kind].format(name)} AS {name}" for name, kind in columns]
    if ended_by:  # the lifecycle flag right after the key, as report_floor.sql reads it
        flag = "is_" + ended_by.rsplit(".", 1)[1]
        typed.insert(1, f"event_type = {_quote(ended_by)} AS {flag}")
    return (f"SELECT occurred_at, landing_date, file, line_number, {', '.join(typed)} FROM e2e_day_events "
            f"WHERE event_type IN ({', '.join(_quote(t) for t in types)})")


# A line is parsed once into its envelope fields (payload kept as JSON text).
_ENVELOPE = _quote('{"event_id": "VARCHAR", "event_type": "VARCHAR", "occurred_at": "VARCHAR", "payload": "JSON"}')
E2E_MAX_LINE_BYTES = 8 * 1024 * 1024 + 2  # the contract's line limit, and its line ending


def landing_day_files(landing_dir: Path, day: dt.date) -> list[str]:
    """The day's landing files (``landing/events/date=D/*.jsonl[.gz]``), by name."""
    folder = Path(landing_dir) / f"date={day.isoformat()}"
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith((".jsonl", ".jsonl.gz")) and p.is_file()
                  and not p.is_symlink())


def e2e_ingest_day(con: duckdb.DuckDBPyConnection, landing_dir: Path, day: dt.date) -> int:
    """One landing day into the floor's typed history; returns the events it added.

    The files are read as lines (read_csv with no quote and a separator JSON
    text never holds raw), each parsed on its own: read_json's own reader
    would also skip the valid line after a cut one, as one broken object.
    Lines come out in file and line order (DuckDB keeps insertion order), so
    the temp table's rowid orders a day's lines as (file, line)."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {E2E_STATE}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {E2E_STATE}.event_ids (event_id VARCHAR)")
    files = landing_day_files(landing_dir, day)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE e2e_lines AS SELECT line, filename "
        f"FROM read_csv([{', '.join(_quote(f) for f in files)}], columns = {{'line': 'VARCHAR'}}, delim = chr(31), "
        "quote = '', escape = '', header = false, auto_detect = false, filename = true, "
        f"max_line_size = {E2E_MAX_LINE_BYTES})"
    )
    report_types = ", ".join(_quote(t) for t in E2E_EVENT_TYPES)
    structure = _quote("{" + ", ".join(f'"{name}": "JSON"' for name in _E2E_FIELDS) + "}")
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE e2e_day_events AS
        WITH lines AS (
            SELECT rowid AS line_number, filename AS file, try(json_transform(line, {_ENVELOPE})) AS e FROM e2e_lines
        ), envelope AS (
            SELECT line_number, file, e.event_id AS event_id, e.event_type AS event_type,
                try_cast(e.occurred_at AS TIMESTAMPTZ) AS occurred_at, e.payload AS payload
            FROM lines
            -- lines of other known types are valid or not, but no report reads them
            WHERE event_type IN ({report_types}) AND event_id <> '' AND json_type(payload) = 'OBJECT'
        ), parsed AS (
            SELECT * EXCLUDE (payload), json_transform(payload, {structure}) AS p
            FROM envelope WHERE occurred_at {_IN_RANGE}
        )
        SELECT parsed.*, {_date_sql(day)} AS landing_date FROM parsed
        ANTI JOIN {E2E_STATE}.event_ids seen USING (event_id)
        WHERE {_e2e_valid_sql()}
        QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY line_number) = 1
        """
    )
    con.execute(f"INSERT INTO {E2E_STATE}.event_ids SELECT event_id FROM e2e_day_events")
    for entity in E2E_ENTITIES:
        table = f"{E2E_STATE}.{entity}_history"
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS {_e2e_history_select(entity)} LIMIT 0")
        con.execute(f"INSERT INTO {table} {_e2e_history_select(entity)}")
    added = con.execute("SELECT count(*) FROM e2e_day_events").fetchall()[0][0]
    con.execute("DROP TABLE e2e_lines")
    con.execute("DROP TABLE e2e_day_events")
    return added


def e2e_report_day(con: duckdb.DuckDBPyConnection, day: dt.date) -> int:
    """The five report tables of ``day`` from the floor's history, appended to
    ``e2e_reports.*``; returns their rows."""
    run_report_floor(con, day, _E2E_DAY, E2E_STATE)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {E2E_REPORTS}")
    rows = 0
    for table in REPORT_TABLES:
        con.execute(f"CREATE TABLE IF NOT EXISTS {E2E_REPORTS}.{table} AS FROM {_E2E_DAY}.{table} LIMIT 0")
        con.execute(f"DELETE FROM {E2E_REPORTS}.{table} WHERE report_date = ?", [day])
        rows += con.execute(f"INSERT INTO {E2E_REPORTS}.{table} FROM {_E2E_DAY}.{table}").fetchall()[0][0]
    return rows


def end_to_end_floor(con: duckdb.DuckDBPyConnection, landing_dir: Path, days: list[dt.date]) -> dict:
    """Every landing day of ``days`` ingested (in order), then every day's five
    report tables: the floor of a backfill. Returns events and report rows."""
    events = sum(e2e_ingest_day(con, landing_dir, day) for day in sorted(days))
    rows = sum(e2e_report_day(con, day) for day in sorted(days))
    return {"events": events, "report_rows": rows}


def e2e_floor_rows(con: duckdb.DuckDBPyConnection, table: str, day: dt.date) -> list[tuple]:
    return con.execute(f"SELECT * FROM {E2E_REPORTS}.{table} WHERE report_date = ? ORDER BY ALL", [day]).fetchall()


def e2e_pipeline_rows(con: duckdb.DuckDBPyConnection, table: str, day: dt.date, reports: str = "reports") -> list[tuple]:
    """The pipeline's ``<reports>.<table>`` rows of ``day`` with the floor's columns, in its order."""
    columns = [row[0] for row in con.execute(f"DESCRIBE {E2E_REPORTS}.{table}").fetchall()]
    return con.execute(
        f"SELECT {', '.join(columns)} FROM {reports}.{table} WHERE report_date = ? ORDER BY ALL", [day]
    ).fetchall()


def e2e_history_rows(con: duckdb.DuckDBPyConnection, entity: str, state: str = E2E_STATE) -> list[tuple]:
    """An entity's history in ``state`` with the floor's columns but file and
    line number (the floor numbers a day's lines across its files), sorted."""
    columns = [row[0] for row in con.execute(f"DESCRIBE {E2E_STATE}.{entity}_history").fetchall()
               if row[0] not in ("file", "line_number")]
    return con.execute(f"SELECT {', '.join(columns)} FROM {state}.{entity}_history ORDER BY ALL").fetchall()


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
