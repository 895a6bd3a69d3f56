"""A night's state carried forward from the one an earlier run saved equals
the state loaded for its day, also when an earlier day was ingested again in
between (an event removed, and with it the only row of its key; a name
changed on an earlier day); a saved state in any doubt is not used."""

import datetime as dt

import polars as pl
import pytest

from certpipeline import carried_state, pipeline
from certpipeline.generate import generate_landing
from certpipeline.reports import tables
from certpipeline.state import CARRIED_FRAMES, load_state
from certpipeline_tests.conftest import Landing, run_nightly
from certpipeline_tests.test_state_scope import _same_frames

LAST_DAY = dt.date(2026, 11, 20)
DAYS = [LAST_DAY - dt.timedelta(days=4 - i) for i in range(5)]


def _loaded(con, day):
    return load_state(con, day, entities=tables.REPORT_ENTITIES, attributes=tables.REPORT_ATTRIBUTES)


def _saved(con) -> list[tuple]:
    return con.execute("SELECT as_of FROM carried.saved").fetchall()


def _changed(con) -> set[tuple[str, str]]:
    return set(con.execute("SELECT frame, key FROM carried.changed_keys").fetchall())


def _token_folders(data_dir) -> list[str]:
    return sorted(path.name for path in (data_dir / "pipeline" / carried_state.FOLDER_NAME).iterdir())


def _drop_line(data_dir, file: str, line_number: int) -> None:
    path = data_dir / "landing" / "events" / file
    lines = path.read_bytes().split(b"\n")
    del lines[line_number - 1]
    path.write_bytes(b"\n".join(lines))


@pytest.mark.slow
def test_a_night_carries_the_saved_state_and_computes_again_what_changed_since(data_dir, warehouse, instance):
    generate_landing(data_dir, learners=1500, days=5, seed=7, end_date=LAST_DAY)
    for day in DAYS[:4]:
        assert run_nightly(warehouse, day, instance).success
    with warehouse.work() as con:
        assert _saved(con) == [(DAYS[3],)] and _changed(con) == set()
        # An enrollment whose one event landed on DAYS[1], and a user none of
        # whose events occurred after DAYS[1]: both are as they were on
        # DAYS[3] and DAYS[4] unless something says they changed.
        [(gone, file, line_number)] = con.execute(
            "SELECT enrollment_id, any_value(file), any_value(line_number) FROM state.enrollment_history "
            "WHERE enrollment_id NOT IN (SELECT enrollment_id FROM state.enrollment_progress_history) "
            "AND enrollment_id NOT IN (SELECT enrollment_id FROM state.award_history WHERE enrollment_id IS NOT NULL) "
            "GROUP BY enrollment_id HAVING count(*) = 1 AND bool_and(landing_date = ?) ORDER BY enrollment_id LIMIT 1",
            [DAYS[1]]).fetchall()
        [(renamed, email)] = con.execute(
            "SELECT user_id, arg_max(email, occurred_at) FROM state.user_history GROUP BY user_id "
            "HAVING max(occurred_at) < ? ORDER BY user_id LIMIT 1", [f"{DAYS[1]}T23:00:00Z"]).fetchall()
        assert gone in _loaded(con, DAYS[3]).enrollments["enrollment_id"].to_list()
    _drop_line(data_dir, file, line_number)
    Landing(data_dir).event(DAYS[1], "user.upserted", {
        "user_id": renamed, "name": "Renamed Late", "email": email, "registered_at": "2025-01-15T00:00:00Z",
        "custom_fields": {}}, occurred_at=f"{DAYS[1]}T23:00:00Z", file="part-late.jsonl")
    # DAYS[1] again: its reports are an earlier day's, so DAYS[3]'s state stays saved.
    assert run_nightly(warehouse, DAYS[1], instance).success
    with warehouse.work() as con:
        assert _saved(con) == [(DAYS[3],)]
        assert {("enrollments", gone), ("users", renamed)} <= _changed(con)
        pipeline.ingest_landing_day(con, warehouse.paths, DAYS[4])
        pipeline.refresh_entity_history(con)
        assert carried_state.load(con, DAYS[4], tables.REPORT_ATTRIBUTES) is not None
        carried = tables.report_state(con, DAYS[4])
        loaded = _loaded(con, DAYS[4])
        _same_frames(carried, loaded)
        assert gone not in carried.enrollments["enrollment_id"].to_list()
        assert carried.users.filter(pl.col("user_id") == renamed)["name"].to_list() == ["Renamed Late"]
        assert loaded.enrollments.height > 1000
    # The night itself saves its state and starts the changed keys afresh.
    assert run_nightly(warehouse, DAYS[4], instance).success
    with warehouse.work() as con:
        assert _saved(con) == [(DAYS[4],)] and _changed(con) == set()
        [(token,)] = con.execute("SELECT token FROM carried.saved").fetchall()
    assert _token_folders(data_dir) == [token]


@pytest.mark.slow
def test_a_saved_state_in_doubt_is_not_carried(data_dir, warehouse, instance):
    generate_landing(data_dir, learners=300, days=2, seed=8, end_date=LAST_DAY)
    for day in DAYS[3:]:
        assert run_nightly(warehouse, day, instance).success
    later = LAST_DAY + dt.timedelta(days=1)
    saved_folder = data_dir / "pipeline" / carried_state.FOLDER_NAME
    [token] = _token_folders(data_dir)
    # Readable by its owner only: it holds names and emails.
    assert (saved_folder.stat().st_mode & 0o777, (saved_folder / token).stat().st_mode & 0o777) == (0o700, 0o700)
    assert {(path.name, path.stat().st_mode & 0o777) for path in (saved_folder / token).iterdir()} == {
        (f"{name}.arrow", 0o600) for name in CARRIED_FRAMES}
    with warehouse.work() as con:
        assert carried_state.load(con, later, tables.REPORT_ATTRIBUTES).as_of == LAST_DAY
        # Not a later day; other state code (other attributes).
        assert carried_state.load(con, LAST_DAY, tables.REPORT_ATTRIBUTES) is None
        assert carried_state.load(con, later, {"user": ("name",)}) is None
        # An earlier day's run does not replace it.
        tables.keep_report_state(con, _loaded(con, DAYS[3]))
        assert _saved(con) == [(LAST_DAY,)] and _token_folders(data_dir) == [token]
    # A file unreadable or gone: the state is loaded whole, and the same.
    enrollments = saved_folder / token / "enrollments.arrow"
    enrollments.write_bytes(b"not arrow")
    with warehouse.work() as con:
        assert carried_state.load(con, later, tables.REPORT_ATTRIBUTES) is None
        _same_frames(tables.report_state(con, later), _loaded(con, later))
    enrollments.unlink()
    with warehouse.work() as con:
        assert carried_state.load(con, later, tables.REPORT_ATTRIBUTES) is None
        # A saved token no file has (a run killed before its files were named).
        tables.keep_report_state(con, _loaded(con, LAST_DAY))
        [(token,)] = con.execute("SELECT token FROM carried.saved").fetchall()
        assert carried_state.load(con, later, tables.REPORT_ATTRIBUTES) is not None
        con.execute("UPDATE carried.saved SET token = ?", ["another"])
        assert carried_state.load(con, later, tables.REPORT_ATTRIBUTES) is None
