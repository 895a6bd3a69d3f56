"""The entity history tables, derived from the event contract (certpipeline.events.ENTITIES).

Their columns are pinned: analysts query them, and a work database created by an
earlier version is refreshed with positional INSERTs, so a column that moves or
changes type is a migration, not a refactoring.
"""

from __future__ import annotations

import duckdb

from certpipeline import pipeline
from certpipeline.events import ENTITIES, EVENT_TYPES

ENVELOPE = "event_id VARCHAR, occurred_at TIMESTAMPTZ, landing_date DATE, file VARCHAR, line_number BIGINT, "
HISTORY_COLUMNS = {
    "user": "user_id VARCHAR, is_deleted BOOLEAN, name VARCHAR, email VARCHAR, registered_at TIMESTAMPTZ, "
            "custom_fields MAP(VARCHAR, VARCHAR), platform_role VARCHAR",
    "group": "group_id VARCHAR, name VARCHAR, parent_group_id VARCHAR",
    "group_member": "group_id VARCHAR, user_id VARCHAR, role VARCHAR, is_removed BOOLEAN",
    "course": "course_id VARCHAR, name VARCHAR, created_by VARCHAR, authors VARCHAR[], instructors VARCHAR[]",
    "session": "session_id VARCHAR, is_deleted BOOLEAN, course_id VARCHAR, name VARCHAR, start_date DATE, "
               "end_date DATE, status VARCHAR, certificate_id VARCHAR, auto_reenrollment BOOLEAN, "
               "created_by VARCHAR, mentors VARCHAR[]",
    "certificate": "certificate_id VARCHAR, title VARCHAR, certificate_type VARCHAR, owner_group_id VARCHAR, "
                   "validity_months INTEGER",
    "enrollment": "enrollment_id VARCHAR, is_deleted BOOLEAN, user_id VARCHAR, session_id VARCHAR, "
                  "enrolled_at TIMESTAMPTZ, auto_reenrolled BOOLEAN",
    "enrollment_progress": "enrollment_id VARCHAR, status VARCHAR, progress_percent DOUBLE, completed_at TIMESTAMPTZ",
    "award": "award_id VARCHAR, is_revoked BOOLEAN, user_id VARCHAR, certificate_id VARCHAR, issued_at TIMESTAMPTZ, "
             "enrollment_id VARCHAR, course_id VARCHAR",
    "answer": "attempt_id VARCHAR, user_id VARCHAR, session_id VARCHAR, question_set_id VARCHAR, question_id VARCHAR, "
              "question_text VARCHAR, response VARCHAR, score DOUBLE, max_score DOUBLE, answered_at TIMESTAMPTZ",
}


def _history_tables() -> dict[str, list[tuple[str, str]]]:
    """entity -> [(column, type)] of the history tables the pipeline creates."""
    con = duckdb.connect()
    pipeline.prepare_work_database(con)
    names = con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'state' AND table_name LIKE '%_history'"
    ).fetchall()
    return {
        name.removesuffix("_history"): [
            (column, "TIMESTAMPTZ" if kind == "TIMESTAMP WITH TIME ZONE" else kind)
            for column, kind, *_ in con.execute(f"DESCRIBE state.{name}").fetchall()
        ]
        for (name,) in names
    }


def test_history_tables_have_exactly_these_columns():
    tables = {entity: ", ".join(f"{c} {t}" for c, t in columns) for entity, columns in _history_tables().items()}
    assert tables == {entity: ENVELOPE + columns for entity, columns in HISTORY_COLUMNS.items()}


def test_every_event_type_belongs_to_one_entity_and_every_field_to_its_history():
    owners = [t for entity in ENTITIES.values() for t in entity.event_types]
    assert sorted(owners) == sorted(EVENT_TYPES)
    tables = _history_tables()
    for entity in ENTITIES.values():
        columns = {column for column, _ in tables[entity.name]}
        fields = {field.name for event_type in entity.event_types for field in EVENT_TYPES[event_type]}
        assert fields <= columns, entity.name
