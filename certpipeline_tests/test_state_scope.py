"""A batch report from the state scoped to its batch equals the same report
from the whole state, and the report tables from the state narrowed to what
they read equal those from the whole state: scoping only saves work."""

import datetime as dt
from collections import Counter

import pytest
from polars.testing import assert_frame_equal

from certpipeline.generate import generate_landing
from certpipeline import rules
from certpipeline.reports import course_dashboard, path_certificates, tables
from certpipeline.state import load_state
from certpipeline_tests.conftest import run_nightly

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
