"""Landing files (contract sections 1 and 2): which landing days exist, the
entries of a day's folder, and their lines, read as a stream under limits.

Nothing here writes: ``ingestion`` turns the lines into ``raw.*`` rows.
A name that is not a regular file (a link, a directory, a FIFO) is listed
with its refusal and never opened; a file is decompressed chunk by chunk, so
memory is bounded by a chunk and a line, not by the file.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
from zlib_ng import gzip_ng

from certpipeline.warehouse import DataPaths


class LandingDayMissing(FileNotFoundError):
    pass


def earliest_landing_day(paths: DataPaths) -> dt.date | None:
    """The earliest ``date=YYYY-MM-DD`` landing folder present (others are ignored)."""
    days = []
    for folder in paths.landing.glob("date=*"):
        try:
            days.append(dt.date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return min(days, default=None)


def missing_landing_days(paths: DataPaths, days: list[dt.date]) -> list[dt.date]:
    return [day for day in days if not paths.landing_day(day).is_dir()]


def missing_landing_message(paths: DataPaths, days: list[dt.date]) -> str | None:
    """One line naming the first of ``days`` without a landing folder, or None
    when every day has one (what the CLI and the UI both say)."""
    missing = missing_landing_days(paths, days)
    if not missing:
        return None
    more = f" and {len(missing) - 1} more day(s)" if len(missing) > 1 else ""
    return f"no landing folder for {missing[0]} (expected {paths.landing_day(missing[0])}){more}"


# Limits on what one landing file may hold (README, "Rejections"). A line or a
# file beyond them is one rejection with its reason; the rest of the day lands.
MAX_LINE_BYTES = 8 * 1024 * 1024
MAX_FILE_BYTES = 4 * 1024 * 1024 * 1024  # after decompression
# Files are read (and decompressed) in chunks of this size, so memory is bounded
# by the chunk and the longest line, never by the file: a 1 MB .gz can expand
# to gigabytes.
READ_CHUNK_BYTES = 32 * 1024 * 1024
# How much of an over-long line is kept in raw.rejected_events.
REJECTED_PREFIX_BYTES = 1024
LANDING_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class LandingLimits:
    max_line_bytes: int = MAX_LINE_BYTES
    max_file_bytes: int = MAX_FILE_BYTES
    read_chunk_bytes: int = READ_CHUNK_BYTES


@dataclass(frozen=True)
class LandingEntry:
    """A name in a landing folder that looks like a landing file, and why it
    cannot be read when it is not a regular file (links are never followed)."""

    path: Path
    refusal: str | None = None


class FileRejected(Exception):
    """The whole file is one rejection, with this reason."""


def landing_entries(paths: DataPaths, day: dt.date) -> list[LandingEntry]:
    """Every ``*.jsonl`` / ``*.jsonl.gz`` entry of the day's folder, by name.

    A symbolic link (it could point anywhere, /etc/passwd included), a
    directory or anything else that is not a regular file is listed with its
    refusal, never opened."""
    folder = paths.landing_day(day)
    if not folder.is_dir():
        raise LandingDayMissing(f"no landing folder for {day.isoformat()}: {folder}")
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if not entry.name.endswith(LANDING_SUFFIXES):
                continue
            if entry.is_symlink():
                refusal = "not a regular file: a symbolic link, never followed"
            elif entry.is_dir(follow_symlinks=False):
                refusal = "not a regular file: a directory"
            elif not entry.is_file(follow_symlinks=False):
                refusal = "not a regular file"
            else:
                refusal = None
            entries.append(LandingEntry(Path(entry.path), refusal))
    return sorted(entries, key=lambda e: e.path.name)


def split_lines(data: bytes) -> pa.Array:
    """The lines of a file as a binary array, without their line terminators."""
    if not data:
        return pa.array([], pa.large_binary())
    # One array over the file's bytes without copying them (a 140 MB file
    # would otherwise be held three times while it is split).
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, pa.array([0, len(data)], pa.int64()).buffers()[1], pa.py_buffer(data)]
    )
    lines = pc.split_pattern(whole, pattern=b"\n").flatten()
    if data.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    if b"\r" not in data:
        return lines
    # Windows line endings: drop one trailing carriage return.
    return pc.replace_substring_regex(lines, pattern=b"\r$", replacement=b"", max_replacements=1)


def open_landing_file(path: Path) -> BinaryIO:
    """The file's decompressed bytes as a stream. Opened without following a
    link (a link swapped in after listing fails here) and refused unless it
    is a regular file (a FIFO would block the run)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    handle = os.fdopen(descriptor, "rb")
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        handle.close()
        raise FileRejected("not a regular file")
    # GzipNGFile.read(n), like gzip.GzipFile, decompresses at most n bytes at a time: a bomb costs a chunk, not its size.
    return gzip_ng.GzipNGFile(fileobj=handle, mode="rb") if path.name.endswith(".gz") else handle


def read_line_batches(stream: BinaryIO, limits: LandingLimits) -> Iterator[tuple[pa.Array, pa.Array]]:
    """Consecutive lines of ``stream`` in batches, as (lines, oversized): an
    over-long line comes back as its first bytes, flagged. Raises
    FileRejected when the file expands beyond ``max_file_bytes``.

    Memory: one chunk plus the unfinished line, which is dropped (but for its
    first bytes) as soon as it exceeds the line limit."""
    unfinished = b""
    skipping = None  # the first bytes of an over-long line, until its end
    total = 0
    while True:
        chunk = stream.read(limits.read_chunk_bytes)
        at_end = not chunk
        total += len(chunk)
        if total > limits.max_file_bytes:
            raise FileRejected(f"file expands beyond the limit of {limits.max_file_bytes:,} bytes")
        if skipping is not None:
            end = chunk.find(b"\n")
            if end < 0 and not at_end:
                continue
            yield _one_oversized(skipping)
            skipping = None
            if at_end:
                return
            chunk = chunk[end + 1:]
        if at_end:
            if unfinished:
                yield _flag_oversized(split_lines(unfinished), limits)
            return
        data = unfinished + chunk if unfinished else chunk
        del chunk
        cut = data.rfind(b"\n")
        if cut >= 0:
            unfinished = data[cut + 1:]
            yield _flag_oversized(split_lines(data[: cut + 1]), limits)
        else:
            unfinished = data
        del data
        if len(unfinished) > limits.max_line_bytes + 1:  # + 1: the line may end in "\r\n"
            skipping, unfinished = unfinished[:REJECTED_PREFIX_BYTES], b""


def _one_oversized(prefix: bytes) -> tuple[pa.Array, pa.Array]:
    return pa.array([prefix], pa.large_binary()), pa.array([True])


def _flag_oversized(lines: pa.Array, limits: LandingLimits) -> tuple[pa.Array, pa.Array]:
    oversized = pc.greater(pc.binary_length(lines), limits.max_line_bytes)
    if not pc.any(oversized).as_py():
        return lines, oversized
    return pc.if_else(oversized, pc.binary_slice(lines, 0, REJECTED_PREFIX_BYTES), lines), oversized
