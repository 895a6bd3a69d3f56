"""Ingestion of landing days into raw.events, raw.rejected_events and the entity history."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import shutil

import pytest

from certpipeline import ingestion, landing_files, state
from certpipeline.defs.resources import WarehouseResource
from certpipeline.generate import generate_landing
from certpipeline.state import load_state
from certpipeline_tests.conftest import query, run_nightly

D1, D2, D3 = "2026-11-20", "2026-11-21", "2026-11-22"

# The report and state tables a re-run must leave exactly as they were.
COMPARED_TABLES = [
    "raw.events", "raw.rejected_events", "state.user_history", "state.enrollment_history",
    "state.award_history", "reports.path_certificate_learners", "reports.certificate_type_totals",
    "reports.course_batch_dashboard",
]


def _snapshot(warehouse) -> dict[str, list[tuple]]:
    return {
        table: query(warehouse, f"SELECT * EXCLUDE (ingested_at) FROM {table} ORDER BY ALL")
        if table == "raw.landing_files"
        else query(warehouse, f"SELECT * FROM {table} ORDER BY ALL")
        for table in COMPARED_TABLES
    }


def _accounts(warehouse, day):
    return query(
        warehouse,
        "SELECT file, lines_read FROM raw.landing_files WHERE landing_date = ? ORDER BY file",
        [dt.date.fromisoformat(day)],
    )


def test_duplicate_event_ids_count_once_across_days_and_files(landing, warehouse, instance):
    landing.user(D1, "u1", name="First")
    landing.event(D1, "user.upserted", {"user_id": "u2", "name": "B", "email": "b@x", "registered_at": "2025-01-01"},
                  event_id="dup-1")
    landing.event(D1, "user.upserted", {"user_id": "u2", "name": "B", "email": "b@x", "registered_at": "2025-01-01"},
                  event_id="dup-1", file="part-00001.jsonl")
    landing.event(D2, "user.upserted", {"user_id": "u2", "name": "B", "email": "b@x", "registered_at": "2025-01-01"},
                  event_id="dup-1")
    assert run_nightly(warehouse, D1, instance).success
    assert run_nightly(warehouse, D2, instance).success

    copies = query(warehouse, "SELECT landing_date::VARCHAR, file, line_number, is_duplicate FROM raw.events "
                              "WHERE event_id = 'dup-1' ORDER BY ALL")
    assert copies == [
        (D1, f"date={D1}/part-00000.jsonl", 2, False),
        (D1, f"date={D1}/part-00001.jsonl", 1, True),
        (D2, f"date={D2}/part-00000.jsonl", 1, True),
    ]
    assert query(warehouse, "SELECT count(*) FROM state.user_history WHERE user_id = 'u2'") == [(1,)]
    with warehouse.work() as con:
        accounts = ingestion.file_accounts(con, dt.date.fromisoformat(D2))
    assert [(a.lines_read, a.accepted, a.duplicates, a.rejected) for a in accounts] == [(1, 0, 1, 0)]


def test_the_earliest_copy_wins_whatever_order_days_are_ingested(landing, warehouse, instance):
    landing.event(D2, "user.upserted", {"user_id": "u1", "name": "Later copy", "email": "a@x",
                                        "registered_at": "2025-01-01"}, event_id="same", occurred_at=f"{D1}T08:00:00Z")
    landing.event(D1, "user.upserted", {"user_id": "u1", "name": "Earlier copy", "email": "a@x",
                                        "registered_at": "2025-01-01"}, event_id="same", occurred_at=f"{D1}T08:00:00Z")
    assert run_nightly(warehouse, D2, instance).success  # out of order, as a backfill may
    assert query(warehouse, "SELECT name FROM state.user_history") == [("Later copy",)]
    assert run_nightly(warehouse, D1, instance).success
    assert query(warehouse, "SELECT landing_date::VARCHAR, is_duplicate FROM raw.events ORDER BY 1") == [
        (D1, False), (D2, True)]
    assert query(warehouse, "SELECT name FROM state.user_history") == [("Earlier copy",)]


def test_late_arriving_upsert_lands_in_its_place(landing, warehouse, instance):
    landing.user(D1, "u1", name="Original")
    landing.event(D3, "user.upserted", {"user_id": "u1", "name": "Renamed on day 2", "email": "u1@example.com",
                                        "registered_at": "2025-01-15T00:00:00Z"}, occurred_at=f"{D2}T10:00:00Z")
    # Delivered on day 3 but occurred before the upsert that day 3 also holds.
    landing.event(D3, "user.upserted", {"user_id": "u1", "name": "Renamed on day 3", "email": "u1@example.com",
                                        "registered_at": "2025-01-15T00:00:00Z"}, occurred_at=f"{D3}T10:00:00Z")
    landing.event(D3, "user.upserted", {"user_id": "u1", "name": "Stale, occurred on day 1", "email": "u1@example.com",
                                        "registered_at": "2025-01-15T00:00:00Z"}, occurred_at=f"{D1}T13:00:00Z")
    for day in (D1, D3):
        landing.folder(day)
    landing.folder(D2)
    for day in (D1, D2, D3):
        assert run_nightly(warehouse, day, instance).success
    with warehouse.work() as con:
        names = {day: load_state(con, dt.date.fromisoformat(day)).users["name"].to_list() for day in (D1, D2, D3)}
    assert names == {D1: ["Stale, occurred on day 1"], D2: ["Renamed on day 2"], D3: ["Renamed on day 3"]}
    assert query(warehouse, "SELECT name FROM state.users") == [("Renamed on day 3",)]


def test_rerunning_a_day_leaves_the_same_warehouse(landing, warehouse, instance):
    landing.user(D1, "u1")
    landing.course(D1, "c1")
    landing.certificate(D1, "k1")
    landing.session(D1, "s1", "c1", "k1")
    landing.enroll(D1, "n1", "u1", "s1")
    landing.award(D1, "a1", "u1", "k1", f"{D1}T10:00:00Z", enrollment_id="n1")
    landing.line(D1, "not json")
    landing.user(D2, "u2")
    landing.enroll(D2, "n2", "u2", "s1")
    for day in (D1, D2):
        assert run_nightly(warehouse, day, instance).success
    before = _snapshot(warehouse)
    assert run_nightly(warehouse, D1, instance).success
    assert run_nightly(warehouse, D2, instance).success
    assert _snapshot(warehouse) == before
    assert query(warehouse, "SELECT count(*) FROM raw.events") == [(8,)]
    assert query(warehouse, "SELECT count(*) FROM raw.history_refresh_queue") == [(0,)]


GOOD_USER = {"user_id": "u1", "name": "A", "email": "a@x", "registered_at": "2025-01-01T00:00:00Z"}
REJECTIONS = [
    ('{"event_id": "x", "event_type": "user.upserted"', "not valid JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ("   ", "empty line"),
    (json.dumps({"event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z", "payload": GOOD_USER}),
     "event_id is required"),
    (json.dumps({"event_id": 7, "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": GOOD_USER}), "event_id must be a non-empty string"),
    (json.dumps({"event_id": "x", "occurred_at": "2026-11-20T00:00:00Z", "payload": GOOD_USER}),
     "event_type is required"),
    (json.dumps({"event_id": "x", "event_type": "badge.awarded", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {}}), "unknown event_type: badge.awarded"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "payload": GOOD_USER}), "occurred_at is required"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "yesterday", "payload": GOOD_USER}),
     "occurred_at must be an ISO-8601 timestamp"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2400-01-01T00:00:00Z",
                 "payload": GOOD_USER}), "occurred_at must be between 1970-01-01 and 2100-01-01"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z"}),
     "payload is required"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": "u1"}), "payload must be a JSON object"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {**GOOD_USER, "email": None}}), "payload.email is required"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {**GOOD_USER, "name": 12}}), "payload.name must be a string"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {**GOOD_USER, "platform_role": "root"}}), "payload.platform_role must be one of: admin"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {**GOOD_USER, "custom_fields": {"k": 1}}}),
     "payload.custom_fields must be an object of string values"),
    (json.dumps({"event_id": "x", "event_type": "user.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {**GOOD_USER, "registered_at": "soon"}}),
     "payload.registered_at must be an ISO-8601 timestamp"),
    (json.dumps({"event_id": "x", "event_type": "course.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"course_id": "c", "name": "n", "authors": ["a", 1]}}),
     "payload.authors must be a list of strings"),
    (json.dumps({"event_id": "x", "event_type": "session.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"session_id": "s", "course_id": "c", "name": "n", "auto_reenrollment": "yes"}}),
     "payload.auto_reenrollment must be true or false"),
    (json.dumps({"event_id": "x", "event_type": "session.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"session_id": "s", "course_id": "c", "name": "n", "status": "paused"}}),
     "payload.status must be one of: not_started, ongoing, ended, archived"),
    (json.dumps({"event_id": "x", "event_type": "certificate.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"certificate_id": "k", "title": "t", "validity_months": 0}}),
     "payload.validity_months must be >= 1"),
    (json.dumps({"event_id": "x", "event_type": "certificate.upserted", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"certificate_id": "k", "title": "t", "validity_months": 1.5}}),
     "payload.validity_months must be an integer"),
    (json.dumps({"event_id": "x", "event_type": "enrollment.progressed", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"enrollment_id": "n", "status": "completed", "progress_percent": 101}}),
     "payload.progress_percent must be <= 100"),
    (json.dumps({"event_id": "x", "event_type": "enrollment.progressed", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"enrollment_id": "n", "status": "completed", "progress_percent": "50"}}),
     "payload.progress_percent must be a number"),
    (json.dumps({"event_id": "x", "event_type": "group_member.added", "occurred_at": "2026-11-20T00:00:00Z",
                 "payload": {"group_id": "g", "user_id": "u", "role": "owner"}}),
     "payload.role must be one of: learner, coach, admin"),
]


@pytest.mark.parametrize(("line", "reason"), REJECTIONS, ids=[reason for _, reason in REJECTIONS])
def test_each_rejection_keeps_the_line_and_its_reason(landing, warehouse, instance, line, reason):
    landing.user(D1, "good")
    landing.line(D1, line)
    assert run_nightly(warehouse, D1, instance).success
    assert query(warehouse, "SELECT file, line_number, raw_line, reason FROM raw.rejected_events") == [
        (f"date={D1}/part-00000.jsonl", 2, line, reason)
    ]
    assert query(warehouse, "SELECT event_id FROM raw.events") == [("e-1",)]


def test_invalid_utf8_and_unreadable_gzip_are_rejected_not_fatal(landing, warehouse, instance):
    landing.user(D1, "u1")
    with open(landing.folder(D1) / "part-00000.jsonl", "ab") as handle:
        handle.write(b'{"event_id": "\xff\xfe"}\n')
    (landing.folder(D1) / "part-00001.jsonl.gz").write_bytes(b"this is not gzip")
    good = gzip.compress(json.dumps({"event_id": "z1", "event_type": "user.deleted",
                                     "occurred_at": f"{D1}T18:00:00Z", "payload": {"user_id": "u1"}}).encode() + b"\n")
    (landing.folder(D1) / "part-00002.jsonl.gz").write_bytes(good)
    assert run_nightly(warehouse, D1, instance).success
    rejected = query(warehouse, "SELECT file, line_number, reason FROM raw.rejected_events ORDER BY file")
    assert rejected[0] == (f"date={D1}/part-00000.jsonl", 2, "line is not valid UTF-8")
    assert rejected[1][:2] == (f"date={D1}/part-00001.jsonl.gz", None)
    assert rejected[1][2].startswith("file is not readable: BadGzipFile")
    assert query(warehouse, "SELECT status FROM state.users") == [("deleted",)]


def test_lines_read_equal_accepted_plus_duplicates_plus_rejected_per_file(landing, warehouse, instance):
    for number in range(5):
        landing.user(D1, f"u{number}")
    landing.event(D1, "user.deleted", {"user_id": "u1"}, event_id="e-1")  # same id as the first upsert
    landing.line(D1, "{broken")
    landing.user(D1, "u9", file="part-00001.jsonl")
    landing.line(D1, '{"event_id": "q"}', file="part-00001.jsonl")
    assert run_nightly(warehouse, D1, instance).success
    with warehouse.work() as con:
        accounts = ingestion.file_accounts(con, dt.date.fromisoformat(D1))
    assert [(a.file, a.lines_read, a.accepted, a.duplicates, a.rejected) for a in accounts] == [
        (f"date={D1}/part-00000.jsonl", 7, 5, 1, 1),
        (f"date={D1}/part-00001.jsonl", 2, 1, 0, 1),
    ]
    for account in accounts:
        assert account.lines_read == account.accepted + account.duplicates + account.rejected


def test_materialization_reports_the_accounting_in_metadata(landing, warehouse, instance):
    landing.user(D1, "u1")
    landing.line(D1, "oops")
    result = run_nightly(warehouse, D1, instance)
    raw = next(m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == "raw_events")
    metadata = raw.materialization.metadata
    assert (metadata["lines_read"].value, metadata["accepted"].value, metadata["rejected"].value) == (2, 1, 1)
    assert [record.data["file"] for record in metadata["preview"].records] == [
        "date=2026-11-20/part-00000.jsonl"]


def test_a_missing_landing_day_fails_with_a_clear_error(warehouse, instance):
    result = run_nightly_allowing_failure(warehouse, D1, instance)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    # A dg.Failure: the UI shows its one-line description, not a traceback
    # from inside the ingestion code.
    description = failure.step_failure_data.user_failure_data.description
    assert description == f"no landing folder for {D1} (expected {warehouse.paths.landing_day(dt.date.fromisoformat(D1))})"
    assert failure.step_failure_data.error.cause is None


def run_nightly_allowing_failure(warehouse, day, instance):
    import dagster as dg

    from certpipeline.definitions import defs
    from certpipeline_tests.conftest import NIGHTLY

    return dg.materialize(list(defs.assets), selection=NIGHTLY, partition_key=day,
                          resources={"warehouse": warehouse}, instance=instance, raise_on_error=False)


def test_unresolved_references_are_reported_by_an_asset_check(landing, warehouse, instance):
    landing.user(D1, "u1")
    landing.enroll(D1, "n1", "u1", "no-such-session")
    result = run_nightly(warehouse, D1, instance)
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "references_resolve")
    assert not check.passed
    assert check.metadata["unresolved_references"].value == 1
    assert "enrollments.session_id" in str(check.metadata["preview"].records)


def test_unresolved_references_are_counted_per_reference_with_examples(landing, warehouse, instance):
    landing.user(D1, "u1")
    landing.course(D1, "c1")
    landing.session(D1, "s1", "c1")
    landing.certificate(D1, "cert1")
    # Users are referred to from enrollments, awards and memberships: each
    # reference is counted on its own row, its examples in order.
    landing.enroll(D1, "n1", "u1", "s1")
    landing.enroll(D1, "n2", "u9", "s1")
    landing.enroll(D1, "n3", "u8", "s-gone")
    landing.enroll(D1, "n4", "u9", "s1")
    landing.award(D1, "a1", "u7", "cert1", "2026-11-20T10:00:00Z", enrollment_id="n1")
    landing.award(D1, "a2", "u1", "cert-gone", "2026-11-20T10:00:00Z", enrollment_id="n-gone", course_id="c1")
    landing.group(D1, "g1")
    landing.member(D1, "g1", "u1")
    landing.member(D1, "g-gone", "u1")
    run_nightly(warehouse, D1, instance)
    with warehouse.work() as con:
        problems = state.referential_problems(con)
    assert problems.rows() == [
        ("awards.certificate_id", "certificates", 1, ["cert-gone"]),
        ("awards.enrollment_id", "enrollments", 1, ["n-gone"]),
        ("awards.user_id", "users", 1, ["u7"]),
        ("enrollments.session_id", "sessions", 1, ["s-gone"]),
        ("enrollments.user_id", "users", 3, ["u8", "u9"]),
        ("group_members.group_id", "groups", 1, ["g-gone"]),
    ]


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"", []),
        (b"a\nb\n", [b"a", b"b"]),
        (b"a\nb", [b"a", b"b"]),
        (b"a\r\nb\r\n", [b"a", b"b"]),
        (b"a\rb\r\n\n", [b"a\rb", b""]),
        (b"\n", [b""]),
    ],
)
def test_split_lines(data, lines):
    assert landing_files.split_lines(data).to_pylist() == lines


def test_an_entity_known_only_by_its_deletion_keeps_its_id(landing, warehouse, instance):
    landing.event(D1, "user.deleted", {"user_id": "ghost"})
    landing.event(D1, "session.deleted", {"session_id": "gone"})
    assert run_nightly(warehouse, D1, instance).success
    assert query(warehouse, "SELECT user_id, name, status FROM state.users") == [("ghost", None, "deleted")]
    assert query(warehouse, "SELECT session_id, course_id, is_deleted FROM state.sessions") == [("gone", None, True)]


def test_history_refresh_reads_the_days_of_the_copies_or_every_day_when_unknown(landing, warehouse, instance):
    upsert = {"user_id": "u2", "name": "B", "email": "b@x", "registered_at": "2025-01-01"}
    landing.user(D1, "u1", name="First")
    landing.event(D1, "user.upserted", upsert, event_id="dup-1")
    landing.event(D2, "user.upserted", upsert, event_id="dup-1")
    landing.user(D2, "u3")
    for day in (D1, D2):
        assert run_nightly(warehouse, day, instance).success
    with warehouse.work() as con:
        ingestion.ingest_day(con, warehouse.paths, dt.date.fromisoformat(D2))
        queued = con.execute("SELECT event_id = 'dup-1', landing_date::VARCHAR FROM raw.history_refresh_queue "
                             "ORDER BY ALL").fetchall()
        # Every day holding a copy: dup-1's are on D1 and D2, the other event's on D2.
        assert queued == [(False, D2), (True, D1), (True, D2)]
        state.refresh_history(con)
        # A queue row without a day (an older version's) makes the refresh read every day.
        con.execute("DELETE FROM state.user_history WHERE user_id = 'u1'")
        con.execute("INSERT INTO raw.history_refresh_queue SELECT event_id, NULL FROM raw.events "
                    "WHERE event_id <> 'dup-1' AND landing_date = ?", [dt.date.fromisoformat(D1)])
        state.refresh_history(con)
        assert con.execute("SELECT user_id, name, landing_date::VARCHAR FROM state.user_history "
                           "ORDER BY ALL").fetchall() == [("u1", "First", D1), ("u2", "B", D1), ("u3", "Name u3", D2)]
        assert con.execute("SELECT count(*) FROM raw.history_refresh_queue").fetchone() == (0,)


def test_a_file_longer_than_a_validation_chunk_keeps_every_line_in_its_place(landing, warehouse):
    # The validation SQL reads a batch of lines in chunks, one per thread: a
    # line's number, event and reason must not move across chunk boundaries.
    lines = 2 * ingestion.VALIDATION_CHUNK_ROWS + 5
    bad = {1, ingestion.VALIDATION_CHUNK_ROWS, ingestion.VALIDATION_CHUNK_ROWS + 1, lines}
    text = "".join(
        "{broken " + str(number) + "\n" if number in bad else
        json.dumps({"event_id": f"line-{number}", "event_type": "user.deleted", "occurred_at": f"{D1}T12:00:00Z",
                    "payload": {"user_id": f"u{number}"}}) + "\n"
        for number in range(1, lines + 1)
    )
    landing.folder(D1).mkdir(parents=True, exist_ok=True)
    (landing.folder(D1) / "part-00000.jsonl").write_text(text)
    with warehouse.work() as con:
        [account] = ingestion.ingest_day(con, warehouse.paths, dt.date.fromisoformat(D1))
        assert (account.lines_read, account.accepted, account.rejected) == (lines, lines - 4, 4)
        assert con.execute(
            "SELECT count(*), count(*) FILTER (event_id = 'line-' || line_number "
            "AND (payload->>'user_id') = 'u' || line_number) FROM raw.events").fetchone() == (lines - 4, lines - 4)
        assert con.execute("SELECT line_number, raw_line, reason FROM raw.rejected_events ORDER BY 1").fetchall() == [
            (number, "{broken " + str(number), "not valid JSON") for number in sorted(bad)]


@pytest.mark.slow
def test_a_refresh_gives_the_same_history_whether_it_derives_whole_days_or_probes_the_queued_ids(tmp_path, monkeypatch):
    """A refresh whose queued events are most of their days' derives those
    days' history whole; otherwise it probes each table for the queued ids.
    Both give the history one refresh of the final files gives, also when
    counted copies move between days (a day ingested out of order, then
    again without its copies)."""
    source = tmp_path / "source"
    generate_landing(source, learners=300, days=4, seed=9, end_date=dt.date(2026, 11, 20))
    days = sorted(dt.date.fromisoformat(path.name.removeprefix("date=")) for path in (source / "landing" / "events").iterdir())
    second = source / "landing" / "events" / f"date={days[1]}" / "part-00000.jsonl"
    original = second.read_bytes()
    last_lines = (source / "landing" / "events" / f"date={days[3]}" / "part-00000.jsonl").read_bytes().splitlines()
    with_copies = original + b"\n".join(last_lines[:60]) + b"\n"

    def histories(con) -> dict[str, list[tuple]]:
        return {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in state.HISTORY_TABLES.values()}

    def ingest(con, warehouse, day):
        ingestion.ingest_day(con, warehouse.paths, day)
        state.refresh_history(con)

    results = {}
    for whole_days in (True, False):
        monkeypatch.setattr(state, "_mostly_queued", lambda con, on_days, whole_days=whole_days: whole_days)
        data_dir = tmp_path / f"whole_days_{whole_days}"
        shutil.copytree(source / "landing", data_dir / "landing")
        landing_second = data_dir / "landing" / "events" / f"date={days[1]}" / "part-00000.jsonl"
        landing_second.write_bytes(with_copies)
        warehouse = WarehouseResource(data_dir=str(data_dir))
        with warehouse.work() as con:
            for day in (days[0], days[3], days[2], days[1]):  # the second day's copies take over the last day's
                ingest(con, warehouse, day)
            moved = con.execute("SELECT count(*) FROM state.user_history WHERE landing_date = ? AND event_id IN "
                                "(SELECT event_id FROM raw.events WHERE landing_date = ?)", [days[1], days[3]]).fetchone()
            intermediate = histories(con)
            landing_second.write_bytes(original)
            ingest(con, warehouse, days[1])  # and give them back
            results[whole_days] = (moved, intermediate, histories(con))
    monkeypatch.undo()
    truth_dir = tmp_path / "truth"
    shutil.copytree(source / "landing", truth_dir / "landing")
    truth = WarehouseResource(data_dir=str(truth_dir))
    with truth.work() as con:
        for day in days:
            ingestion.ingest_day(con, truth.paths, day)
        state.refresh_history(con)
        expected = histories(con)
    (moved, intermediate, final), (_, other_intermediate, other_final) = results[True], results[False]
    assert moved[0] > 0
    assert intermediate == other_intermediate
    assert final == other_final == expected
    assert sum(len(rows) for rows in expected.values()) > 2000
