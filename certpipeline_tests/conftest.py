"""Shared fixtures: hand-written landing files, and running the real Dagster
definitions in process against a temporary data directory."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

# Tests land days of their own choosing in temporary folders, not in the
# repository's data/; partitions start early enough for all of them.
os.environ.setdefault("CERTPIPELINE_FIRST_DAY", "2024-01-01")

from certpipeline import lake  # noqa: E402
from certpipeline.definitions import defs  # noqa: E402  after the partition start is set
from certpipeline.defs.resources import WarehouseResource
from certpipeline.reports import snapshots

NIGHTLY = dg.AssetSelection.groups("ingestion", "reports", "publication")


class Landing:
    """Writes landing files line by line, the way an LMS export would."""

    def __init__(self, root: Path):
        self.root = root
        self._ids = itertools.count(1)

    def folder(self, day: dt.date | str) -> Path:
        folder = self.root / "landing" / "events" / f"date={_iso(day)}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def line(self, day, text: str, file: str = "part-00000.jsonl") -> None:
        with open(self.folder(day) / file, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")

    def event(self, day, event_type: str, payload: dict, occurred_at: str | None = None,
              event_id: str | None = None, file: str = "part-00000.jsonl") -> str:
        event_id = event_id or f"e-{next(self._ids)}"
        occurred_at = occurred_at or f"{_iso(day)}T12:00:00Z"
        record = {"event_id": event_id, "event_type": event_type, "occurred_at": occurred_at, "payload": payload}
        self.line(day, json.dumps(record), file)
        return event_id

    # Entity helpers with sensible defaults; keyword arguments override.
    def user(self, day, user_id, file="part-00000.jsonl", **fields):
        payload = {"user_id": user_id, "name": f"Name {user_id}", "email": f"{user_id}@example.com",
                   "registered_at": "2025-01-15T00:00:00Z", "custom_fields": {}}
        return self.event(day, "user.upserted", {**payload, **fields}, file=file)

    def group(self, day, group_id, parent=None, name=None):
        return self.event(day, "group.upserted", {"group_id": group_id, "name": name or f"Group {group_id}",
                                                  "parent_group_id": parent})

    def member(self, day, group_id, user_id, role="learner"):
        return self.event(day, "group_member.added", {"group_id": group_id, "user_id": user_id, "role": role})

    def course(self, day, course_id, **fields):
        payload = {"course_id": course_id, "name": f"Course {course_id}", "created_by": None,
                   "authors": [], "instructors": []}
        return self.event(day, "course.upserted", {**payload, **fields})

    def session(self, day, session_id, course_id, certificate_id=None, **fields):
        payload = {"session_id": session_id, "course_id": course_id, "name": f"Session {session_id}",
                   "start_date": "2026-01-01", "end_date": "2026-12-31", "status": "ongoing",
                   "certificate_id": certificate_id, "auto_reenrollment": False, "created_by": None, "mentors": []}
        return self.event(day, "session.upserted", {**payload, **fields})

    def certificate(self, day, certificate_id, validity_months=12, certificate_type="verified", owner_group_id=None,
                    title=None):
        return self.event(day, "certificate.upserted", {
            "certificate_id": certificate_id, "title": title or f"Certificate {certificate_id}",
            "certificate_type": certificate_type, "owner_group_id": owner_group_id,
            "validity_months": validity_months})

    def enroll(self, day, enrollment_id, user_id, session_id, enrolled_at=None, auto_reenrolled=False):
        return self.event(day, "enrollment.created", {
            "enrollment_id": enrollment_id, "user_id": user_id, "session_id": session_id,
            "enrolled_at": enrolled_at or f"{_iso(day)}T09:00:00Z", "auto_reenrolled": auto_reenrolled})

    def progress(self, day, enrollment_id, status="in_progress", progress_percent=50, completed_at=None):
        return self.event(day, "enrollment.progressed", {
            "enrollment_id": enrollment_id, "status": status, "progress_percent": progress_percent,
            "completed_at": completed_at})

    def award(self, day, award_id, user_id, certificate_id, issued_at, enrollment_id=None, course_id=None):
        return self.event(day, "certificate.issued", {
            "award_id": award_id, "user_id": user_id, "certificate_id": certificate_id, "issued_at": issued_at,
            "enrollment_id": enrollment_id, "course_id": course_id})


def _iso(day) -> str:
    return day if isinstance(day, str) else day.isoformat()


@pytest.fixture(scope="session", autouse=True)
def secret_key_file(tmp_path_factory) -> Iterator[Path]:
    """The password key of the tests (and the CLI they start): in a folder of
    its own, never the home directory of whoever runs them."""
    path = tmp_path_factory.mktemp("config") / "certpipeline" / "secret.key"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CERTPIPELINE_SECRET_KEY_FILE", str(path))
        yield path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def landing(data_dir) -> Landing:
    return Landing(data_dir)


@pytest.fixture
def warehouse(data_dir) -> WarehouseResource:
    return WarehouseResource(data_dir=str(data_dir))


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def run_nightly(warehouse: WarehouseResource, day, instance=None) -> dg.ExecuteInProcessResult:
    """Materialize one day of the nightly assets from the production definitions."""
    return dg.materialize(
        list(defs.assets), selection=NIGHTLY, partition_key=_iso(day), resources={"warehouse": warehouse},
        instance=instance,
    )


def query(warehouse: WarehouseResource, sql: str, params=None) -> list[tuple]:
    """Rows from the working database, its report snapshots as ``reports.<table>``."""
    with warehouse.work() as con:
        snapshots.attach_views(con)
        return con.execute(sql, params or []).fetchall()


def published(warehouse: WarehouseResource, sql: str, params=None) -> list[tuple]:
    """Rows from the published lake, opened read-only the way an analyst would."""
    with lake.reader(warehouse.lake) as con:
        return con.execute(sql, params or []).fetchall()


def contents(con, database: str, skip_columns=frozenset()) -> dict[str, list[tuple]]:
    """Every row of every table and view of ``database`` (but its ``publication``
    bookkeeping), sorted, without the columns in ``skip_columns``."""
    objects = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = $1 "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = $1 AND NOT internal "
        "ORDER BY ALL", [database]).fetchall()
    rows = {}
    for schema, table in objects:
        if schema == "publication":
            continue
        columns = [c for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = ? AND table_name = ? "
            "ORDER BY column_index", [database, schema, table]).fetchall() if c not in skip_columns]
        column_list = ", ".join(f'"{c}"' for c in columns)
        rows[f"{schema}.{table}"] = con.sql(
            f'SELECT {column_list} FROM "{database}"."{schema}"."{table}" ORDER BY ALL').fetchall()
    return rows


def admin_and_largest_batch(data_dir: Path) -> tuple[str, str]:
    """An active platform admin and the largest batch of the warehouse published from ``data_dir`` (generated data)."""
    with lake.reader(lake.LakeSettings.under(data_dir)) as con:
        return con.sql(
            "SELECT (SELECT user_id FROM state.users WHERE platform_role = 'admin' AND status = 'active' "
            "ORDER BY 1 LIMIT 1), (SELECT batch_id FROM reports.course_batch_dashboard "
            "ORDER BY total_enrollment DESC, batch_id LIMIT 1)"
        ).fetchall()[0]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory) -> Iterator[str]:
    """Admin DSN of a real PostgreSQL server on 127.0.0.1 (see postgres_server.py)."""
    from certpipeline_tests.postgres_server import postgres_admin_dsn

    with postgres_admin_dsn(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture
def postgres_database(postgres_server) -> str:
    """DSN of a fresh, empty database on that server."""
    from certpipeline_tests.postgres_server import create_database

    return create_database(postgres_server)
