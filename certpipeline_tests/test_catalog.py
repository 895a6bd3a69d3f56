"""The report catalog says what the contract says (docs/contract.md, sections 4
and 5): the same report tables with the same columns (through the DDL the
pipeline runs), the same report types with the same scope, requesters,
password rule and CSV headers."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from certpipeline.reports import catalog, snapshots

CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "contract.md"


def contract_table(heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under ``## heading``, as cells."""
    section = CONTRACT.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def names(cell: str) -> list[str]:
    """A comma-separated list of the contract, without notes in parentheses
    (``batch_status (`Live`, `Expired`)`` is ``batch_status``)."""
    return [re.sub(r"\s*\(.*\)$", "", name).strip() for name in re.split(r",\s*(?![^(]*\))", cell)]


def test_report_tables_have_exactly_the_contract_columns_in_its_order():
    contract = {row[0].strip("`").removeprefix("reports."): names(row[2])
                for row in contract_table("4. Output: warehouse tables (DuckDB)") if row[0].startswith("`reports.")}
    # The columns the working snapshots are read with, which the lake's tables are shaped from.
    con = duckdb.connect()
    created = {table: [column for (column, *_) in con.sql(snapshots.no_rows_sql(table)).description]
               for table in catalog.TABLES}
    assert created == contract
    assert list(catalog.TABLES) == list(contract)
    for name, table in catalog.TABLES.items():
        assert set(table.key) <= set(contract[name])
        assert all(column.meaning for column in table.columns)


def test_report_files_have_the_contract_scope_requesters_password_and_csv_headers():
    rows = contract_table("5. Output: report files")
    assert [row[0].strip("`") for row in rows] == list(catalog.FILES)
    who_above = None
    for report_type, scope, who, password, columns in rows:
        file = catalog.FILES[report_type.strip("`")]
        who_above = who_above if who == "as above" else who
        assert file.requesters == who_above, report_type
        assert file.password_mandatory == (password == "**mandatory**"), report_type
        named = scope.removesuffix(", filters").replace("all certificates the requester may see", "")
        assert file.scope == tuple(kind for kind in named.split(" + ") if kind), report_type
        if scope.endswith(", filters"):
            assert file.filters == catalog.POPULATION_FILTERS, report_type
        fixed, _, then = columns.partition(", then one column ")
        assert [column.header for column in file.columns] == names(fixed), report_type
        if file.per_key_columns is None:
            assert not then, report_type
        else:
            assert then.startswith(f"`{file.per_key_columns.header.format(key='KEY')}` per custom field key"), \
                report_type
            assert then.endswith(", sorted")
