"""Publication: what changed in the working database goes into the lake.

The working database (``pipeline/work.duckdb``) notes what each step changed
in ``publication.pending_days`` (a landing day re-ingested by
``ingestion.ingest_day``, a report day whose snapshot files
``tables.write_snapshots`` wrote)
and ``publication.pending_events`` (events whose history rows
``state.refresh_history`` refreshed), in the step's own transaction. Publishing applies exactly those
changes to the lake in one lake transaction (one new snapshot), then clears
the notes: a night costs its own rows, whatever the warehouse holds. A crash
after the lake commit only means the same changes are applied again, which
changes nothing.

Report tables are stored by change: ``report_versions.<table>`` holds each
distinct row once per run of report dates it appears on, as ``valid_from`` /
``valid_to`` (exclusive; NULL while it is still current), and
``report_versions.report_dates`` the dates computed. The view
``reports.<table>`` expands them, so ``WHERE report_date = D`` gives exactly
D's snapshot. A row whose status moves with time (Valid -> Expiring soon ->
Expired) is a different row on the day it moves, so it gets a new version
then: the snapshot of every day is computed whole and only the difference is
stored.

Several writers (processes with their own working database, one shared
catalog) serialize their lake transactions through ``publication.turn``: each
publication updates its one row, so two concurrent ones conflict and the
later retries against the new snapshot (``lake.with_retries``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from certpipeline import sql_literals, state
from certpipeline.faults import crash_point
from certpipeline.lake import ALIAS, LakeSettings, attach, with_retries
from certpipeline.reports import catalog, snapshots
from certpipeline.reports.tables import REPORT_BUILDERS
from certpipeline.transactions import transaction

LANDING, REPORTS = "landing", "reports"

PENDING_DDL = """
CREATE SCHEMA IF NOT EXISTS publication;
CREATE TABLE IF NOT EXISTS publication.pending_days (what VARCHAR NOT NULL, day DATE NOT NULL);
-- An event whose history rows the lake must replace, with a landing day on
-- which the lake may hold one (NULL: noted by an older version; then its
-- rows are replaced on every day).
CREATE TABLE IF NOT EXISTS publication.pending_events (event_id VARCHAR NOT NULL, landing_date DATE);
"""

# Tables copied per landing day.
LANDING_TABLES = ("raw.rejected_events", "raw.landing_files")
HISTORY_TABLES = tuple(state.HISTORY_TABLES.values())

W = ALIAS  # the lake, attached in the work connection

# zstd rather than DuckLake's default snappy: a night adds about a third
# fewer bytes to the lake at no measurable cost in publication time (bench).
# Kept in the catalog, so maintenance rewrites files with it too.
PARQUET_COMPRESSION = "zstd"

# A night closes a few hundred versions in each of the files a per-learner
# report table has in the lake. DuckLake writes a file's deletes as one new
# Parquet file holding every delete that file ever had, so each night
# rewrote the month's deletes: 4.1 MB of the 9.4 MB a million-learner night
# added after a 30-day backfill. A statement's deletes of up to this many
# rows from one file (and inserts of up to this many rows) go into the
# catalog instead, about 15 bytes a deleted row; maintenance flushes them to
# files. The night's inserts of those tables are larger, and stay Parquet.
INLINED_ROWS = 2500


@dataclass(frozen=True)
class Publication:
    snapshot_id: int
    landing_days: list[dt.date]
    report_days: list[dt.date]
    history_events: int
    requests_changed: int


def _same(left: str, right: str, columns: list[str]) -> str:
    return " AND ".join(f'{left}."{c}" IS NOT DISTINCT FROM {right}."{c}"' for c in columns)


def report_view_sql(name: str) -> str:
    return (
        f"SELECT v.* EXCLUDE (valid_from, valid_to), d.report_date FROM report_versions.{name} v "
        "JOIN report_versions.report_dates d "
        "ON d.report_date >= v.valid_from AND (v.valid_to IS NULL OR d.report_date < v.valid_to)"
    )


def lake_is_new(con: duckdb.DuckDBPyConnection) -> bool:
    """No publication ever committed to the attached lake."""
    return not con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'publication' "
                           "AND table_name = 'turn'", [W]).fetchone()[0]


def lake_objects(work: str, public_request_columns: str) -> dict[str, tuple[bool, str]]:
    """Every table and view of the lake, in creation order: qualified name ->
    (is a view, the statement creating it). Tables are shaped like the working
    database's; views are created inside the lake, where they bind their names."""
    tables = {
        "publication.turn": "SELECT 0::BIGINT AS publications",
        **{qualified: f"SELECT * FROM {work}.{qualified} LIMIT 0" for qualified in (*LANDING_TABLES, *HISTORY_TABLES)},
        "ops.report_requests": f"SELECT {public_request_columns} FROM requests_now LIMIT 0",
        "report_versions.report_dates": "SELECT NULL::DATE AS report_date LIMIT 0",
        **{f"report_versions.{name}": f"SELECT * EXCLUDE (report_date), report_date AS valid_from, "
                                      f"report_date AS valid_to FROM ({snapshots.no_rows_sql(name)})"
           for name in REPORT_BUILDERS},
    }
    views = {
        **{f"reports.{name}": report_view_sql(name) for name in REPORT_BUILDERS},
        **{f"state.{name}": query for name, query in state.state_queries(state.NO_CUTOFF).items()},
    }
    return {
        **{qualified: (False, f"CREATE TABLE {W}.{qualified} AS {query}") for qualified, query in tables.items()},
        **{qualified: (True, f"CREATE VIEW {qualified} AS {query}") for qualified, query in views.items()},
    }


def lake_options() -> dict[tuple[str, str | None], str]:
    """The options the lake keeps in its catalog: (option, qualified table or
    None for the whole lake) -> value."""
    return {
        ("parquet_compression", None): PARQUET_COMPRESSION,
        **{("data_inlining_row_limit", f"report_versions.{name}"): str(INLINED_ROWS)
           for name, table in catalog.TABLES.items() if table.mostly_unchanged_nightly},
    }


def _set_missing_options(con: duckdb.DuckDBPyConnection) -> None:
    """Set the options of ``lake_options`` that the lake's catalog lacks."""
    existing = {(option, entry if scope == "TABLE" else None) for option, scope, entry in con.execute(
        f"SELECT option_name, scope, scope_entry FROM {W}.options()").fetchall()}
    for (option, table), value in lake_options().items():
        if (option, table) in existing:
            continue
        arguments = [sql_literals.text(option), sql_literals.text(value)]
        if table is not None:
            schema, name = table.split(".")
            arguments += [f"schema => {sql_literals.text(schema)}", f"table_name => {sql_literals.text(name)}"]
        con.execute(f"CALL {W}.set_option({', '.join(arguments)})")


def ensure_lake_schema(con: duckdb.DuckDBPyConnection, work: str, public_request_columns: str) -> None:
    """Create what the lake lacks: the tables and views of ``lake_objects``,
    then its options (tables are created empty, so no file predates them)."""
    existing = {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = ?", [W, W]).fetchall()}
    missing = {qualified: definition for qualified, definition in lake_objects(work, public_request_columns).items()
               if qualified not in existing}
    if missing:
        _create(con, work, missing)
    _set_missing_options(con)


def _create(con: duckdb.DuckDBPyConnection, work: str, missing: dict[str, tuple[bool, str]]) -> None:
    with transaction(con):
        for schema in sorted({qualified.split(".")[0] for qualified in missing}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {W}.{schema}")
        for is_view, statement in missing.values():
            if not is_view:
                con.execute(statement)
        con.execute(f"USE {W}")
        try:
            for is_view, statement in missing.values():
                if is_view:
                    con.execute(statement)
        finally:
            con.execute(f"USE {work}")


def note_everything_pending(con: duckdb.DuckDBPyConnection) -> None:
    """Note every landing day, history row and report day of the working
    database as changed, so that the next publication copies it all: what a
    new (or moved-aside and recreated) lake needs."""
    histories = " UNION ALL ".join(f"SELECT event_id, landing_date FROM {table}" for table in HISTORY_TABLES)
    with transaction(con):
        con.execute(f"INSERT INTO publication.pending_days SELECT DISTINCT '{LANDING}', landing_date FROM raw.landing_files")
        con.execute(f"INSERT INTO publication.pending_days SELECT '{REPORTS}', unnest(?::DATE[])", [snapshots.days(con)])
        con.execute(f"INSERT INTO publication.pending_events {histories}")


def set_report_day(con: duckdb.DuckDBPyConnection, name: str, day: dt.date, following: dt.date | None) -> None:
    """Make ``reports.<name>`` at ``day`` equal the working snapshot, leaving every
    other report date as it was. ``following`` is the next report date already
    in the lake (versions only need to be right on report dates)."""
    versions = f"{W}.report_versions.{name}"
    columns = [column for column, _, _ in catalog.table_columns(name) if column != "report_date"]
    listed = ", ".join(f'"{c}"' for c in columns)
    d, n = sql_literals.date(day), sql_literals.date(following)
    old = (f"SELECT *, true AS in_old FROM {versions} "
           f"WHERE valid_from <= {d} AND (valid_to IS NULL OR valid_to > {d})")
    new = f"SELECT {listed}, true AS in_new FROM ({snapshots.day_sql(con, name, day)})"
    # One full join of the lake's rows at `day` with the day's file finds the
    # rows either side lacks, and only those are kept. The publication is one
    # transaction, which holds every temporary table it makes until the
    # commit: whole copies of both sides of five tables (and two anti joins)
    # made a million-learner publication spill past the 1 GB memory limit,
    # 6.5-6.8 s where this takes 3.3-3.5 s.
    con.execute(f"CREATE OR REPLACE TEMP TABLE unmatched AS SELECT o, n FROM ({old}) o FULL JOIN ({new}) n "
                f"ON {_same('o', 'n', columns)} WHERE o.in_old IS NULL OR n.in_new IS NULL")
    con.execute("CREATE OR REPLACE TEMP TABLE removed AS "
                "SELECT * EXCLUDE (in_old) FROM (SELECT unnest(o) FROM unmatched WHERE o.in_old)")
    con.execute("CREATE OR REPLACE TEMP TABLE added AS "
                "SELECT * EXCLUDE (in_new) FROM (SELECT unnest(n) FROM unmatched WHERE n.in_new)")
    if not con.execute("SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM added)").fetchone()[0]:
        return
    # An added row identical to a version ending at `day` or starting at
    # `following` extends it instead of starting a new one.
    con.execute(f"CREATE OR REPLACE TEMP TABLE left_neighbours AS SELECT v.* FROM {versions} v "
                f"SEMI JOIN added a ON {_same('v', 'a', columns)} WHERE v.valid_to = {d}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE right_neighbours AS SELECT v.* FROM {versions} v "
                f"SEMI JOIN added a ON {_same('v', 'a', columns)} WHERE v.valid_from = {n}")
    con.execute(
        f"DELETE FROM {versions} v USING (SELECT * FROM removed UNION ALL SELECT * FROM left_neighbours "
        f"UNION ALL SELECT * FROM right_neighbours) r WHERE {_same('v', 'r', columns)} AND v.valid_from = r.valid_from"
    )
    con.execute(f"""
        INSERT INTO {versions} BY NAME
        SELECT {listed}, valid_from, {d} AS valid_to FROM removed WHERE valid_from < {d}
        UNION ALL
        SELECT {listed}, {n} AS valid_from, valid_to FROM removed
            WHERE {n} IS NOT NULL AND (valid_to IS NULL OR valid_to > {n})
        UNION ALL
        SELECT {', '.join(f'a."{c}"' for c in columns)},
            coalesce(l.valid_from, {d}) AS valid_from,
            CASE WHEN r.valid_from IS NOT NULL THEN r.valid_to ELSE {n} END AS valid_to
        FROM added a
        LEFT JOIN left_neighbours l ON {_same('a', 'l', columns)}
        LEFT JOIN right_neighbours r ON {_same('a', 'r', columns)}
    """)


def _publish_once(con: duckdb.DuckDBPyConnection, work: str, landing_days: list[dt.date],
                  report_days: list[dt.date], public_request_columns: str) -> int:
    """One lake transaction applying every pending change; returns the requests changed."""
    days_list = "[" + ", ".join(sql_literals.date(d) for d in landing_days) + "]::DATE[]"
    with transaction(con):
        con.execute(f"UPDATE {W}.publication.turn SET publications = publications + 1")
        if landing_days:
            for table in LANDING_TABLES:
                con.execute(f"DELETE FROM {W}.{table} WHERE list_contains({days_list}, landing_date)")
                con.execute(f"INSERT INTO {W}.{table} BY NAME SELECT * FROM {work}.{table} "
                            f"WHERE list_contains({days_list}, landing_date)")
        if con.execute("SELECT count(*) FROM published_events").fetchone()[0]:
            # The lake keeps an event's history rows on the landing day of its
            # counted copy when it was last published: one of the days noted
            # with the event (its copies' days, the days re-ingested since).
            # Restricting the delete to those days lets the lake skip every
            # file of other days by its statistics. An event an older version
            # noted without days is replaced whatever the day: that version
            # could forget a re-ingested day before refreshing the event.
            # The working row is read from the same days: it sits on the
            # landing day of the event's counted copy now, one of the days
            # noted with it (a scan of every working row took 0.6 s at 1M).
            on_days = ""
            if not con.execute(f"SELECT count(*) FROM {work}.publication.pending_events "
                               "WHERE landing_date IS NULL").fetchone()[0]:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE history_days AS "
                    f"SELECT landing_date FROM {work}.publication.pending_events WHERE landing_date IS NOT NULL "
                    f"UNION SELECT unnest({days_list})"
                )
                on_days = "landing_date IN (SELECT landing_date FROM history_days) AND "
            for table in HISTORY_TABLES:
                con.execute(f"DELETE FROM {W}.{table} WHERE {on_days}event_id IN (SELECT event_id FROM published_events)")
                con.execute(f"INSERT INTO {W}.{table} BY NAME SELECT * FROM {work}.{table} "
                            f"WHERE {on_days}event_id IN (SELECT event_id FROM published_events)")
        for day in sorted(report_days):
            following = con.execute(f"SELECT min(report_date) FROM {W}.report_versions.report_dates "
                                    f"WHERE report_date > {sql_literals.date(day)}").fetchone()[0]
            for name in REPORT_BUILDERS:
                set_report_day(con, name, day, following)
            con.execute(f"INSERT INTO {W}.report_versions.report_dates SELECT {sql_literals.date(day)} "
                        f"WHERE NOT EXISTS (SELECT 1 FROM {W}.report_versions.report_dates WHERE report_date = {sql_literals.date(day)})")
        # Requests: upsert the rows that differ (other writers' requests stay).
        con.execute(f"CREATE OR REPLACE TEMP TABLE changed_requests AS SELECT {public_request_columns} FROM requests_now "
                    f"EXCEPT SELECT {public_request_columns} FROM {W}.ops.report_requests")
        changed = con.execute("SELECT count(*) FROM changed_requests").fetchone()[0]
        if changed:
            con.execute(f"DELETE FROM {W}.ops.report_requests WHERE request_id IN (SELECT request_id FROM changed_requests)")
            con.execute(f"INSERT INTO {W}.ops.report_requests BY NAME SELECT * FROM changed_requests")
        crash_point("publish.lake_written")
    return changed


def publish(con: duckdb.DuckDBPyConnection, settings: LakeSettings, public_request_columns: str) -> Publication:
    """Apply the pending changes of the working database ``con`` to the lake.

    The caller has put the request queue's public rows in the temp table
    ``requests_now``."""
    work = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(PENDING_DDL)
    with_retries(lambda: attach(con, settings, read_only=False, use=False))
    try:
        # Noted before the lake exists, so that a crash in between still
        # leaves everything to publish.
        if lake_is_new(con):
            note_everything_pending(con)
        with_retries(lambda: ensure_lake_schema(con, work, public_request_columns))
        landing_days = [r[0] for r in con.execute(
            "SELECT DISTINCT day FROM publication.pending_days WHERE what = ? ORDER BY 1", [LANDING]).fetchall()]
        report_days = [r[0] for r in con.execute(
            "SELECT DISTINCT day FROM publication.pending_days WHERE what = ? ORDER BY 1", [REPORTS]).fetchall()]
        con.execute("CREATE OR REPLACE TEMP TABLE published_events AS "
                    "SELECT DISTINCT event_id FROM publication.pending_events")
        changed = with_retries(lambda: _publish_once(con, work, landing_days, report_days, public_request_columns))
        snapshot_id = con.execute(f"SELECT max(snapshot_id) FROM ducklake_snapshots('{W}')").fetchone()[0]
    finally:
        con.execute("USE " + work)
        con.execute(f"DETACH {W}")
    crash_point("publish.lake_committed")
    # Only what this publication applied: nothing else writes the working
    # database while we hold its lock, but say so explicitly.
    with transaction(con):
        con.execute("DELETE FROM publication.pending_days WHERE (what = ? AND list_contains(?::DATE[], day)) "
                    "OR (what = ? AND list_contains(?::DATE[], day))", [LANDING, landing_days, REPORTS, report_days])
        con.execute("DELETE FROM publication.pending_events WHERE event_id IN (SELECT event_id FROM published_events)")
    return Publication(snapshot_id=snapshot_id, landing_days=landing_days, report_days=report_days,
                       history_events=con.execute("SELECT count(*) FROM published_events").fetchone()[0],
                       requests_changed=changed)
