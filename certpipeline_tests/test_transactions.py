"""``transactions.transaction``: a block commits, or leaves the tables as they were
and raises why."""

from __future__ import annotations

import duckdb
import pytest

from certpipeline.transactions import transaction


def test_a_failed_commit_raises_its_own_reason_and_keeps_nothing(tmp_path):
    first = duckdb.connect(str(tmp_path / "store.duckdb"))
    first.execute("CREATE TABLE t (i INTEGER PRIMARY KEY)")
    second = first.cursor()
    with pytest.raises(duckdb.TransactionException, match="PRIMARY KEY or UNIQUE constraint violation"):
        with transaction(second):
            second.execute("INSERT INTO t VALUES (1), (2)")
            with transaction(first):  # commits first, so the second's COMMIT fails
                first.execute("INSERT INTO t VALUES (1)")
    assert first.execute("SELECT i FROM t").fetchall() == [(1,)]
    with transaction(second):  # the connection is usable again
        second.execute("INSERT INTO t VALUES (3)")
    assert first.execute("SELECT i FROM t ORDER BY i").fetchall() == [(1,), (3,)]


def test_an_error_inside_the_block_rolls_back_and_is_raised(tmp_path):
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("CREATE TABLE t (i INTEGER)")
    with pytest.raises(ZeroDivisionError):
        with transaction(con):
            con.execute("INSERT INTO t VALUES (1)")
            1 / 0  # noqa: B018
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
