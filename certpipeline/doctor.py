"""``certpipeline doctor``: checks every store and says, for each problem, what to do.

Each check opens a store the way the pipeline would (read-only, under the
store's lock so it never races a run) and returns one finding: ok, or the
problem and the one command or step that fixes it. Recovery rules:

- the working store (``pipeline/work.duckdb``) is derived from the landing
  files alone: deleting it and re-running every landing day rebuilds the
  same warehouse;
- the published warehouse (a DuckLake) is derived from the working store:
  moved aside, the next ``run`` publishes everything again into a new lake;
- the request queue is the only record of waiting requests: moved aside, the
  requests it held must be filed again (ended ones stay in the warehouse's
  ``ops.report_requests``);
- Dagster's home holds run history only: moved aside, history is lost, the
  data is not.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
from cryptography.fernet import Fernet

from certpipeline import lake, work_schema
from certpipeline.error_text import one_line
from certpipeline.password_vault import PasswordVault
from certpipeline.settings import SECRET_KEY_VARIABLE, secret_key
from certpipeline.warehouse import (
    PRIVATE_DIRECTORY_MODE,
    PRIVATE_FILE_MODE,
    DataPaths,
    WarehouseBusy,
    exclusive_lock,
)

LOCK_WAIT_SECONDS = 5.0


@dataclass(frozen=True)
class Finding:
    store: str
    path: Path | None
    problem: str | None = None  # None: healthy
    action: str | None = None  # what to do about the problem

    @property
    def ok(self) -> bool:
        return self.problem is None

    def line(self) -> str:
        where = f" {self.path}" if self.path else ""
        if self.ok:
            return f"ok       {self.store}{where}"
        return f"PROBLEM  {self.store}{where}: {self.problem}; {self.action}"


def _mode_problem(store: str, path: Path, mode: int) -> Finding | None:
    info = path.stat()
    if stat.S_IMODE(info.st_mode) != mode or info.st_uid != os.getuid():
        return Finding(store, path, f"mode {stat.S_IMODE(info.st_mode):04o} owned by uid {info.st_uid}, "
                       f"should be {mode:04o} owned by uid {os.getuid()}",
                       f"run `chown {os.getuid()} {path} && chmod {mode:o} {path}`")
    return None


def _landing_days(paths: DataPaths) -> list[str]:
    if not paths.landing.is_dir():
        return []
    return sorted(p.name.removeprefix("date=") for p in paths.landing.glob("date=*") if p.is_dir())


def _rerun_command(paths: DataPaths) -> str:
    days = _landing_days(paths)
    if not days:
        return "`certpipeline run` for every landing day"
    return f"`certpipeline run --from {days[0]} --to {days[-1]}`"


SchemaCheck = Callable[[duckdb.DuckDBPyConnection], object]


def _open_problem(path: Path, lock: Path | None, probe: str, schema_check: SchemaCheck | None) -> str | None:
    """Why the database cannot be opened and probed, or None. ``schema_check``
    raises WorkSchemaMismatch for a schema this version would refuse."""
    try:
        with exclusive_lock(lock, LOCK_WAIT_SECONDS) if lock else contextlib.nullcontext():
            con = duckdb.connect(str(path), read_only=True)
            try:
                con.execute(probe).fetchall()
                if schema_check:
                    schema_check(con)
            finally:
                con.close()
    except WarehouseBusy:
        return None  # a run holds it; it opened for that run
    except duckdb.Error as error:
        return f"cannot be opened ({one_line(error, 200)})"
    except work_schema.WorkSchemaMismatch as refusal:
        return f"{refusal.problem}, which this version cannot migrate"
    return None


def check_data_directory(paths: DataPaths) -> Finding:
    if not paths.root.is_dir():
        return Finding("data directory", paths.root, "does not exist",
                       "run `certpipeline generate` or drop landing files under landing/events/, then `certpipeline run`")
    return _mode_problem("data directory", paths.root, PRIVATE_DIRECTORY_MODE) or Finding("data directory", paths.root)


def check_database(store: str, path: Path, lock: Path | None, probe: str, remedy: str, missing: str,
                   schema_check: SchemaCheck | None = None) -> Finding:
    if not path.exists():
        return Finding(store, path, "does not exist", missing) if missing else Finding(store, path)
    problem = _open_problem(path, lock, probe, schema_check)
    if problem:
        return Finding(store, path, problem, remedy)
    return _mode_problem(store, path, PRIVATE_FILE_MODE) or Finding(store, path)


def check_lake(paths: DataPaths, settings: lake.LakeSettings) -> Finding:
    """The published lake opens read-only the way analysts open it, and its
    local catalog is its owner's only."""
    store, last_day = "published warehouse", (_landing_days(paths) or ["<last landing day>"])[-1]
    where = settings.sqlite_file or Path(settings.catalog)
    if not settings.exists():
        missing = "run `certpipeline run` for a landing day to publish it"
        return Finding(store, where, "does not exist", missing) if paths.work_db.exists() else Finding(store, where)
    try:
        with lake.reader(settings) as con:
            con.execute("SELECT count(*) FROM reports.course_batch_dashboard").fetchall()
    except duckdb.Error as error:
        aside = (f"move the lake aside (`mv {paths.warehouse} {paths.warehouse}.broken`)" if settings.sqlite_file
                 else "drop or rename the catalog database")
        return Finding(store, where, f"cannot be opened ({one_line(error, 200)})",
                       f"{aside} and publish it again: `certpipeline run --date {last_day}` (a new lake gets everything)")
    if settings.sqlite_file:
        return _mode_problem(store, settings.sqlite_file, PRIVATE_FILE_MODE) or Finding(store, where)
    return Finding(store, where)


def check_stores(paths: DataPaths, settings: lake.LakeSettings) -> list[Finding]:
    work_wal = paths.work_db.with_name(paths.work_db.name + ".wal")
    return [
        check_database(
            "work database", paths.work_db, paths.pipeline / "work.lock", "SELECT count(*) FROM raw.landing_files",
            f"delete it (`rm -f {paths.work_db} {work_wal}`) and re-run every landing day: {_rerun_command(paths)}",
            "", work_schema.missing_columns,
        ),
        check_database(
            "request queue", paths.requests_db, paths.pipeline / "requests.lock",
            "SELECT count(*) FROM ops.report_requests",
            f"move it aside (`mv {paths.requests_db} {paths.requests_db}.broken`); requests still waiting in it "
            "must be filed again (ended ones stay in the warehouse's ops.report_requests)",
            "",
        ),
        check_lake(paths, settings),
    ]


def check_secret_key(vault: PasswordVault, paths: DataPaths) -> Finding:
    legacy = paths.pipeline / "secret.key"
    if legacy.exists():
        return Finding("secret key", legacy, "a key in the data directory, beside the passwords it opens",
                       f"move it out: `mv {legacy} {vault.key_file}` (the pipeline also does on its next request)")
    key = secret_key()
    if key:
        try:
            Fernet(key)
        except ValueError:
            return Finding("secret key", None, f"{SECRET_KEY_VARIABLE} is not a Fernet key",
                           "set it to a key from `python -c 'from cryptography.fernet import Fernet; "
                           "print(Fernet.generate_key().decode())'` (waiting passwords sealed with the old one fail)")
        return Finding("secret key", None)
    path = vault.key_file
    if not path.exists():
        return Finding("secret key", path)  # created on the first password
    mode = _mode_problem("secret key", path, PRIVATE_FILE_MODE)
    if mode:
        return mode
    try:
        Fernet(path.read_bytes().strip())
    except (ValueError, OSError) as error:
        return Finding("secret key", path, f"not a readable Fernet key ({type(error).__name__})",
                       "restore it from its backup; without it, requests waiting with a password fail and must "
                       "be filed again")
    return Finding("secret key", path)


def check_dagster_home(home: Path) -> Finding:
    if not home.exists():
        return Finding("Dagster home", home)  # created on the next run
    if not home.is_dir():
        return Finding("Dagster home", home, "is not a folder",
                       f"move it aside (`mv {home} {home}.broken`); the next run creates it again")
    mode = _mode_problem("Dagster home", home, PRIVATE_DIRECTORY_MODE)
    if mode:
        return mode
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    try:
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            instance.get_runs(limit=1)
    except Exception as error:  # noqa: BLE001 - any failure to open run storage is the finding
        return Finding("Dagster home", home, f"its run storage cannot be opened ({type(error).__name__})",
                       f"move it aside (`mv {home} {home}.broken`): run history is lost, the data is not")
    return Finding("Dagster home", home)


def diagnose(paths: DataPaths, settings: lake.LakeSettings, vault: PasswordVault, dagster_home: Path) -> list[Finding]:
    findings = [check_data_directory(paths)]
    if paths.root.is_dir():
        findings += check_stores(paths, settings)
    return findings + [check_secret_key(vault, paths), check_dagster_home(dagster_home)]
