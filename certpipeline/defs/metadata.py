"""Asset metadata the UI shows: column schemas, row counts and a preview of the first rows."""


import dagster as dg
import polars as pl

PREVIEW_ROWS = 10


def table_schema(columns: list[tuple[str, str, str]]) -> dg.TableSchema:
    """From (name, type, meaning) triples."""
    return dg.TableSchema(columns=[dg.TableColumn(name, type=kind, description=meaning)
                                   for name, kind, meaning in columns])


def table_preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows as a table the UI renders; dates, lists and the like as text."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, type=str(dtype)) for name, dtype in frame.schema.items()])
    records = [dg.TableRecord({name: _scalar(value) for name, value in row.items()})
               for row in frame.head(rows).to_dicts()]  # at most PREVIEW_ROWS rows
    return dg.MetadataValue.table(records=records, schema=schema)


def _scalar(value):
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def frame_metadata(frame: pl.DataFrame) -> dict:
    return {"dagster/row_count": frame.height, "preview": table_preview(frame)}
