"""``generate_landing``: write the landing days, catalog first, then learners in chunks."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from random import Random

from certpipeline.generate.catalog import build_catalog
from certpipeline.generate.delivery import DayFolder, Delivery
from certpipeline.generate.learners import Learners
from certpipeline.generate.timeline import Window
from certpipeline.warehouse import DataPaths

CHUNK_SIZE = 10_000  # learners generated between two writes of the day buffers
GZIP_ONE_DAY_IN = 5


@dataclass
class GenerationSummary:
    days: list[dt.date]
    files: int
    lines: int  # all lines written, malformed included
    malformed_lines: int
    duplicate_lines: int


def generate_landing(
    data_dir: Path,
    *,
    learners: int = 1000,
    days: int = 30,
    seed: int = 0,
    end_date: dt.date | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    max_lines_per_file: int = 500_000,
) -> GenerationSummary:
    """Write synthetic landing files for the ``days`` days ending at ``end_date``
    (default: yesterday, UTC) into the landing folder of ``data_dir`` and return what
    was written. Existing folders of those days are replaced; other days are left alone.

    ``progress(stage, done, total)`` is called with stage ``"catalog"`` and then
    ``"learners"`` after each chunk of learners.
    """
    if learners < 1:
        raise ValueError("learners must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    if max_lines_per_file < 1:
        raise ValueError("max_lines_per_file must be at least 1")
    if end_date is None:
        end_date = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    if isinstance(end_date, dt.datetime):
        end_date = end_date.date()
    progress = progress or (lambda stage, done, total: None)
    window = Window.ending(end_date, days)
    rng = Random(seed)  # one stream for everything: the bytes are a function of the arguments
    delivery = Delivery(rng, seed, window)

    folders = _fresh_day_folders(DataPaths(Path(data_dir)), window, seed, max_lines_per_file)
    try:
        progress("catalog", 0, 1)
        catalog = build_catalog(rng, window, learners)
        for event in catalog.events:
            delivery.emit(*event)
        delivery.flush(folders)
        progress("catalog", 1, 1)
        progress("learners", 0, learners)
        population = Learners(rng, window, catalog, learners, delivery.emit)
        for first in range(0, learners, CHUNK_SIZE):
            last = min(learners, first + CHUNK_SIZE)
            for index in range(first, last):
                population.generate(index)
            delivery.flush(folders)
            progress("learners", last, learners)
    finally:
        for folder in folders:
            folder.finish()
    return GenerationSummary(
        days=list(window.days),
        files=sum(folder.files for folder in folders),
        lines=delivery.lines,
        malformed_lines=delivery.malformed,
        duplicate_lines=delivery.duplicates,
    )


def _fresh_day_folders(paths: DataPaths, window: Window, seed: int, max_lines: int) -> list[DayFolder]:
    """The window's landing folders, emptied; one day in five (which ones depends on
    the seed, from a stream of its own) is gzipped."""
    paths.landing.mkdir(parents=True, exist_ok=True)
    for day in window.days:
        if paths.landing_day(day).exists():
            shutil.rmtree(paths.landing_day(day))
    gzipped_offset = Random(seed * 7919 + 17).randrange(GZIP_ONE_DAY_IN)
    return [DayFolder(paths.landing_day(day), i % GZIP_ONE_DAY_IN == gzipped_offset, max_lines)
            for i, day in enumerate(window.days)]
