"""One DuckDB transaction as a ``with`` block, for every writer of the pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Commit when the block ends; roll back on any exception, a
    KeyboardInterrupt or a failed COMMIT included, and re-raise it, so a
    crash or an error leaves the tables as they were before the block."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        _roll_back(con)
        raise


def _roll_back(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, unless a failed COMMIT already did: DuckDB then answers
    "no transaction is active", which must not hide why the COMMIT failed."""
    try:
        con.execute("ROLLBACK")
    except duckdb.TransactionException:
        pass
