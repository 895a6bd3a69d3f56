"""Values written into SQL text, where a statement cannot take a parameter
(DDL, views, table functions' arguments) or where DuckDB prunes files and row
groups only by a constant it sees when planning."""

from __future__ import annotations

import datetime as dt


def text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def date(day: dt.date | None) -> str:
    return "NULL::DATE" if day is None else f"DATE '{day.isoformat()}'"


def timestamp(moment: dt.datetime) -> str:
    """A TIMESTAMPTZ literal of an aware ``moment``."""
    return f"TIMESTAMPTZ '{moment.isoformat()}'"
