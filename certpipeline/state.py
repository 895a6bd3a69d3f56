"""Entity state: typed history of every entity, and its state as of a day.

``state.<entity>_history`` holds one typed row per counted (non-duplicate)
event, refreshed for exactly the event ids a landing day touched; its columns
are the payload fields of the entity's event types (``events.ENTITIES``),
typed by their kind. The state of
an entity as of day D is its latest history row (by occurred_at, then landing
date, file and line) among those that occurred on or before D, so late
arrivals land in their place and a past day can be recomputed as it was.

Lifecycle rule where the contract is silent: for entities that can be deleted
(users, sessions, enrollments) or revoked (awards), the latest lifecycle event
wins: an upsert after a delete brings the entity back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import duckdb
import polars as pl

from certpipeline import sql_literals
from certpipeline.events import (
    BOOL,
    DATE,
    ENTITIES,
    INT,
    NUMBER,
    STRING,
    STRING_LIST,
    STRING_MAP,
    TIMESTAMP,
    Entity,
)
from certpipeline.faults import crash_point
from certpipeline.transactions import transaction

# The order of an entity's rows, latest first, and as one value (the latest
# is the greatest).
LATEST_FIRST = "occurred_at DESC, landing_date DESC, file DESC, line_number DESC"
ROW_ORDER = "(occurred_at, landing_date, file, line_number)"

_COMMON = "event_id, occurred_at, landing_date, file, line_number"

# entity -> its history table
HISTORY_TABLES = {entity: f"state.{entity}_history" for entity in ENTITIES}

# How a payload field of each kind is parsed (its type in json_transform's
# structure) and typed in the history (``f`` is the parsed payload).
# Timestamps are parsed by DuckDB's TIMESTAMPTZ cast, the same one validation
# used; absent booleans are false and absent lists empty.
_HISTORY_TYPES = {
    STRING: ("VARCHAR", "f.{name}"),
    INT: ("INTEGER", "f.{name}"),
    NUMBER: ("DOUBLE", "f.{name}"),
    BOOL: ("BOOLEAN", "coalesce(f.{name}, false) AS {name}"),
    TIMESTAMP: ("VARCHAR", "CAST(f.{name} AS TIMESTAMPTZ) AS {name}"),
    DATE: ("VARCHAR", "CAST(CAST(f.{name} AS TIMESTAMPTZ) AS DATE) AS {name}"),
    STRING_LIST: ("VARCHAR[]", "coalesce(f.{name}, []) AS {name}"),
    STRING_MAP: ("MAP(VARCHAR, VARCHAR)", "f.{name}"),
}


def _payload_names(entity: Entity) -> list[str]:
    """The payload columns of an entity's history: its fields in contract
    order, with the lifecycle flag right after the key."""
    names = [field.name for field in entity.fields]
    if entity.ended_flag:
        after_key = max(i for i, field in enumerate(entity.fields) if field.name in entity.key) + 1
        names.insert(after_key, entity.ended_flag)
    return names


def _history_columns(entity: Entity) -> list[str]:
    """How each of ``_payload_names`` is typed from the parsed payload ``f``."""
    typed = {field.name: _HISTORY_TYPES[field.kind][1].format(name=field.name) for field in entity.fields}
    if entity.ended_flag:
        typed[entity.ended_flag] = f"event_type = {sql_literals.text(entity.ended_by)} AS {entity.ended_flag}"
    return [typed[name] for name in _payload_names(entity)]


def _select_history(entity: str, source: str = "raw.events", where: str = "true") -> str:
    """Each payload is parsed once into typed fields (json_transform), not once per column."""
    definition = ENTITIES[entity]
    structure = json.dumps({field.name: _HISTORY_TYPES[field.kind][0] for field in definition.fields})
    types = ", ".join(sql_literals.text(t) for t in definition.event_types)
    return (
        f"SELECT {_COMMON}, {', '.join(_history_columns(definition))} FROM ("
        f"SELECT {_COMMON}, event_type, json_transform(payload, {sql_literals.text(structure)}) AS f FROM {source} "
        f"WHERE event_type IN ({types}) AND NOT is_duplicate AND {where})"
    )


# The report state one run leaves for the next (``carried_state``): which
# saved frames may be used, and the keys whose history rows a refresh deleted
# or inserted since they were saved.
CARRIED_SAVED = "carried.saved"
CARRIED_CHANGED_KEYS = "carried.changed_keys"
CARRIED_DDL = f"""
CREATE SCHEMA IF NOT EXISTS carried;
CREATE TABLE IF NOT EXISTS {CARRIED_SAVED} (token VARCHAR NOT NULL, as_of DATE NOT NULL, fingerprint VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS {CARRIED_CHANGED_KEYS} (frame VARCHAR NOT NULL, key VARCHAR NOT NULL);
"""


def history_ddl() -> list[str]:
    """The statements that create the history tables (when missing), the
    current-state views (``state.users`` and friends, for analysts) and the
    carried state's bookkeeping."""
    return [
        "CREATE SCHEMA IF NOT EXISTS state",
        CARRIED_DDL,
        *(f"CREATE TABLE IF NOT EXISTS {table} AS {_select_history(entity, where='false')}"
          for entity, table in HISTORY_TABLES.items()),
        *(f"CREATE OR REPLACE VIEW state.{name} AS {query}" for name, query in state_queries(NO_CUTOFF).items()),
    ]


def ensure_history_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in history_ddl():
        con.execute(statement)


def refresh_history(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Re-derive history rows for the events queued by ingestion, then clear the queue.

    Returns the number of history rows per entity after the refresh. The
    tables exist already: every work connection is prepared when it opens.
    """
    counts = {}
    with transaction(con):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE affected_event_ids AS "
            "SELECT DISTINCT event_id FROM raw.history_refresh_queue"
        )
        # Only the days queued with the events (their copies') are read, when
        # all are known. Each entity reads them from raw.events, whose storage
        # skips other days and other event types by their statistics: a
        # temporary copy of the affected events, read once per entity, was
        # as fast on a night and twice as slow on a first day at a million
        # learners (24.7 s against 12.5 s; the copy spilled past 1 GB).
        days = [day for (day,) in con.execute("SELECT DISTINCT landing_date FROM raw.history_refresh_queue").fetchall()]
        on_days = "true" if None in days else f"landing_date IN ({', '.join(sql_literals.date(day) for day in days) or 'NULL'})"
        affected = f"{on_days} AND event_id IN (SELECT event_id FROM affected_event_ids)"
        if None not in days and _mostly_queued(con, on_days):
            # Those days' history is derived again whole, which gives the
            # same rows: an event's row sits on its counted copy's day, and
            # any event whose counted copy moved is queued with both days.
            # Cheaper when most of their events are queued (a day ingested
            # for the first time) than probing every table for the ids.
            affected = on_days
        # While a carried state is saved, the keys of the rows deleted and
        # inserted are what it must compute again.
        carried = _CARRIED_BY_HISTORY if con.execute(f"SELECT count(*) FROM {CARRIED_SAVED}").fetchone()[0] else {}
        for entity, table in HISTORY_TABLES.items():
            returning = f" RETURNING {ENTITIES[entity].key[0]}" if entity in carried else ""
            # An event's row is on the day of its counted copy at the last
            # refresh, one of the days queued with it: other days' rows are
            # skipped by their statistics, and a table with no row on those
            # days is not probed at all (each probe hashes every queued id:
            # 0.6-1.1 s a table on a first day at a million learners).
            if con.execute(f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {on_days} LIMIT 1)").fetchone()[0]:
                _record_changed(con, carried.get(entity), con.execute(f"DELETE FROM {table} WHERE {affected}{returning}"))
            _record_changed(con, carried.get(entity),
                            con.execute(f"INSERT INTO {table} " + _select_history(entity, where=affected) + returning))
        # The refreshed rows go to the lake at the next publication, which
        # replaces the lake's rows of these events on the days queued with them.
        con.execute("INSERT INTO publication.pending_events SELECT DISTINCT event_id, landing_date "
                    "FROM raw.history_refresh_queue")
        # The rows this transaction read, and no others (snapshot isolation).
        con.execute("DELETE FROM raw.history_refresh_queue")
        crash_point("history.refreshing")
    for entity, table in HISTORY_TABLES.items():
        counts[entity] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return counts


# -- state as of a day ------------------------------------------------------

# The state queries count events that occurred before the cutoff: a literal
# (``cutoff_literal``), or none at all for the current-state views (every
# counted timestamp is before 2100). A literal, not a bound parameter: a view
# cannot hold one, and with one the relations ``load_state`` reads ran three
# times slower.
NO_CUTOFF = "TIMESTAMPTZ 'infinity'"


def _mostly_queued(con: duckdb.DuckDBPyConnection, on_days: str) -> bool:
    """Whether the queued events are at least half of the raw rows on their days."""
    queued, = con.execute("SELECT count(*) FROM affected_event_ids").fetchone()
    on_those_days, = con.execute(f"SELECT count(*) FROM raw.events WHERE {on_days}").fetchone()
    return 2 * queued >= on_those_days


def _record_changed(con: duckdb.DuckDBPyConnection, frame: str | None, returned: duckdb.DuckDBPyConnection) -> None:
    """Note the keys a history statement ``RETURNING`` its key column gave as
    changed for the carried ``frame`` (nothing when none is carried)."""
    if frame is None:
        return
    changed_keys = returned.arrow()  # noqa: F841 (read by name below)
    con.execute(f"INSERT INTO {CARRIED_CHANGED_KEYS} SELECT ?, * FROM changed_keys", [frame])


def cutoff_after(day: dt.date) -> dt.datetime:
    """Events that occurred on or before ``day`` (UTC) are those before the next midnight."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)


def cutoff_literal(day: dt.date) -> str:
    """``cutoff_after(day)`` as the state queries take it."""
    return sql_literals.timestamp(cutoff_after(day))


def _latest(history: str, entity: str, cutoff: str) -> str:
    # A window, not arg_max as in _upserted_with_lifecycle: with arg_max of
    # whole rows the enrollments (with their progress) and the answers ran
    # out of the working database's 1 GB at a million learners; the window spills.
    key = ", ".join(ENTITIES[entity].key)
    return (
        f"SELECT * FROM {history} WHERE occurred_at < {cutoff} "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {LATEST_FIRST}) = 1"
    )


def _upserted_with_lifecycle(history: str, entity: str, cutoff: str) -> str:
    """Attributes from the latest upsert; the lifecycle flag from the latest lifecycle event."""
    # One hash aggregate with two arg_max over the row order: about twice as
    # fast as two windows over the sorted history joined back together.
    key, flag = ", ".join(ENTITIES[entity].key), ENTITIES[entity].ended_flag
    return f"""
        WITH latest AS (
            SELECT {key},
                arg_max(struct_pack(*COLUMNS(* EXCLUDE ({key}, {flag}, {_COMMON}))), {ROW_ORDER})
                    FILTER (WHERE {flag} = false) AS attributes,
                arg_max({flag}, {ROW_ORDER}) AS {flag}
            FROM {history} WHERE occurred_at < {cutoff}
            GROUP BY {key}
        )
        SELECT {key}, unnest(attributes), {flag} FROM latest
    """


def state_queries(cutoff: str, histories: dict[str, str] = HISTORY_TABLES) -> dict[str, str]:
    """SQL for each entity's state, counting events that occurred before
    ``cutoff`` (``cutoff_literal(day)`` or ``NO_CUTOFF``), read from
    ``histories`` (entity -> relation)."""
    h = histories
    history_columns = f"EXCLUDE ({_COMMON})"
    return {
        "users": f"""
            SELECT * EXCLUDE (is_deleted),
                CASE WHEN is_deleted THEN 'deleted' ELSE 'active' END AS status
            FROM ({_upserted_with_lifecycle(h['user'], 'user', cutoff)})
        """,
        "groups": f"SELECT * {history_columns} FROM ({_latest(h['group'], 'group', cutoff)})",
        "group_members": f"""
            SELECT group_id, user_id, role FROM ({_latest(h['group_member'], 'group_member', cutoff)})
            WHERE NOT is_removed
        """,
        "courses": f"SELECT * {history_columns} FROM ({_latest(h['course'], 'course', cutoff)})",
        "sessions": _upserted_with_lifecycle(h["session"], "session", cutoff),
        "certificates": f"SELECT * {history_columns} FROM ({_latest(h['certificate'], 'certificate', cutoff)})",
        "enrollments": f"""
            WITH enrollment AS ({_upserted_with_lifecycle(h['enrollment'], 'enrollment', cutoff)}),
            progress AS ({_latest(h['enrollment_progress'], 'enrollment_progress', cutoff)})
            SELECT enrollment.*, progress.* EXCLUDE ({_COMMON}, enrollment_id)
            FROM enrollment LEFT JOIN progress USING (enrollment_id)
        """,
        "awards": _upserted_with_lifecycle(h["award"], "award", cutoff),
        "group_closure": f"""
            WITH RECURSIVE groups AS ({_latest(h['group'], 'group', cutoff)}),
            closure(ancestor_id, group_id, depth) AS (
                SELECT group_id, group_id, 0 FROM groups
                UNION
                SELECT groups.parent_group_id, closure.group_id, closure.depth + 1
                FROM closure JOIN groups ON groups.group_id = closure.ancestor_id
                WHERE groups.parent_group_id IS NOT NULL AND closure.depth < 100
            )
            SELECT ancestor_id, group_id, min(depth) AS depth FROM closure GROUP BY ALL
        """,
        "answers": f"SELECT * {history_columns} FROM ({_latest(h['answer'], 'answer', cutoff)})",
    }


# A batch report reads only its batches' slice of the state: whole entities,
# picked by key, so each one's latest version is still found among all its
# versions. ``_scope_batches`` fills the scope tables from bound ids; these
# views pick each history's slice from them (and no group memberships).
_BATCH_SLICES = {
    "user": "user_id IN (SELECT user_id FROM scope_users)",
    "enrollment": "enrollment_id IN (SELECT enrollment_id FROM scope_enrollments)",
    "enrollment_progress": "enrollment_id IN (SELECT enrollment_id FROM scope_enrollments)",
    "award": "award_id IN (SELECT award_id FROM state.award_history "
    "WHERE enrollment_id IN (SELECT enrollment_id FROM scope_enrollments))",
    "answer": "session_id IN (SELECT session_id FROM scope_sessions)",
    "group_member": "false",
}


def _scope_batches(con: duckdb.DuckDBPyConnection, batches: list[str], also_users: list[str]) -> dict[str, str]:
    """Temporary views of the histories' slices a report on ``batches`` reads
    (their enrollments, awards and answers, their enrolled users and
    ``also_users``); returns the relations to read the state from."""
    con.execute("CREATE OR REPLACE TEMP TABLE scope_sessions AS SELECT unnest($batches::VARCHAR[]) AS session_id",
                {"batches": list(batches)})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scope_enrollments AS SELECT DISTINCT enrollment_id "
        "FROM state.enrollment_history WHERE session_id IN (SELECT session_id FROM scope_sessions)"
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE scope_users AS "
        "SELECT DISTINCT user_id FROM state.enrollment_history "
        "WHERE enrollment_id IN (SELECT enrollment_id FROM scope_enrollments) "
        "UNION SELECT unnest($users::VARCHAR[])",
        {"users": list(also_users)},
    )
    histories = dict(HISTORY_TABLES)
    for entity, rows in _BATCH_SLICES.items():
        histories[entity] = f"batch_{entity}_history"
        con.execute(f"CREATE OR REPLACE TEMP VIEW batch_{entity}_history AS "
                    f"SELECT * FROM state.{entity}_history WHERE {rows}")
    return histories


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
    # Frames several reports derive alike (counted awards, certificate
    # enrollments), kept with the state and gone with it: at a million
    # learners computing them once per report cost 0.8 s of a night's 3.2 s.
    _derived: dict[Callable, pl.DataFrame] = field(default_factory=dict, init=False, repr=False, compare=False)

    def derived(self, compute: Callable[[State], pl.DataFrame]) -> pl.DataFrame:
        """``compute(self)``, computed once per state."""
        if compute not in self._derived:
            self._derived[compute] = compute(self)
        return self._derived[compute]

    def drop_derived(self) -> None:
        """Free what ``derived`` computed: a range run keeps a day's state
        to carry it to the next day, not what its reports derived from it."""
        self._derived.clear()


# Every frame of a State, in its order.
STATE_FRAMES = tuple(f.name for f in fields(State) if f.init and f.name != "as_of")

# What a permission check needs: no enrollments, awards or answers.
CATALOG_ENTITIES = ("users", "groups", "group_members", "group_closure", "courses", "sessions", "certificates")


def _only(histories: dict[str, str], attributes: dict[str, tuple[str, ...]] | None) -> dict[str, str]:
    """``histories`` with each entity in ``attributes`` narrowed to its event
    columns, key, lifecycle flag and those attributes, in history order: the
    state is then aggregated over what is read, not every payload column."""
    narrowed = dict(histories)
    for entity, wanted in (attributes or {}).items():
        definition = ENTITIES[entity]
        kept = {*definition.key, definition.ended_flag, *wanted}
        columns = [name for name in _payload_names(definition) if name in kept]
        narrowed[entity] = f"(SELECT {_COMMON}, {', '.join(columns)} FROM {histories[entity]})"
    return narrowed


def load_state(
    con: duckdb.DuckDBPyConnection,
    day: dt.date,
    entities: tuple[str, ...] | None = None,
    batches: list[str] | None = None,
    also_users: list[str] = (),
    attributes: dict[str, tuple[str, ...]] | None = None,
) -> State:
    """Every entity as of ``day``; entities not in ``entities`` come back empty.

    With ``batches``, only what reports on those batches read: their
    enrollments, awards and answers, their enrolled users and ``also_users``
    (the requesters), and no group memberships; the catalog stays whole.
    With ``attributes`` (entity -> payload columns), those entities' frames
    hold only their key, lifecycle flag and those columns."""
    histories = _scope_batches(con, batches, list(also_users)) if batches is not None else HISTORY_TABLES
    histories = _only(histories, attributes)
    frames = {}
    # A relation, not an executed statement: DuckDB hands a relation's result
    # to Arrow on every thread, an executed statement's on one.
    for name, query in state_queries(cutoff_literal(day), histories).items():
        if entities is not None and name not in entities:
            query = f"SELECT * FROM ({query}) WHERE false"
        frames[name] = con.sql(query).pl()
    return State(as_of=day, **frames)


# The large frames a later day's state can be carried forward for: each has
# one row per key, computed from that key's history rows alone (frame -> the
# histories it reads, which share their entity key).
_CARRIED = {
    "users": ("user",),
    "enrollments": ("enrollment", "enrollment_progress"),
    "awards": ("award",),
}
CARRIED_FRAMES = tuple(_CARRIED)
_CARRIED_BY_HISTORY = {entity: frame for frame, entities in _CARRIED.items() for entity in entities}


def carried_fingerprint(attributes: dict[str, tuple[str, ...]] | None) -> str:
    """What carried frames loaded with ``attributes`` are computed by: their
    queries and the history's schema. A saved state computed otherwise is
    not carried forward."""
    queries = state_queries(NO_CUTOFF, _only(HISTORY_TABLES, attributes))
    text = "\n;\n".join([*history_ddl(), *(queries[name] for name in CARRIED_FRAMES)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def advance_state(
    con: duckdb.DuckDBPyConnection,
    previous: State,
    day: dt.date,
    entities: tuple[str, ...] | None = None,
    attributes: dict[str, tuple[str, ...]] | None = None,
    changed_since: str | None = None,
) -> State:
    """What ``load_state(con, day, entities, attributes=attributes)`` returns,
    from ``previous``: that state as of an earlier day, loaded with the same
    entities and attributes (only its large frames, ``CARRIED_FRAMES``, are
    read). Either from the same history rows (the days of one range run,
    whose history is complete before its first report), or, with
    ``changed_since`` (a relation of frame, key), from history rows that
    differ from today's only in the keys it names (a saved state,
    ``carried_state``).

    With the history unchanged, a key's state can only differ between the two
    days if one of its events occurred between the two cutoffs: only those
    keys are computed again (at a million learners 99,540 of 2,281,935
    enrollments a day). The small entities are loaded whole."""
    if day <= previous.as_of:
        raise ValueError(f"advance_state: {day} is not after the previous state's day {previous.as_of}")
    carried = [name for name in _CARRIED if entities is None or name in entities]
    fresh = load_state(con, day, entities=tuple(e for e in entities or STATE_FRAMES if e not in carried),
                       attributes=attributes)
    histories = _only(HISTORY_TABLES, attributes)
    since, until = cutoff_literal(previous.as_of), cutoff_literal(day)
    frames = {name: getattr(fresh, name) for name in STATE_FRAMES}
    for name in carried:
        history_entities = _CARRIED[name]
        (key,) = ENTITIES[history_entities[0]].key
        changed = con.sql(" UNION ".join([
            *(f"SELECT {key} FROM {HISTORY_TABLES[entity]} WHERE occurred_at >= {since} AND occurred_at < {until}"
              for entity in history_entities),
            *([f"SELECT key AS {key} FROM {changed_since} WHERE frame = {sql_literals.text(name)}"]
              if changed_since else []),
        ])).pl()
        con.register("changed_keys", changed)
        try:
            narrowed = {**histories, **{
                entity: f"(SELECT * FROM {histories[entity]} WHERE {key} IN (SELECT {key} FROM changed_keys))"
                for entity in history_entities}}
            recomputed = con.sql(state_queries(until, narrowed)[name]).pl()
        finally:
            con.unregister("changed_keys")
        kept = getattr(previous, name).filter(~pl.col(key).is_in(changed[key].implode()))
        frames[name] = pl.concat([kept, recomputed])
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
    of a day, so this reads them directly (the windowed views cost seconds).
    The references to one entity are probed together, so that its history is
    hashed once (users are referred to from four tables)."""
    sources_by_target: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for source, column, target, key in REFERENCES:
        sources_by_target.setdefault((target, key), []).append((source, column))
    parts = []
    for (target, key), sources in sources_by_target.items():
        references = " UNION ALL ".join(
            f"SELECT '{source}s.{column}' AS reference, {column} AS referred FROM state.{source}_history "
            f"WHERE {column} IS NOT NULL"
            for source, column in sources
        )
        parts.append(
            f"""SELECT reference, '{target}s' AS refers_to, count(*) AS unresolved,
                    list(DISTINCT referred ORDER BY referred)[1:5] AS examples
                FROM ({references}) s ANTI JOIN state.{target}_history t ON s.referred = t.{key}
                GROUP BY reference"""
        )
    return con.sql(" UNION ALL ".join(parts) + " ORDER BY reference").pl()
