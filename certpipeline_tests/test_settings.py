"""``certpipeline/settings.py``: every variable read in one place, with its
default; a bad value is one line naming the variable, from the CLI too."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from certpipeline.settings import DEFAULT_DATA_DIR, VARIABLES, Settings, SettingError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_an_empty_environment_gives_the_documented_defaults():
    assert Settings.from_environment({}) == Settings(
        data_dir=DEFAULT_DATA_DIR, dagster_home=DEFAULT_DATA_DIR / "dagster_home", first_day=None,
        duckdb_memory_limit="1GB", retention_days=30, catalog="", lake_data_path="", from_variables=frozenset())


def test_a_variable_set_empty_counts_as_unset():
    assert Settings.from_environment({"CERTPIPELINE_CATALOG": "", "CERTPIPELINE_RETENTION_DAYS": "9"}).from_variables \
        == {"retention_days"}


def test_every_variable_is_read(tmp_path):
    environ = {"CERTPIPELINE_DATA_DIR": str(tmp_path / "d"), "DAGSTER_HOME": str(tmp_path / "h"),
               "CERTPIPELINE_FIRST_DAY": "2025-03-01", "CERTPIPELINE_DUCKDB_MEMORY_LIMIT": "300MB",
               "CERTPIPELINE_RETENTION_DAYS": "7", "CERTPIPELINE_CATALOG": "postgres:dbname=lake",
               "CERTPIPELINE_LAKE_DATA_PATH": "/shared/lake/"}
    assert Settings.from_environment(environ) == Settings(
        data_dir=tmp_path / "d", dagster_home=tmp_path / "h", first_day=dt.date(2025, 3, 1),
        duckdb_memory_limit="300MB", retention_days=7, catalog="postgres:dbname=lake", lake_data_path="/shared/lake/",
        from_variables=frozenset({"data_dir", "dagster_home", "first_day", "duckdb_memory_limit", "retention_days",
                                  "catalog", "lake_data_path"}))


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("CERTPIPELINE_RETENTION_DAYS", "0",
     "CERTPIPELINE_RETENTION_DAYS must be a whole number of days, at least 1, not '0'"),
    ("CERTPIPELINE_RETENTION_DAYS", "a week",
     "CERTPIPELINE_RETENTION_DAYS must be a whole number of days, at least 1, not 'a week'"),
    ("CERTPIPELINE_FIRST_DAY", "01/03/2025",
     "CERTPIPELINE_FIRST_DAY must be a date like 2026-01-31, not '01/03/2025'"),
    ("CERTPIPELINE_CATALOG", "/srv/lake/catalog.sqlite", "CERTPIPELINE_CATALOG must be sqlite:PATH or postgres:DSN"),
    ("CERTPIPELINE_DUCKDB_MEMORY_LIMIT", "lots",
     "CERTPIPELINE_DUCKDB_MEMORY_LIMIT must be a size like 1GB or 500MB, not 'lots'"),
    *(("CERTPIPELINE_CATALOG", dsn, "CERTPIPELINE_CATALOG must not hold a password (warehouse-sql prints it and the "
       "Dagster UI shows it): put it in ~/.pgpass or PGPASSWORD")
      for dsn in ("postgres:host=db user=pipeline password=s3cret dbname=lake",
                  "postgres:password = s3cret host=db", "postgres:postgresql://pipeline:s3cret@db/lake")),
])
def test_a_bad_value_is_one_line_naming_the_variable(variable, value, message):
    with pytest.raises(SettingError) as error:
        Settings.from_environment({variable: value})
    assert str(error.value) == message


def test_a_catalog_without_a_password_is_kept_as_given():
    for dsn in ("postgres:host=db user=pipeline dbname=lake passfile=/etc/lake.pgpass",
                "postgres:postgresql://pipeline@db/lake", "sqlite:/srv/lake/catalog.sqlite"):
        assert Settings.from_environment({"CERTPIPELINE_CATALOG": dsn}).catalog == dsn


def test_the_cli_refuses_a_bad_value_in_one_line(tmp_path):
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(tmp_path), "CERTPIPELINE_RETENTION_DAYS": "-3"}
    done = subprocess.run([sys.executable, "-m", "certpipeline.cli", "doctor"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert (done.returncode, done.stderr) == (
        1, "certpipeline: CERTPIPELINE_RETENTION_DAYS must be a whole number of days, at least 1, not '-3'\n")


def test_the_readme_lists_every_variable_in_one_table():
    rows = "\n".join(f"| `{v.name}` | {v.default} | {v.meaning} |" for v in VARIABLES)
    assert f"| variable | default | meaning |\n|---|---|---|\n{rows}\n" in README.read_text()
