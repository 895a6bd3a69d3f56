"""Asset metadata the UI shows: row counts and a preview of the first rows."""


import dagster as dg
import polars as pl

PREVIEW_ROWS = 10


def markdown_preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    head = frame.head(rows)
    header = "| " + " | ".join(head.columns) + " |"
    rule = "| " + " | ".join("---" for _ in head.columns) + " |"
    body = [
        "| " + " | ".join("" if value is None else str(value).replace("|", "\\|") for value in row) + " |"
        for row in head.iter_rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def frame_metadata(frame: pl.DataFrame) -> dict:
    return {"dagster/row_count": frame.height, "preview": markdown_preview(frame)}
