"""From events to landing lines, with the defects of a real export.

Each event gets its envelope (``e-<seed>-<n>`` ids; ``occurred_at`` mostly UTC with
Z, sometimes without an offset or in +02:00) and lands in its day's folder, except:

* about 2 % land one to five days late (never past the last day);
* about 0.5 % are delivered twice, the same line in the same or a later folder;
* about 0.1 % of the time an extra malformed line is written, cycling through the
  contract's kinds of rejection; it breaks a copy of the event according to the
  field kinds declared in :mod:`certpipeline.events`, with an event id of its own.

Lines are buffered per day and written by :class:`DayFolder` into numbered parts,
one day in five gzipped (with a zero mtime, so the bytes do not depend on when or
where they were written).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from random import Random
from typing import BinaryIO

from certpipeline.events import BOOL, EVENT_TYPES, INT, NUMBER, STRING_LIST, STRING_MAP, TIMESTAMP, Field
from certpipeline.generate.timeline import DAY, TIMES_OF_DAY, Window, iso_date
from certpipeline.generate.vocabulary import UNKNOWN_EVENT_TYPES, VALUES_OUTSIDE_ANY_SET

LATE_RATE = 0.02
DUPLICATE_EVERY = (100, 300)  # one duplicate every 100..300 events: ~0.5 %
MALFORMED_EVERY = (600, 1400)  # one malformed line every 600..1400 events: ~0.1 %
MALFORMED_KINDS = (
    "invalid_json",
    "unknown_event_type",
    "missing_required_field",
    "wrong_type",
    "not_allowed",
    "bad_timestamp",
)

try:  # the C encoder without the per-call set-up of JSONEncoder.encode: same output, faster
    from json.encoder import c_make_encoder as _c_make_encoder, encode_basestring as _encode_string

    _c_encoder = _c_make_encoder(None, json.JSONEncoder().default, _encode_string, None, ":", ",", False, False, True)

    def encode_json(obj: dict) -> str:
        """Compact JSON, UTF-8 characters as they are (json.dumps(ensure_ascii=False, separators=(",", ":")))."""
        return "".join(_c_encoder(obj, 0))

except (ImportError, TypeError):  # pragma: no cover - interpreters without the C accelerator
    encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True)
class _Breakable:
    """The fields of one event type a malformed line can break, by how."""

    required: tuple[str, ...]
    typed: tuple[Field, ...]  # numbers, booleans, lists, maps: can get the wrong JSON type
    bounded: tuple[Field, ...]  # an allowed set or a range: can get a value outside it
    timestamps: tuple[str, ...]

    @classmethod
    def of(cls, fields: tuple[Field, ...]) -> _Breakable:
        return cls(
            required=tuple(f.name for f in fields if f.required),
            typed=tuple(f for f in fields if f.kind in (NUMBER, INT, BOOL, STRING_LIST, STRING_MAP)),
            bounded=tuple(f for f in fields if f.allowed or f.minimum is not None or f.maximum is not None),
            timestamps=tuple(f.name for f in fields if f.kind == TIMESTAMP),
        )


_BREAKABLE = {event_type: _Breakable.of(fields) for event_type, fields in EVENT_TYPES.items()}


def _gap(random, every: tuple[int, int]) -> int:
    return every[0] + int(random() * (every[1] - every[0]))


class Delivery:
    """Writes events into per-day buffers as landing lines, injecting the defects.

    It is created before anything else draws from ``rng``: its first two draws
    place the first duplicate and the first malformed line."""

    def __init__(self, rng: Random, seed: int, window: Window):
        self.rng, self.seed = rng, seed
        self.window_start, self.last_folder = window.start, window.last_folder
        self.events = 0  # event ids handed out, malformed lines included
        self.lines = 0
        self.duplicates = 0
        self.malformed = 0
        self.until_duplicate = _gap(rng.random, DUPLICATE_EVERY)
        self.until_malformed = _gap(rng.random, MALFORMED_EVERY)
        self.buffers: list[list[str]] = [[] for _ in window.days]

    def emit(self, t: int, event_type: str, payload: dict) -> None:
        """Deliver one event that occurred at second ``t`` (this is the generator's
        innermost step: it keeps to locals and plain string formatting)."""
        rnd = self.rng.random
        self.events += 1
        event_id = f"e-{self.seed}-{self.events}"
        day_number, second = divmod(t, DAY)
        r = rnd()
        if r < 0.95:
            occurred_at = f"{iso_date(day_number)}T{TIMES_OF_DAY[second]}Z"
        elif r < 0.975 or second >= 22 * 3600:
            occurred_at = f"{iso_date(day_number)}T{TIMES_OF_DAY[second]}"
        else:  # the same calendar date in +02:00 as in UTC
            occurred_at = f"{iso_date(day_number)}T{TIMES_OF_DAY[second + 7200]}+02:00"
        # the id, type and timestamp are plain ASCII without characters JSON would escape
        line = (f'{{"event_id":"{event_id}","event_type":"{event_type}","occurred_at":"{occurred_at}",'
                f'"payload":{encode_json(payload)}}}')
        folder = (t - self.window_start) // DAY
        if folder < self.last_folder and rnd() < LATE_RATE:
            r = rnd()
            folder = min(self.last_folder, folder + (1 if r < 0.6 else 2 if r < 0.85 else 3 + int(rnd() * 3)))
        buffers = self.buffers
        buffers[folder].append(line)
        self.lines += 1
        self.until_duplicate -= 1
        if self.until_duplicate <= 0:
            again = folder if rnd() < 0.5 else min(self.last_folder, folder + 1 + int(rnd() * 3))
            buffers[again].append(line)
            self.lines += 1
            self.duplicates += 1
            self.until_duplicate = _gap(rnd, DUPLICATE_EVERY)
        self.until_malformed -= 1
        if self.until_malformed <= 0:
            kind = MALFORMED_KINDS[self.malformed % len(MALFORMED_KINDS)]
            bad = self._malformed(kind, event_type, occurred_at, payload)
            if bad is not None:  # otherwise retried on the next event
                buffers[folder].append(bad)
                self.lines += 1
                self.malformed += 1
                self.until_malformed = _gap(rnd, MALFORMED_EVERY)

    def _malformed(self, kind: str, event_type: str, occurred_at: str, payload: dict) -> str | None:
        """A broken delivery of an event like this one (its own event id), or None if
        this event has no field the kind can break."""
        rnd = self.rng.random
        broken = dict(payload)
        if kind == "unknown_event_type":
            event_type = UNKNOWN_EVENT_TYPES[int(rnd() * len(UNKNOWN_EVENT_TYPES))]
        elif kind == "missing_required_field":
            required = _BREAKABLE[event_type].required
            del broken[required[int(rnd() * len(required))]]
        elif kind == "wrong_type":
            if not _give_wrong_type(rnd, _BREAKABLE[event_type], broken):
                return None
        elif kind == "not_allowed":
            if not _give_value_outside(rnd, _BREAKABLE[event_type], broken):
                return None
        elif kind == "bad_timestamp":
            occurred_at = _break_a_timestamp(rnd, _BREAKABLE[event_type], broken, occurred_at)
        self.events += 1
        line = encode_json({"event_id": f"e-{self.seed}-{self.events}", "event_type": event_type,
                            "occurred_at": occurred_at, "payload": broken})
        if kind == "invalid_json":  # cut somewhere in its middle
            line = line[: len(line) // 3 + int(rnd() * (len(line) // 2))]
        return line

    def flush(self, folders: list[DayFolder]) -> None:
        for buffer, folder in zip(self.buffers, folders):
            if buffer:
                folder.write(buffer)
                buffer.clear()


def _give_wrong_type(rnd, breakable: _Breakable, payload: dict) -> bool:
    candidates = [f for f in breakable.typed if payload.get(f.name) is not None]
    if not candidates:
        return False
    f = candidates[int(rnd() * len(candidates))]
    value = payload[f.name]
    if f.kind in (NUMBER, INT):
        payload[f.name] = str(value)
    elif f.kind == BOOL:
        payload[f.name] = "yes" if value else "no"
    elif f.kind == STRING_LIST:
        payload[f.name] = ",".join(value)
    else:  # STRING_MAP: a list of pairs, or a map of numbers
        payload[f.name] = [f"{k}={x}" for k, x in value.items()] if rnd() < 0.5 else {k: 1 for k in value} or [1]
    return True


def _give_value_outside(rnd, breakable: _Breakable, payload: dict) -> bool:
    candidates = [f for f in breakable.bounded if f.name in payload]
    if not candidates:
        return False
    f = candidates[int(rnd() * len(candidates))]
    if f.allowed:
        payload[f.name] = VALUES_OUTSIDE_ANY_SET[int(rnd() * len(VALUES_OUTSIDE_ANY_SET))]
    elif f.maximum is not None and rnd() < 0.6:
        payload[f.name] = f.maximum + 1 + int(rnd() * 60)
    else:
        payload[f.name] = int(f.minimum) - 1 - int(rnd() * 5)
    return True


def _break_a_timestamp(rnd, breakable: _Breakable, payload: dict, occurred_at: str) -> str:
    """Half the time a payload timestamp (when the event has one), else the envelope's
    gets a date people write but ISO-8601 does not accept; returns the envelope's."""
    year, month, day = occurred_at[:10].split("-")
    bad = (
        f"{day}/{month}/{year} 13:05", f"{year}-{month}-{day}T25:61:00Z", f"{year}-13-{day}T10:00:00Z",
        f"{year}-02-30T08:00:00Z", "yesterday", f"{month}/{day}/{year} 1:05 PM",
    )[int(rnd() * 6)]
    present = [name for name in breakable.timestamps if payload.get(name) is not None]
    if present and rnd() < 0.5:
        payload[present[int(rnd() * len(present))]] = bad
        return occurred_at
    return bad


class DayFolder:
    """The parts of one export day, ``part-NNNNN.jsonl[.gz]``; one file open at a time."""

    def __init__(self, folder: Path, gzipped: bool, max_lines: int):
        self.folder, self.gzipped, self.max_lines = folder, gzipped, max_lines
        self.part = -1
        self.file: BinaryIO | None = None
        self.stream: BinaryIO | None = None  # the gzip stream over file, or file itself
        self.lines_in_part = 0
        self.files = 0

    def _next_part(self) -> None:
        self.close()
        self.part += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{self.part:05d}.jsonl" + (".gz" if self.gzipped else "")
        self.file = open(self.folder / name, "wb", buffering=1 << 20)
        if self.gzipped:
            self.stream = gzip.GzipFile(filename="", mode="wb", fileobj=self.file, compresslevel=6, mtime=0)
        else:
            self.stream = self.file
        self.lines_in_part = 0
        self.files += 1

    def write(self, lines: list[str]) -> None:
        i, n = 0, len(lines)
        while i < n:
            if self.stream is None or self.lines_in_part >= self.max_lines:
                self._next_part()
            k = min(n - i, self.max_lines - self.lines_in_part)
            self.stream.write(("\n".join(lines[i:i + k]) + "\n").encode("utf-8"))
            self.lines_in_part += k
            i += k

    def close(self) -> None:
        if self.stream is not None:
            if self.gzipped:
                self.stream.close()
            self.file.close()
            self.stream = self.file = None

    def finish(self) -> None:
        if self.files == 0:  # every export day has a file, even an empty one
            self._next_part()
        self.close()
