"""The working database's schema: its version, preparing it, and the additive
migration an upgraded pipeline applies to a database an older version made.

The rule: a column this version adds at the end of a table is added to the
existing table on first open (its rows get the column's default, or NULL);
a column whose type changed, that was removed, or that was added before
existing columns is refused in one line, because the pipeline writes some
tables with positional INSERTs: the working database then needs a rebuild
(it is derived from the landing files alone). Report snapshots an older
version kept as ``reports.*`` tables move out to their files
(``snapshots.move_tables_to_files``), and the days an older version queued
for the history refresh count as unknown (it noted fewer days than the
publication now relies on).
"""

from __future__ import annotations

import functools
import hashlib

import duckdb

from certpipeline import ingestion, publication, state
from certpipeline.reports import snapshots
from certpipeline.transactions import transaction


REBUILD = "re-run the landing days into a fresh data directory"


class WorkSchemaMismatch(Exception):
    """The working database holds a column this version cannot migrate;
    ``problem`` says which, without the remedy (``doctor`` words its own)."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}; this version cannot migrate it, the working database needs a rebuild: {REBUILD}")
        self.problem = problem


def work_ddl() -> list[str]:
    return [ingestion.RAW_DDL, publication.PENDING_DDL, *state.history_ddl()]


# The working database's schema as this code creates it. A database prepared
# with the same statements is left alone: re-running them on every open
# (several times a run) rewrote the views and cost a catalog commit each time.
WORK_SCHEMA_VERSION = hashlib.sha256("\n;\n".join(work_ddl()).encode("utf-8")).hexdigest()

# Base tables' columns, in order: (schema, table) -> [(column, type, default)].
_COLUMNS_SQL = """
    SELECT c.schema_name, c.table_name, c.column_name, c.data_type, c.column_default
    FROM duckdb_columns() c
    JOIN duckdb_tables() t USING (database_name, schema_name, table_name)
    WHERE c.database_name = current_database() AND NOT t.temporary
    ORDER BY c.schema_name, c.table_name, c.column_index
"""
Columns = dict[tuple[str, str], list[tuple[str, str, str | None]]]


def _columns(con: duckdb.DuckDBPyConnection) -> Columns:
    found: Columns = {}
    for schema, table, column, data_type, default in con.execute(_COLUMNS_SQL).fetchall():
        found.setdefault((schema, table), []).append((column, data_type, default))
    return found


@functools.cache
def expected_columns() -> Columns:
    """The base tables this version's DDL creates, read from a scratch database
    (once a process: every fresh data directory compares against it)."""
    scratch = duckdb.connect()
    try:
        for statement in work_ddl():
            scratch.execute(statement)
        return _columns(scratch)
    finally:
        scratch.close()


def _refusal(table: str, column: str, why: str) -> WorkSchemaMismatch:
    return WorkSchemaMismatch(f"the working database's column {table}.{column} {why}")


def missing_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str | None]]:
    """The columns to add, as (schema.table, column, type, default); raises
    WorkSchemaMismatch for a change the migration cannot make. Tables the
    database lacks altogether are the DDL's to create."""
    existing, to_add = _columns(con), []
    for (schema, table), wanted in expected_columns().items():
        name, have = f"{schema}.{table}", existing.get((schema, table))
        if have is None:
            continue
        wanted_types = {column: data_type for column, data_type, _ in wanted}
        for column, data_type, _ in have:
            if column not in wanted_types:
                raise _refusal(name, column, "is no longer in this version's schema")
            if wanted_types[column] != data_type:
                raise _refusal(name, column, f"is {data_type} but this version needs {wanted_types[column]}")
        have_names = [column for column, _, _ in have]
        for column, had in zip([column for column, _, _ in wanted], have_names, strict=False):
            if column != had:
                why = "has moved" if column in have_names else "is new but comes before existing columns"
                raise _refusal(name, column, why)
        to_add += [(name, column, data_type, default) for column, data_type, default in wanted[len(have):]]
    return to_add


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Create what the working database lacks and add the columns this version
    added, unless it was last prepared by the same version (``meta.work_schema``);
    all in one transaction, so a refusal or a crash leaves it as it was (and
    the snapshot files already moved out are written again next time)."""
    try:
        prepared = con.execute("SELECT version FROM meta.work_schema").fetchall()
    except duckdb.CatalogException:
        prepared = []
    if prepared == [(WORK_SCHEMA_VERSION,)]:
        return
    with transaction(con):
        # Columns first: the DDL's views are bound when created, so they
        # must see the new columns.
        added = missing_columns(con)
        for table, column, data_type, default in added:
            with_default = f" DEFAULT {default}" if default is not None else ""
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {data_type}{with_default}')
        if ("publication.pending_events", "landing_date") in {(table, column) for table, column, _, _ in added}:
            # The version before queued an event with its counted copy's day
            # only, not every day the lake may keep its history on: unknown.
            con.execute("UPDATE raw.history_refresh_queue SET landing_date = NULL")
        for statement in work_ddl():
            con.execute(statement)
        snapshots.move_tables_to_files(con)
        con.execute("CREATE SCHEMA IF NOT EXISTS meta")
        con.execute("CREATE OR REPLACE TABLE meta.work_schema AS SELECT ?::VARCHAR AS version", [WORK_SCHEMA_VERSION])
