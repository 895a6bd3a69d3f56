"""The course dashboard and its on-demand batch exhausts (seed 002).

The exhausts' rows carry the values; their CSV headers and column order are
in ``certpipeline.reports.catalog``."""

from __future__ import annotations

import polars as pl

from certpipeline import rules
from certpipeline.state import State

LIVE = "Live"
EXPIRED = "Expired"
# How the profile exhaust's rows name a custom field's column: ``custom.KEY``.
CUSTOM_FIELD_PREFIX = "custom."


def course_batch_dashboard(state: State) -> pl.DataFrame:
    """Every non-deleted batch: dates, Live or Expired, and its non-deleted enrollments."""
    totals = rules.live_enrollments(state).group_by("session_id").agg(total_enrollment=pl.len().cast(pl.Int64))
    return (
        state.sessions.filter(~pl.col("is_deleted"))
        .join(totals, on="session_id", how="left")
        .select(
            "course_id",
            pl.col("session_id").alias("batch_id"),
            pl.col("name").alias("batch_name"),
            "start_date",
            "end_date",
            pl.when(pl.col("end_date") < state.as_of).then(pl.lit(EXPIRED)).otherwise(pl.lit(LIVE)).alias("batch_status"),
            pl.col("total_enrollment").fill_null(0),
        )
        .sort("course_id", "batch_id")
    )


def _batch_header(state: State, batch_id: str) -> pl.DataFrame:
    return (
        state.sessions.filter(pl.col("session_id") == batch_id)
        .join(state.courses.select("course_id", course_name="name"), on="course_id", how="left")
        .select("course_id", "course_name", pl.col("session_id").alias("batch_id"), pl.col("name").alias("batch_name"))
    )


def _batch_enrollments(state: State, batch_id: str) -> pl.DataFrame:
    return rules.live_enrollments(state).filter(pl.col("session_id") == batch_id)


def course_progress_exhaust(state: State, batch_id: str) -> pl.DataFrame:
    """One row per non-deleted enrollment in the batch, without PII. An answer
    scores for the enrollment of that user in the batch that was the latest to
    start before it was given (automatic re-enrollments each keep their own)."""
    enrollments = _batch_enrollments(state, batch_id).sort("enrolled_at")
    answers = (
        state.answers.filter(pl.col("session_id") == batch_id)
        .select("user_id", "answered_at", "score")
        .sort("answered_at")
    )
    scored = answers.join_asof(  # both sides sorted by time above

        enrollments.select("user_id", "enrolled_at", "enrollment_id"),
        left_on="answered_at",
        right_on="enrolled_at",
        by="user_id",
        strategy="backward",
        check_sortedness=False,
    )
    # An answer given before any enrollment started is credited to the first one.
    first_enrollment = enrollments.group_by("user_id").agg(first_enrollment_id=pl.col("enrollment_id").first())
    scored = scored.join(first_enrollment, on="user_id", how="inner").with_columns(
        enrollment_id=pl.coalesce("enrollment_id", "first_enrollment_id")
    )
    scores = scored.group_by("enrollment_id").agg(total_score=pl.col("score").sum())
    award_status = rules.most_recent_award(
        rules.counted_awards(state).filter(pl.col("enrollment_id").is_not_null()), ["enrollment_id"]
    ).select("enrollment_id", certificate_status="status")
    rows = (
        enrollments.join(scores, on="enrollment_id", how="left")
        .join(award_status, on="enrollment_id", how="left")
        .sort("user_id", "enrolled_at", "enrollment_id")
        .select(
            "user_id",
            pl.col("enrolled_at").dt.date().alias("enrolled_on"),
            pl.col("completed_at").dt.date().alias("completed_on"),
            pl.col("progress_percent").fill_null(0),
            pl.col("certificate_status").fill_null(rules.NOT_OBTAINED),
            pl.col("total_score").fill_null(0),
        )
    )
    return _batch_header(state, batch_id).join(rows, how="cross")


def user_profile_exhaust(state: State, batch_id: str) -> pl.DataFrame:
    """One row per user enrolled in the batch (non-deleted enrollment), with their
    profile and one ``custom.KEY`` column per custom field key present in the batch."""
    user_ids = _batch_enrollments(state, batch_id).select("user_id").unique()
    users = user_ids.join(state.users, on="user_id", how="left").sort("user_id")
    custom = (
        users.select("user_id", pl.col("custom_fields").map.entries())
        .explode("custom_fields")
        .unnest("custom_fields")
        .filter(pl.col("key").is_not_null())
    )
    keys = sorted(custom["key"].unique().to_list())
    rows = users.select(
        "user_id",
        pl.col("name").alias("user_name"),
        "email",
        pl.col("registered_at").dt.date().alias("registered_on"),
        pl.col("status").alias("user_status"),
    )
    if keys:
        wide = custom.pivot(on="key", index="user_id", values="value", aggregate_function="first", sort_columns=True)
        wide = wide.rename({key: f"{CUSTOM_FIELD_PREFIX}{key}" for key in keys})
        rows = rows.join(wide, on="user_id", how="left").select(
            *rows.columns, *[f"{CUSTOM_FIELD_PREFIX}{key}" for key in keys]
        )
    return _batch_header(state, batch_id).join(rows, how="cross")


def question_set_report(state: State, batch_id: str) -> pl.DataFrame:
    """One row per answer in the batch by a user with a non-deleted enrollment in it."""
    user_ids = _batch_enrollments(state, batch_id).select("user_id").unique()
    rows = (
        state.answers.filter(pl.col("session_id") == batch_id)
        .join(user_ids, on="user_id", how="semi")
        .sort("user_id", "answered_at", "question_set_id", "attempt_id", "question_id")
        .select(
            "user_id",
            "question_set_id",
            "attempt_id",
            pl.col("answered_at").dt.date().alias("answered_on"),
            "question_id",
            "question_text",
            "response",
            "score",
            "max_score",
        )
    )
    return _batch_header(state, batch_id).join(rows, how="cross")
