"""Time in the generator: whole seconds since the Unix epoch (UTC), and the export window.

Plain integers keep the arithmetic of millions of events cheap; they become ISO-8601
text only when written into a payload or an envelope.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property, lru_cache

DAY = 86_400
NEVER = 1 << 62  # a time after any other: "no end", "not deleted"
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
TIMES_OF_DAY = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


@lru_cache(maxsize=None)
def iso_date(day_number: int) -> str:
    """'YYYY-MM-DD' of a day counted from 1970-01-01."""
    return dt.date.fromordinal(day_number + _EPOCH_ORDINAL).isoformat()


def date_of(day_number: int) -> dt.date:
    return dt.date.fromordinal(day_number + _EPOCH_ORDINAL)


def iso_timestamp(seconds: int) -> str:
    """A payload timestamp: UTC, with Z."""
    day_number, second_of_day = divmod(seconds, DAY)
    return f"{iso_date(day_number)}T{TIMES_OF_DAY[second_of_day]}Z"


@dataclass(frozen=True)
class Window:
    """The export days: events occur in [start, end) and land in one folder a day."""

    days: tuple[dt.date, ...]

    @classmethod
    def ending(cls, end_date: dt.date, days: int) -> Window:
        return cls(tuple(end_date - dt.timedelta(days=days - 1 - i) for i in range(days)))

    @cached_property
    def first_day_number(self) -> int:
        return self.days[0].toordinal() - _EPOCH_ORDINAL

    @cached_property
    def start(self) -> int:
        return self.first_day_number * DAY

    @cached_property
    def end(self) -> int:
        return self.start + len(self.days) * DAY

    @cached_property
    def last_folder(self) -> int:
        return len(self.days) - 1
