"""Several writers on one lake: a PostgreSQL catalog and a shared data folder,
written by pipelines that each have their own working database."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certpipeline import lake
from certpipeline.generate import generate_landing
from certpipeline_tests.conftest import contents

LAST_DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
DAYS = [LAST_DAY - dt.timedelta(days=2), LAST_DAY - dt.timedelta(days=1), LAST_DAY]


def _pipeline(tmp_path: Path, name: str, landing: Path, **settings: str) -> dict:
    """The environment of a pipeline with its own data directory on ``landing``."""
    data_dir = tmp_path / name
    data_dir.mkdir()
    (data_dir / "landing").symlink_to(landing / "landing", target_is_directory=True)
    return {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(data_dir / "dagster_home"),
            **settings}


def _run(env: dict, first: dt.date, last: dt.date) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "certpipeline.cli", "run", "--from", first.isoformat(),
                             "--to", last.isoformat()], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=1200)
    assert process.returncode == 0, stderr


def _lake_contents(settings: lake.LakeSettings) -> dict[str, list[tuple]]:
    with lake.reader(settings) as con:
        return contents(con, lake.ALIAS, skip_columns={"ingested_at"})


@pytest.mark.slow
def test_two_writers_at_once_on_a_postgres_catalog_land_what_one_writer_lands(tmp_path, postgres_database):
    source = tmp_path / "source"
    generate_landing(source, learners=300, days=len(DAYS), seed=13, end_date=LAST_DAY)

    alone = _pipeline(tmp_path, "alone", source)
    _finish(_run(alone, DAYS[0], DAYS[-1]))

    shared = {"CERTPIPELINE_CATALOG": f"postgres:{postgres_database}",
              "CERTPIPELINE_LAKE_DATA_PATH": f"{tmp_path / 'shared-lake'}/"}
    # Started together, the two publish the same nights at the same time (the
    # same rows, from separate working databases). Both run the whole range:
    # a range run computes each day's reports with every landing day of the
    # range, so writers given different ranges would publish different rows
    # for the same day, and the later one would rightly win.
    writers = [_run(_pipeline(tmp_path, name, source, **shared), DAYS[0], DAYS[-1])
               for name in ("writer-a", "writer-b")]
    for writer in writers:
        _finish(writer)

    one_writer = _lake_contents(lake.LakeSettings.under(tmp_path / "alone"))
    two_writers = _lake_contents(lake.LakeSettings(catalog=shared["CERTPIPELINE_CATALOG"],
                                                   data_path=shared["CERTPIPELINE_LAKE_DATA_PATH"]))
    assert sorted(two_writers) == sorted(one_writer)
    assert len(one_writer["reports.course_batch_dashboard"]) > 0
    assert {d for *_, d in one_writer["reports.course_batch_dashboard"]} == set(DAYS)
    for table, rows in one_writer.items():
        assert two_writers[table] == rows, table
