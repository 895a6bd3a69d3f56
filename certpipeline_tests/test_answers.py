"""Answers are identified by (user_id, session_id, question_set_id, attempt_id,
question_id) (contract section 2): attempt ids are unique only per learner and
session, as in Sunbird, whose own fixtures reuse ``attempt-001`` for several
learners in several batches."""

from __future__ import annotations

import datetime as dt

from certpipeline.request_rules import RequestSpec, report_frame
from certpipeline.state import load_state
from certpipeline_tests.conftest import query, run_nightly

DAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=2)
AT = f"{DAY.isoformat()}T10:00:00Z"
LATER = f"{DAY.isoformat()}T11:00:00Z"


def answer(landing, user_id, batch, question_id, response, score, occurred_at=AT, question_set_id="qs-1"):
    landing.event(DAY, "question.answered", {
        "attempt_id": "attempt-001", "user_id": user_id, "session_id": batch, "question_set_id": question_set_id,
        "question_id": question_id, "question_text": f"Question {question_id}", "response": response,
        "score": score, "max_score": 5, "answered_at": occurred_at}, occurred_at=occurred_at)


def write_sunbird_world(landing):
    landing.course(DAY, "c-1", name="Course One")
    landing.session(DAY, "b-1", "c-1", name="Batch One")
    landing.session(DAY, "b-2", "c-1", name="Batch Two")
    for user_id in ("u-1", "u-2", "u-3"):
        landing.user(DAY, user_id)
    # Three learners, two batches, one attempt id.
    landing.enroll(DAY, "e-1", "u-1", "b-1", enrolled_at=f"{DAY.isoformat()}T08:00:00Z")
    landing.enroll(DAY, "e-2", "u-2", "b-1", enrolled_at=f"{DAY.isoformat()}T08:00:00Z")
    landing.enroll(DAY, "e-3", "u-3", "b-2", enrolled_at=f"{DAY.isoformat()}T08:00:00Z")
    landing.enroll(DAY, "e-4", "u-1", "b-2", enrolled_at=f"{DAY.isoformat()}T08:00:00Z")
    answer(landing, "u-1", "b-1", "q-1", "A", 3)
    answer(landing, "u-1", "b-1", "q-2", "B", 2)
    answer(landing, "u-2", "b-1", "q-1", "C", 5)
    answer(landing, "u-2", "b-1", "q-2", "D", 1)
    answer(landing, "u-3", "b-2", "q-1", "E", 4)
    answer(landing, "u-1", "b-2", "q-1", "F", 1)
    # The same question in another question set of the same attempt is another answer.
    answer(landing, "u-1", "b-1", "q-1", "G", 1, question_set_id="qs-2")
    # A later answer to the same key replaces the earlier one.
    answer(landing, "u-2", "b-1", "q-2", "D2", 2, occurred_at=LATER)


def test_every_learner_keeps_their_answers_when_attempt_ids_repeat(landing, warehouse):
    write_sunbird_world(landing)
    assert run_nightly(warehouse, DAY).success
    assert query(warehouse, "SELECT count(*) FROM state.answers") == [(7,)]
    with warehouse.work() as con:
        state = load_state(con, DAY)
    questions = report_frame(state, RequestSpec("question_set_report", "u-admin", batch="b-1"))
    assert [tuple(row[c] for c in ("User UUID", "QuestionSet Id", "Attempt Id", "Question Id",
                                   "Question Response", "Question Score"))
            for row in questions.iter_rows(named=True)] == [
        ("u-1", "qs-1", "attempt-001", "q-1", "A", 3),
        ("u-1", "qs-1", "attempt-001", "q-2", "B", 2),
        ("u-1", "qs-2", "attempt-001", "q-1", "G", 1),
        ("u-2", "qs-1", "attempt-001", "q-1", "C", 5),
        ("u-2", "qs-1", "attempt-001", "q-2", "D2", 2),
    ]
    totals = {}
    for batch in ("b-1", "b-2"):
        progress = report_frame(state, RequestSpec("course_progress_exhaust", "u-admin", batch=batch))
        totals[batch] = [(row["User UUID"], row["Total Score"]) for row in progress.iter_rows(named=True)]
    assert totals == {"b-1": [("u-1", 6), ("u-2", 7)], "b-2": [("u-1", 1), ("u-3", 4)]}
