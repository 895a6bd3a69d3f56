"""Who may request what (contract section 5): every report type against every
role, including a coach of another group, a deleted admin and an unknown user."""

import datetime as dt

import pytest

from certpipeline import request_rules
from certpipeline.state import load_state
from certpipeline_tests.conftest import run_nightly

DAY = "2026-11-20"

ROLES = ["admin", "course_creator", "author", "instructor", "batch_creator", "mentor", "group_admin", "coach",
         "other_coach", "learner", "deleted_admin", "stranger", "other_author"]

# (report type, scope) -> roles allowed, from contract section 5.
ALLOWED = {
    ("certificate_type_totals", "course"): {"admin", "course_creator", "author", "instructor"},
    ("path_certificate_stats", None): {"admin", "group_admin", "coach", "other_coach", "author", "instructor",
                                       "other_author"},
    ("path_certificate_learners", "certificate"): {"admin", "group_admin", "coach", "other_coach", "author",
                                                   "instructor"},
    ("learner_certificate_history", "certificate+learner"): {"admin", "group_admin", "coach", "author", "instructor"},
    ("course_progress_exhaust", "batch"): {"admin", "course_creator", "batch_creator", "mentor"},
    ("user_profile_exhaust", "batch"): {"admin", "course_creator", "batch_creator"},
    ("question_set_report", "batch"): {"admin", "course_creator", "batch_creator", "mentor"},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import dagster as dg

    from certpipeline.defs.resources import WarehouseResource
    from certpipeline_tests.conftest import Landing

    data_dir = tmp_path_factory.mktemp("permissions")
    landing = Landing(data_dir)
    for role in ROLES:
        if role != "stranger":
            landing.user(DAY, role, platform_role="admin" if role in ("admin", "deleted_admin") else None)
    landing.event(DAY, "user.deleted", {"user_id": "deleted_admin"}, occurred_at=f"{DAY}T13:00:00Z")
    landing.group(DAY, "top")
    landing.group(DAY, "team", parent="top")
    landing.group(DAY, "elsewhere")
    landing.member(DAY, "top", "group_admin", "admin")
    landing.member(DAY, "team", "coach", "coach")
    landing.member(DAY, "team", "learner", "learner")
    landing.member(DAY, "elsewhere", "other_coach", "coach")
    landing.certificate(DAY, "path-cert")
    landing.certificate(DAY, "other-cert")
    landing.course(DAY, "path", created_by="course_creator", authors=["author"], instructors=["instructor"])
    landing.course(DAY, "other-path", authors=["other_author"])
    landing.session(DAY, "batch", "path", "path-cert", created_by="batch_creator", mentors=["mentor"])
    landing.session(DAY, "other-batch", "other-path", "other-cert")
    landing.enroll(DAY, "n1", "learner", "batch")
    warehouse = WarehouseResource(data_dir=str(data_dir))
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_nightly(warehouse, DAY, instance).success
    with warehouse.work() as con:
        return load_state(con, dt.date.fromisoformat(DAY))


def _spec(report_type, scope, role):
    ids = {"course": {"course": "path"}, "batch": {"batch": "batch"}, "certificate": {"certificate": "path-cert"},
           "certificate+learner": {"certificate": "path-cert", "learner": "learner"}, None: {}}[scope]
    return request_rules.RequestSpec(report_type, role, **ids)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("report_type", "scope"), list(ALLOWED))
def test_permission_matrix(world, report_type, scope, role):
    spec = _spec(report_type, scope, role)
    if role in ALLOWED[(report_type, scope)]:
        request_rules.check_rights(world, spec)
    else:
        with pytest.raises(request_rules.RequestRefused) as refusal:
            request_rules.check_rights(world, spec)
        reason = str(refusal.value)
        if role == "stranger":
            assert reason == "unknown requester 'stranger'"
        elif role == "deleted_admin":
            assert reason == "requester 'deleted_admin' is a deleted user"
        else:
            assert reason.startswith(f"{role} may not")


def test_a_coach_sees_only_their_groups_learners_in_the_files(world):
    coach = request_rules.report_frame(world, _spec("path_certificate_learners", "certificate", "coach"))
    other = request_rules.report_frame(world, _spec("path_certificate_learners", "certificate", "other_coach"))
    assert coach["Learner"].to_list() == ["Name learner <learner@example.com>"]
    assert other.height == 0
