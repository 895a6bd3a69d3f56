"""The ``reports.*`` warehouse tables: one snapshot per report date.

Each table is built from the state as of its report date with the default
filters (seed-001 tables: active users; totals and dashboard: every user) and
written by replacing that date's snapshot file (``snapshots``), so re-running
a day changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import duckdb
import polars as pl

from certpipeline import carried_state
from certpipeline.reports import catalog, snapshots
from certpipeline.state import CARRIED_CHANGED_KEYS, State, advance_state, load_state

# Every report table and its builder, from the catalog, in the contract's order.
REPORT_BUILDERS: dict[str, Callable[[State], pl.DataFrame]] = {name: table.build for name, table in catalog.TABLES.items()}

# What the report tables read of the state (with the default filters no group
# membership, and no answers), and of these entities only these payload
# columns besides the key and lifecycle flag: the state is aggregated over
# what is read (at a million learners, users' custom fields alone cost a second).
REPORT_ENTITIES = ("users", "groups", "courses", "sessions", "certificates", "enrollments", "awards")
REPORT_ATTRIBUTES = {"user": ("name", "email"), "enrollment_progress": ("status",)}


def report_state(con: duckdb.DuckDBPyConnection, day: dt.date, previous: State | None = None) -> State:
    """The state as of ``day``, as much of it as the report tables read;
    carried forward from ``previous`` (this function's state as of an earlier
    day, from the same history) when given, else from the state an earlier
    run saved (``keep_report_state``) when it can be."""
    if previous is not None and previous.as_of < day:
        return advance_state(con, previous, day, entities=REPORT_ENTITIES, attributes=REPORT_ATTRIBUTES)
    saved = carried_state.load(con, day, REPORT_ATTRIBUTES) if previous is None else None
    if saved is not None:
        return advance_state(con, saved, day, entities=REPORT_ENTITIES, attributes=REPORT_ATTRIBUTES,
                             changed_since=CARRIED_CHANGED_KEYS)
    return load_state(con, day, entities=REPORT_ENTITIES, attributes=REPORT_ATTRIBUTES)


def keep_report_state(con: duckdb.DuckDBPyConnection, as_of: State) -> None:
    """Save ``as_of`` (``report_state``'s, with the history unchanged since)
    for the next run to carry forward."""
    carried_state.save(con, as_of, REPORT_ATTRIBUTES)


def build_reports(state: State) -> dict[str, pl.DataFrame]:
    return {
        name: build(state).with_columns(report_date=pl.lit(state.as_of, pl.Date))
        for name, build in REPORT_BUILDERS.items()
    }


def write_snapshots(con: duckdb.DuckDBPyConnection, day: dt.date, reports: dict[str, pl.DataFrame]) -> None:
    """Replace the ``day`` snapshot of every report table, then note the day
    for the next publication: a crash in between leaves the lake as it was
    until the day is computed again, which the failed run's rerun does."""
    snapshots.write(con, day, reports)
    con.execute("INSERT INTO publication.pending_days VALUES ('reports', ?)", [day])
