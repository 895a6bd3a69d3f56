"""Entity state: typed history of every entity, and its state as of a day.

``state.<entity>_history`` holds one typed row per counted (non-duplicate)
event, refreshed for exactly the event ids a landing day touched. The state of
an entity as of day D is its latest history row (by occurred_at, then landing
date, file and line) among those that occurred on or before D, so late
arrivals land in their place and a past day can be recomputed as it was.

Lifecycle rule where the contract is silent: for entities that can be deleted
(users, sessions, enrollments) or revoked (awards), the latest lifecycle event
wins: an upsert after a delete brings the entity back.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb
import polars as pl

from certpipeline.faults import crash_point

LATEST_FIRST = "occurred_at DESC, landing_date DESC, file DESC, line_number DESC"

_COMMON = "event_id, occurred_at, landing_date, file, line_number"

# entity -> (event types, payload fields parsed once with their types, typed
# columns over those fields as ``f.<name>``). Timestamps are parsed by DuckDB's
# TIMESTAMPTZ cast, the same one validation used.
HISTORY_TABLES: dict[str, tuple[tuple[str, ...], dict[str, str], str]] = {
    "user": (
        ("user.upserted", "user.deleted"),
        {"user_id": "VARCHAR", "name": "VARCHAR", "email": "VARCHAR", "registered_at": "VARCHAR",
         "custom_fields": "MAP(VARCHAR, VARCHAR)", "platform_role": "VARCHAR"},
        """f.user_id,
           event_type = 'user.deleted' AS is_deleted,
           f.name,
           f.email,
           CAST(f.registered_at AS TIMESTAMPTZ) AS registered_at,
           f.custom_fields,
           f.platform_role""",
    ),
    "group": (
        ("group.upserted",),
        {"group_id": "VARCHAR", "name": "VARCHAR", "parent_group_id": "VARCHAR"},
        "f.group_id, f.name, f.parent_group_id",
    ),
    "group_member": (
        ("group_member.added", "group_member.removed"),
        {"group_id": "VARCHAR", "user_id": "VARCHAR", "role": "VARCHAR"},
        "f.group_id, f.user_id, f.role, event_type = 'group_member.removed' AS is_removed",
    ),
    "course": (
        ("course.upserted",),
        {"course_id": "VARCHAR", "name": "VARCHAR", "created_by": "VARCHAR", "authors": "VARCHAR[]",
         "instructors": "VARCHAR[]"},
        """f.course_id, f.name, f.created_by,
           coalesce(f.authors, []) AS authors,
           coalesce(f.instructors, []) AS instructors""",
    ),
    "session": (
        ("session.upserted", "session.deleted"),
        {"session_id": "VARCHAR", "course_id": "VARCHAR", "name": "VARCHAR", "start_date": "VARCHAR",
         "end_date": "VARCHAR", "status": "VARCHAR", "certificate_id": "VARCHAR", "auto_reenrollment": "BOOLEAN",
         "created_by": "VARCHAR", "mentors": "VARCHAR[]"},
        """f.session_id,
           event_type = 'session.deleted' AS is_deleted,
           f.course_id,
           f.name,
           CAST(CAST(f.start_date AS TIMESTAMPTZ) AS DATE) AS start_date,
           CAST(CAST(f.end_date AS TIMESTAMPTZ) AS DATE) AS end_date,
           f.status,
           f.certificate_id,
           coalesce(f.auto_reenrollment, false) AS auto_reenrollment,
           f.created_by,
           coalesce(f.mentors, []) AS mentors""",
    ),
    "certificate": (
        ("certificate.upserted",),
        {"certificate_id": "VARCHAR", "title": "VARCHAR", "certificate_type": "VARCHAR", "owner_group_id": "VARCHAR",
         "validity_months": "INTEGER"},
        "f.certificate_id, f.title, f.certificate_type, f.owner_group_id, f.validity_months",
    ),
    "enrollment": (
        ("enrollment.created", "enrollment.deleted"),
        {"enrollment_id": "VARCHAR", "user_id": "VARCHAR", "session_id": "VARCHAR", "enrolled_at": "VARCHAR",
         "auto_reenrolled": "BOOLEAN"},
        """f.enrollment_id,
           event_type = 'enrollment.deleted' AS is_deleted,
           f.user_id,
           f.session_id,
           CAST(f.enrolled_at AS TIMESTAMPTZ) AS enrolled_at,
           coalesce(f.auto_reenrolled, false) AS auto_reenrolled""",
    ),
    "enrollment_progress": (
        ("enrollment.progressed",),
        {"enrollment_id": "VARCHAR", "status": "VARCHAR", "progress_percent": "DOUBLE", "completed_at": "VARCHAR"},
        """f.enrollment_id, f.status, f.progress_percent,
           CAST(f.completed_at AS TIMESTAMPTZ) AS completed_at""",
    ),
    "award": (
        ("certificate.issued", "certificate.revoked"),
        {"award_id": "VARCHAR", "user_id": "VARCHAR", "certificate_id": "VARCHAR", "issued_at": "VARCHAR",
         "enrollment_id": "VARCHAR", "course_id": "VARCHAR"},
        """f.award_id,
           event_type = 'certificate.revoked' AS is_revoked,
           f.user_id,
           f.certificate_id,
           CAST(f.issued_at AS TIMESTAMPTZ) AS issued_at,
           f.enrollment_id,
           f.course_id""",
    ),
    "answer": (
        ("question.answered",),
        {"attempt_id": "VARCHAR", "user_id": "VARCHAR", "session_id": "VARCHAR", "question_set_id": "VARCHAR",
         "question_id": "VARCHAR", "question_text": "VARCHAR", "response": "VARCHAR", "score": "DOUBLE",
         "max_score": "DOUBLE", "answered_at": "VARCHAR"},
        """f.attempt_id, f.user_id, f.session_id, f.question_set_id, f.question_id, f.question_text, f.response,
           f.score, f.max_score,
           CAST(f.answered_at AS TIMESTAMPTZ) AS answered_at""",
    ),
}


def _select_history(entity: str, source: str = "raw.events", where: str = "true") -> str:
    """Each payload is parsed once into typed fields (json_transform), not once per column."""
    event_types, fields, columns = HISTORY_TABLES[entity]
    types = ", ".join(f"'{t}'" for t in event_types)
    structure = json.dumps(fields)
    return (
        f"SELECT {_COMMON}, {columns} FROM ("
        f"SELECT {_COMMON}, event_type, json_transform(payload, '{structure}') AS f FROM {source} "
        f"WHERE event_type IN ({types}) AND NOT is_duplicate AND {where})"
    )


def ensure_history_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS state")
    for entity in HISTORY_TABLES:
        con.execute(f"CREATE TABLE IF NOT EXISTS state.{entity}_history AS {_select_history(entity, where='false')}")
    _create_current_views(con)


def refresh_history(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Re-derive history rows for the events queued by ingestion, then clear the queue.

    Returns the number of history rows per entity after the refresh. The
    tables exist already: every work connection is prepared when it opens.
    """
    counts = {}
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE affected_event_ids AS "
            "SELECT DISTINCT event_id FROM raw.history_refresh_queue"
        )
        # One scan of raw.events for the affected events, not one per entity.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE affected_events AS SELECT * FROM raw.events "
            "WHERE event_id IN (SELECT event_id FROM affected_event_ids) AND NOT is_duplicate"
        )
        for entity in HISTORY_TABLES:
            table = f"state.{entity}_history"
            con.execute(f"DELETE FROM {table} WHERE event_id IN (SELECT event_id FROM affected_event_ids)")
            con.execute(f"INSERT INTO {table} " + _select_history(entity, source="affected_events"))
        con.execute("DELETE FROM raw.history_refresh_queue WHERE event_id IN (SELECT event_id FROM affected_event_ids)")
        crash_point("history.refreshing")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for entity in HISTORY_TABLES:
        counts[entity] = con.execute(f"SELECT count(*) FROM state.{entity}_history").fetchall()[0][0]
    return counts


# -- state as of a day ------------------------------------------------------


def _latest(table: str, key: str, where: str = "true") -> str:
    return (
        f"SELECT * FROM {table} WHERE {where} "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {LATEST_FIRST}) = 1"
    )


def _upserted_with_lifecycle(table: str, key: str, flag: str, cutoff: str, only: str = "true") -> str:
    """Attributes from the latest upsert; ``flag`` from the latest lifecycle event."""
    # One hash aggregate with two arg_max over the row order: about twice as
    # fast as two windows over the sorted history joined back together.
    order = "(occurred_at, landing_date, file, line_number)"
    return f"""
        WITH latest AS (
            SELECT {key},
                arg_max(struct_pack(*COLUMNS(* EXCLUDE ({key}, {flag}, event_id, occurred_at, landing_date, file,
                                                         line_number))), {order}) FILTER (WHERE {flag} = false)
                    AS attributes,
                arg_max({flag}, {order}) AS {flag}
            FROM {table} WHERE occurred_at < {cutoff} AND {only}
            GROUP BY {key}
        )
        SELECT {key}, unnest(attributes), {flag} FROM latest
    """


# With a batch scope (temp tables scope_sessions and scope_users, see
# ``load_state``), only the rows a batch report reads: whole entities, picked
# by key, so each one's latest version is still found among all its versions.
_BATCH_SCOPE = {
    "users": "user_id IN (SELECT user_id FROM scope_users)",
    "enrollments": "enrollment_id IN (SELECT enrollment_id FROM scope_enrollments)",
    "awards": "award_id IN (SELECT award_id FROM state.award_history "
    "WHERE enrollment_id IN (SELECT enrollment_id FROM scope_enrollments))",
    "answers": "session_id IN (SELECT session_id FROM scope_sessions)",
    "group_members": "false",
}


def state_queries(cutoff: str, batch_scope: bool = False) -> dict[str, str]:
    """SQL for each entity's state, counting events that occurred before ``cutoff``."""
    history_columns = "EXCLUDE (event_id, occurred_at, landing_date, file, line_number)"
    only = {name: (_BATCH_SCOPE.get(name, "true") if batch_scope else "true") for name in
            ("users", "enrollments", "awards", "answers", "group_members")}
    return {
        "users": f"""
            SELECT * EXCLUDE (is_deleted),
                CASE WHEN is_deleted THEN 'deleted' ELSE 'active' END AS status
            FROM ({_upserted_with_lifecycle('state.user_history', 'user_id', 'is_deleted', cutoff, only['users'])})
        """,
        "groups": f"SELECT * {history_columns} FROM ({_latest('state.group_history', 'group_id', f'occurred_at < {cutoff}')})",
        "group_members": f"""
            SELECT group_id, user_id, role FROM ({_latest('state.group_member_history', 'group_id, user_id, role',
                                                          f"occurred_at < {cutoff} AND {only['group_members']}")})
            WHERE NOT is_removed
        """,
        "courses": f"SELECT * {history_columns} FROM ({_latest('state.course_history', 'course_id', f'occurred_at < {cutoff}')})",
        "sessions": _upserted_with_lifecycle("state.session_history", "session_id", "is_deleted", cutoff),
        "certificates": f"SELECT * {history_columns} FROM ({_latest('state.certificate_history', 'certificate_id', f'occurred_at < {cutoff}')})",
        "enrollments": f"""
            WITH enrollment AS ({_upserted_with_lifecycle('state.enrollment_history', 'enrollment_id', 'is_deleted',
                                                          cutoff, only['enrollments'])}),
            progress AS ({_latest('state.enrollment_progress_history', 'enrollment_id',
                                  f"occurred_at < {cutoff} AND {only['enrollments']}")})
            SELECT enrollment.*, progress.status, progress.progress_percent, progress.completed_at
            FROM enrollment LEFT JOIN progress USING (enrollment_id)
        """,
        "awards": _upserted_with_lifecycle("state.award_history", "award_id", "is_revoked", cutoff, only["awards"]),
        "group_closure": f"""
            WITH RECURSIVE groups AS ({_latest('state.group_history', 'group_id', f'occurred_at < {cutoff}')}),
            closure(ancestor_id, group_id, depth) AS (
                SELECT group_id, group_id, 0 FROM groups
                UNION
                SELECT groups.parent_group_id, closure.group_id, closure.depth + 1
                FROM closure JOIN groups ON groups.group_id = closure.ancestor_id
                WHERE groups.parent_group_id IS NOT NULL AND closure.depth < 100
            )
            SELECT ancestor_id, group_id, min(depth) AS depth FROM closure GROUP BY ALL
        """,
        "answers": f"""SELECT * {history_columns} FROM ({_latest('state.answer_history', 'attempt_id, question_id',
                                                                 f"occurred_at < {cutoff} AND {only['answers']}")})""",
    }


def _create_current_views(con: duckdb.DuckDBPyConnection) -> None:
    """``state.users`` and friends: the current state, for analysts."""
    for name, query in state_queries("TIMESTAMPTZ 'infinity'").items():
        con.execute(f"CREATE OR REPLACE VIEW state.{name} AS {query}")


def day_cutoff(day: dt.date) -> str:
    """Events that occurred on or before ``day`` (UTC) are those before the next midnight."""
    return f"TIMESTAMPTZ '{(day + dt.timedelta(days=1)).isoformat()} 00:00:00+00'"


@dataclass(frozen=True)
class State:
    """Every entity as of one report day, as Polars frames."""

    as_of: dt.date
    users: pl.DataFrame
    groups: pl.DataFrame
    group_members: pl.DataFrame
    group_closure: pl.DataFrame  # ancestor_id, group_id, depth (each group is its own ancestor at 0)
    courses: pl.DataFrame
    sessions: pl.DataFrame
    certificates: pl.DataFrame
    enrollments: pl.DataFrame
    awards: pl.DataFrame
    answers: pl.DataFrame


# What a permission check needs: no enrollments, awards or answers.
CATALOG_ENTITIES = ("users", "groups", "group_members", "group_closure", "courses", "sessions", "certificates")


def load_state(
    con: duckdb.DuckDBPyConnection,
    day: dt.date,
    entities: tuple[str, ...] | None = None,
    batches: list[str] | None = None,
    also_users: list[str] = (),
) -> State:
    """Every entity as of ``day``; entities not in ``entities`` come back empty.

    With ``batches``, only what reports on those batches read: their
    enrollments, awards and answers, their enrolled users and ``also_users``
    (the requesters), and no group memberships; the catalog stays whole."""
    if batches is not None:
        con.execute("CREATE OR REPLACE TEMP TABLE scope_sessions AS SELECT unnest(?::VARCHAR[]) AS session_id",
                    [list(batches)])
        con.execute(
            "CREATE OR REPLACE TEMP TABLE scope_enrollments AS SELECT DISTINCT enrollment_id "
            "FROM state.enrollment_history WHERE session_id IN (SELECT session_id FROM scope_sessions)"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE scope_users AS "
            "SELECT DISTINCT user_id FROM state.enrollment_history "
            "WHERE enrollment_id IN (SELECT enrollment_id FROM scope_enrollments) "
            "UNION SELECT unnest(?::VARCHAR[])",
            [list(also_users)],
        )
    frames = {}
    for name, query in state_queries(day_cutoff(day), batch_scope=batches is not None).items():
        if entities is not None and name not in entities:
            query = f"SELECT * FROM ({query}) WHERE false"
        frames[name] = con.sql(query).pl()
    return State(as_of=day, **frames)


# (what refers, reference column, what it must name, its key column), by entity
REFERENCES = (
    ("enrollment", "user_id", "user", "user_id"),
    ("enrollment", "session_id", "session", "session_id"),
    ("award", "user_id", "user", "user_id"),
    ("award", "certificate_id", "certificate", "certificate_id"),
    ("award", "enrollment_id", "enrollment", "enrollment_id"),
    ("award", "course_id", "course", "course_id"),
    ("session", "course_id", "course", "course_id"),
    ("session", "certificate_id", "certificate", "certificate_id"),
    ("group_member", "group_id", "group", "group_id"),
    ("group_member", "user_id", "user", "user_id"),
    ("group", "parent_group_id", "group", "group_id"),
    ("certificate", "owner_group_id", "group", "group_id"),
    ("answer", "session_id", "session", "session_id"),
    ("answer", "user_id", "user", "user_id"),
)


def referential_problems(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Events referring to entities the warehouse has never seen: one row per
    kind of reference, with how many referring events and a few examples.
    "Never seen" needs only the keys in the history tables, not the state as
    of a day, so this reads them directly (the windowed views cost seconds)."""
    parts = [
        f"""SELECT '{source}s.{column}' AS reference, '{target}s' AS refers_to,
                count(*) AS unresolved, list(DISTINCT s.{column} ORDER BY s.{column})[1:5] AS examples
            FROM state.{source}_history s
            ANTI JOIN (SELECT DISTINCT {key} FROM state.{target}_history) t ON s.{column} = t.{key}
            WHERE s.{column} IS NOT NULL HAVING count(*) > 0"""
        for source, column, target, key in REFERENCES
    ]
    return con.sql(" UNION ALL ".join(parts) + " ORDER BY reference").pl()
