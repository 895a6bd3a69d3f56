"""Every setting certpipeline reads from its environment, in one place.

``Settings.from_environment()`` reads and checks them all at once; a value the
pipeline cannot use is a ``SettingError`` with a one-line message naming the
variable. The command line builds it once per command, the Dagster code
location when it loads (``defs/resources.py``, ``defs/partitions.py``);
everything else receives the values. ``VARIABLES`` is the table the README
repeats. Test fault injection (``faults.py``) is not a setting.

The password key and its file are the exception: ``password_vault`` reads
them when it seals or opens a password (``secret_key()``,
``default_key_file()``), so that a key never sits in the resource's
configuration (which the Dagster UI shows), a run config or a repr.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPOSITORY_ROOT / "data"
DEFAULT_MEMORY_LIMIT = "1GB"
# How long report files are kept (contract section 8).
DEFAULT_RETENTION_DAYS = 30


SECRET_KEY_VARIABLE = "CERTPIPELINE_SECRET_KEY"


class SettingError(ValueError):
    """An environment variable with a value the pipeline cannot use."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str
    # The ``Settings`` field it sets; empty for the password key's variables.
    field: str = ""


VARIABLES = (
    Variable("CERTPIPELINE_DATA_DIR", "`data/` in the repository",
             "the data directory: landing files, working stores, the published warehouse, exhausts",
             field="data_dir"),
    Variable("DAGSTER_HOME", "`<data dir>/dagster_home`",
             "Dagster's instance (run history, pools); the CLI, `dg dev` and the daemon must share it",
             field="dagster_home"),
    Variable("CERTPIPELINE_FIRST_DAY", "the earliest landing folder, else yesterday",
             "the first daily partition (an ISO date)", field="first_day"),
    Variable("CERTPIPELINE_DUCKDB_MEMORY_LIMIT", DEFAULT_MEMORY_LIMIT,
             "DuckDB's memory for the working database; beyond it, it spills to `pipeline/spill`",
             field="duckdb_memory_limit"),
    Variable("CERTPIPELINE_RETENTION_DAYS", str(DEFAULT_RETENTION_DAYS),
             "days a report file is kept before it is deleted and its request `Expired` (a whole number, at least 1)",
             field="retention_days"),
    Variable("CERTPIPELINE_CATALOG", "`sqlite:<data dir>/warehouse/catalog.sqlite`",
             "the published lake's catalog, `sqlite:PATH` or `postgres:DSN` (no password in it: `~/.pgpass` or "
             "`PGPASSWORD`)", field="catalog"),
    Variable("CERTPIPELINE_LAKE_DATA_PATH", "`<data dir>/warehouse/data/`",
             "the published lake's Parquet files (a shared folder with a shared catalog)",
             field="lake_data_path"),
    Variable("CERTPIPELINE_SECRET_KEY", "unset",
             "the Fernet key sealing report passwords, e.g. from a secrets manager; wins over the key file"),
    Variable("CERTPIPELINE_SECRET_KEY_FILE", "`$XDG_CONFIG_HOME/certpipeline/secret.key` (`~/.config/...`)",
             "the key file, created 0600 on first use; never inside the data directory"),
)


def default_key_file(environ: Mapping[str, str] | None = None) -> Path:
    """``CERTPIPELINE_SECRET_KEY_FILE``, else under the user's configuration folder."""
    environ = os.environ if environ is None else environ
    explicit = environ.get("CERTPIPELINE_SECRET_KEY_FILE")
    if explicit:
        return Path(explicit).expanduser()
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "certpipeline" / "secret.key"


def secret_key(environ: Mapping[str, str] | None = None) -> str | None:
    """``CERTPIPELINE_SECRET_KEY``, or None when unset or empty."""
    return (os.environ if environ is None else environ).get(SECRET_KEY_VARIABLE) or None


def _retention_days(text: str | None) -> int:
    if not text:
        return DEFAULT_RETENTION_DAYS
    if not text.strip().isdigit() or int(text) < 1:
        raise SettingError(f"CERTPIPELINE_RETENTION_DAYS must be a whole number of days, at least 1, not {text!r}")
    return int(text)


def _memory_limit(text: str | None) -> str:
    if not text:
        return DEFAULT_MEMORY_LIMIT
    import duckdb

    try:  # DuckDB's own parser decides what it accepts
        duckdb.connect(config={"memory_limit": text}).close()
    except duckdb.Error:
        raise SettingError(f"CERTPIPELINE_DUCKDB_MEMORY_LIMIT must be a size like 1GB or 500MB, not {text!r}") from None
    return text


def _first_day(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SettingError(f"CERTPIPELINE_FIRST_DAY must be a date like 2026-01-31, not {text!r}") from None


# A libpq DSN's password keyword, or a URI's user:password@.
_DSN_PASSWORD = re.compile(r"(^|\s)password\s*=|://[^/@\s]*:[^/@\s]*@", re.IGNORECASE)


def _catalog(text: str | None) -> str:
    """The lake catalog, refused (without echoing it) when it is neither form
    or holds a password: ``warehouse-sql`` prints it for analysts and the
    Dagster UI shows the resource's configuration."""
    if not text:
        return ""
    if not text.startswith(("sqlite:", "postgres:")):
        raise SettingError("CERTPIPELINE_CATALOG must be sqlite:PATH or postgres:DSN")
    if _DSN_PASSWORD.search(text.removeprefix("postgres:")):
        raise SettingError("CERTPIPELINE_CATALOG must not hold a password (warehouse-sql prints it and the Dagster UI "
                           "shows it): put it in ~/.pgpass or PGPASSWORD")
    return text


@dataclass(frozen=True)
class Settings:
    """The values of ``VARIABLES`` (but the password key), defaults applied."""

    data_dir: Path
    dagster_home: Path
    first_day: dt.date | None = None
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    retention_days: int = DEFAULT_RETENTION_DAYS
    catalog: str = ""
    lake_data_path: str = ""
    # The fields whose variable was set (not empty): the Dagster resource
    # names those variables instead of copying their values.
    from_variables: frozenset[str] = frozenset()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        text = {variable.field: environ.get(variable.name) or "" for variable in VARIABLES if variable.field}
        data_dir = Path(text["data_dir"] or DEFAULT_DATA_DIR).resolve()
        return cls(
            data_dir=data_dir,
            dagster_home=Path(text["dagster_home"] or data_dir / "dagster_home"),
            first_day=_first_day(text["first_day"]),
            duckdb_memory_limit=_memory_limit(text["duckdb_memory_limit"]),
            retention_days=_retention_days(text["retention_days"]),
            catalog=_catalog(text["catalog"]),
            lake_data_path=text["lake_data_path"],
            from_variables=frozenset(field for field, value in text.items() if value),
        )
