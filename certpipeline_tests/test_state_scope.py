"""A batch report from the state scoped to its batch equals the same report
from the whole state, the report tables from the state narrowed to what
they read equal those from the whole state, and a state carried forward
from an earlier day equals the state loaded for its day: scoping and
carrying only save work."""

import datetime as dt
from collections import Counter

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from certpipeline.generate import generate_landing
from certpipeline import rules
from certpipeline.reports import course_dashboard, path_certificates, tables
from certpipeline.state import STATE_FRAMES, State, advance_state, load_state
from certpipeline_tests.conftest import Landing, run_nightly

LAST_DAY = dt.date(2026, 11, 20)


def _three_nights(data_dir, warehouse, instance, seed: int) -> None:
    """1,500 learners' landing days up to LAST_DAY, each night run as the schedule would."""
    generate_landing(data_dir, learners=1500, days=3, seed=seed, end_date=LAST_DAY)
    for offset in (2, 1, 0):
        assert run_nightly(warehouse, LAST_DAY - dt.timedelta(days=offset), instance).success


@pytest.mark.slow
def test_batch_reports_from_scoped_and_whole_state_are_equal(data_dir, warehouse, instance):
    _three_nights(data_dir, warehouse, instance, seed=4)
    with warehouse.work() as con:
        whole = load_state(con, LAST_DAY)
        batches = whole.sessions.sort("session_id")["session_id"].to_list()
        chosen = batches[::3]
        scoped = load_state(con, LAST_DAY, batches=chosen, also_users=["usr-0000001"])
    assert scoped.enrollments.height < whole.enrollments.height
    assert scoped.group_members.is_empty()
    for batch in chosen:
        for report in (course_dashboard.course_progress_exhaust, course_dashboard.user_profile_exhaust,
                       course_dashboard.question_set_report):
            assert_frame_equal(report(scoped, batch), report(whole, batch))


@pytest.mark.slow
def test_report_tables_from_the_narrowed_and_whole_state_are_equal(data_dir, warehouse, instance, monkeypatch):
    _three_nights(data_dir, warehouse, instance, seed=5)
    # The frames several tables derive alike are computed once per state.
    computed = Counter()
    for module, name in ((rules, "_counted_awards"), (rules, "_effective_enrollments"),
                         (path_certificates, "_certificate_enrollments")):
        def counting(state, compute=getattr(module, name), name=name):
            computed[name, id(state)] += 1
            return compute(state)
        monkeypatch.setattr(module, name, counting)
    with warehouse.work() as con:
        whole = load_state(con, LAST_DAY)
        narrowed = tables.report_state(con, LAST_DAY)
    assert narrowed.users.columns == ["user_id", "name", "email", "status"]
    assert narrowed.enrollments.columns == [
        "enrollment_id", "user_id", "session_id", "enrolled_at", "auto_reenrolled", "is_deleted", "status"]
    assert narrowed.group_members.is_empty() and narrowed.answers.is_empty()
    assert narrowed.users.height == whole.users.height > 1000
    from_whole, from_narrowed = tables.build_reports(whole), tables.build_reports(narrowed)
    assert all(frame.height > 0 for frame in from_whole.values())
    for name, frame in from_whole.items():
        assert_frame_equal(from_narrowed[name], frame, check_row_order=False)
    assert sorted(computed.values()) == [1] * 6, computed
    # The two largest tables skip the sort their files need: same rows, and
    # sorted as a file sorts them, the same order.
    for name in ("path_certificate_learners", "learner_certificate_history"):
        in_file_order = getattr(path_certificates, name)(whole)
        assert in_file_order.height > 1000
        assert_frame_equal(in_file_order, in_file_order.sort("certificate_id", "user_id", maintain_order=True))
        assert_frame_equal(from_whole[name].drop("report_date"), in_file_order, check_row_order=False)


def _same_frames(got, expected) -> None:
    for name in STATE_FRAMES:
        try:
            assert_frame_equal(getattr(got, name), getattr(expected, name), check_row_order=False)
        except AssertionError as difference:
            raise AssertionError(f"{name}: {difference}") from None


@pytest.mark.slow
def test_a_state_carried_forward_equals_the_state_loaded_for_its_day(data_dir, warehouse, instance):
    days = [LAST_DAY - dt.timedelta(days=5 - i) for i in range(6)]
    generate_landing(data_dir, learners=1500, days=6, seed=6, end_date=LAST_DAY)
    # An event at the very cutoff of the day before counts from the next day on.
    Landing(data_dir).event(days[-1], "user.upserted", {
        "user_id": "usr-at-midnight", "name": "Midnight", "email": "m@example.com",
        "registered_at": "2025-01-15T00:00:00Z", "custom_fields": {}},
        occurred_at=f"{days[-1]}T00:00:00Z", file="part-extra.jsonl")
    for day in days:
        assert run_nightly(warehouse, day, instance).success
    with warehouse.work() as con:
        # Day by day, as a range run computes its reports' states.
        carried = tables.report_state(con, days[0])
        for day in days[1:]:
            carried = tables.report_state(con, day, previous=carried)
            assert carried.as_of == day
            _same_frames(carried, tables.report_state(con, day))
        # Over a gap of days, with every entity and every column.
        first, last = load_state(con, days[0]), load_state(con, days[-1])
        assert last.enrollments.height > first.enrollments.height > 1000
        assert last.awards.height > first.awards.height
        assert "usr-at-midnight" in last.users["user_id"].to_list()
        assert "usr-at-midnight" not in load_state(con, days[-2]).users["user_id"].to_list()
        _same_frames(advance_state(con, first, days[-1]), last)
        # A key no event changed between the two days is carried as it was,
        # not computed again: a user only the previous state has stays.
        previous = load_state(con, days[-2])
        marker = previous.users.head(1).with_columns(user_id=pl.lit("usr-carried-only"))
        previous = State(as_of=previous.as_of, **{name: getattr(previous, name) for name in STATE_FRAMES
                                                   if name != "users"}, users=pl.concat([previous.users, marker]))
        assert "usr-carried-only" in advance_state(con, previous, days[-1]).users["user_id"].to_list()
        with pytest.raises(ValueError, match="is not after"):
            advance_state(con, last, days[-1])
