"""An error quoted on one line, the way every message of the pipeline (the
CLI's failures, ``doctor``'s findings, the request service's refusals) shows
one: ``Type: message``, its line breaks and runs of spaces collapsed."""

from __future__ import annotations


def one_line(error: BaseException, limit: int | None = None) -> str:
    """``Type: message`` (``Type`` alone when the message is empty), at most
    ``limit`` characters: DuckDB's messages can span lines and quote a whole
    file's worth of context."""
    text = " ".join(str(error).split())
    line = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return line[:limit]
