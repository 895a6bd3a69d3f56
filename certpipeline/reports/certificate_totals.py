"""Certificates issued per course and certificate type (seed 000)."""

from __future__ import annotations

import polars as pl

from certpipeline import rules
from certpipeline.state import State


def certificate_type_totals(state: State) -> pl.DataFrame:
    """Counted awards per course and certificate type. An award's course is its
    own ``course_id``, or else the course of its enrollment's session; awards
    with neither are left out (there is no course to report them under)."""
    enrollment_courses = state.enrollments.join(
        state.sessions.select("session_id", session_course_id="course_id"), on="session_id", how="left"
    ).select("enrollment_id", "session_course_id")
    return (
        rules.counted_awards(state)
        .join(enrollment_courses, on="enrollment_id", how="left")
        .with_columns(course_id=pl.coalesce("course_id", "session_course_id"))
        .filter(pl.col("course_id").is_not_null())
        .group_by("course_id", "certificate_type")
        .agg(total_certificates_issued=pl.len().cast(pl.Int64))
        .sort("course_id", "certificate_type", nulls_last=True)
    )
