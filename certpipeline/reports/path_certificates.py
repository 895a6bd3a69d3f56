"""Path certificate statistics, learners and learner history (seed 001)."""

from __future__ import annotations

import polars as pl

from certpipeline import rules
from certpipeline.reports.filters import EVERYTHING, PopulationFilter, Visibility, restrict
from certpipeline.state import State

DEFAULT_POPULATION = PopulationFilter()


def certificate_enrollments(state: State) -> pl.DataFrame:
    """Non-deleted enrollments in non-deleted sessions that grant a certificate."""
    return state.derived(_certificate_enrollments)


def _certificate_enrollments(state: State) -> pl.DataFrame:
    granting_sessions = state.sessions.filter(~pl.col("is_deleted") & pl.col("certificate_id").is_not_null()).select(
        "session_id",
        "certificate_id",
        "course_id",
        session_name="name",
        session_status="status",
    )
    return (
        rules.live_enrollments(state)
        .rename({"status": "progress_status"})
        .join(granting_sessions, on="session_id", how="inner")
    )


def path_certificate_stats(
    state: State, population: PopulationFilter = DEFAULT_POPULATION, visibility: Visibility = EVERYTHING
) -> pl.DataFrame:
    enrollments = restrict(certificate_enrollments(state), state, population, visibility)
    awards = restrict(rules.counted_awards(state), state, population, visibility)
    certificates = state.certificates
    if population.user_status == "all" and not population.narrows_population:
        # "All" lists every certificate the requester may see, linked to a user or not.
        if not visibility.everything:
            certificates = certificates.filter(
                pl.col("certificate_id").is_in(list(visibility.certificate_ids))
                | pl.col("certificate_id").is_in(enrollments["certificate_id"].implode())
            )
    else:
        certificates = certificates.filter(pl.col("certificate_id").is_in(enrollments["certificate_id"].implode()))
    certified = awards.group_by("certificate_id").agg(certified_learners=pl.col("user_id").n_unique())
    enrolled = (
        enrollments.filter(pl.col("session_status").ne_missing("archived"))
        .group_by("certificate_id")
        .agg(enrolled_learners=pl.col("user_id").n_unique())
    )
    associated = (
        state.sessions.filter(~pl.col("is_deleted") & pl.col("certificate_id").is_not_null())
        .group_by("certificate_id")
        .agg(associated_paths=pl.col("course_id").n_unique())
    )
    owner_groups = state.groups.select(owner_group_id="group_id", owner_group="name")
    return (
        certificates.join(owner_groups, on="owner_group_id", how="left")
        .join(certified, on="certificate_id", how="left")
        .join(enrolled, on="certificate_id", how="left")
        .join(associated, on="certificate_id", how="left")
        .select(
            "certificate_id",
            "title",
            "owner_group",
            pl.col("validity_months").alias("validity_period_months"),
            pl.col("certified_learners").fill_null(0).cast(pl.Int64),
            pl.col("enrolled_learners").fill_null(0).cast(pl.Int64),
            pl.col("associated_paths").fill_null(0).cast(pl.Int64),
        )
        .sort("certificate_id")
    )


def _with_award(rows: pl.DataFrame, awards: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    latest = rules.most_recent_award(awards, key).select(*key, "status", "delivery_date", "expiration_date")
    return rows.join(latest, on=key, how="left").with_columns(pl.col("status").fill_null(rules.NOT_OBTAINED))


def path_certificate_learners(
    state: State, population: PopulationFilter = DEFAULT_POPULATION, visibility: Visibility = EVERYTHING,
    ordered: bool = True,
) -> pl.DataFrame:
    """One row per certificate and learner enrolled in a session granting it; the
    status is that of the learner's most recent counted award for the certificate,
    whichever enrollment it came from. Sorted by certificate and learner when
    ``ordered`` (a file's rows are; the warehouse snapshot's are not, see ``catalog``)."""
    learners = (
        restrict(certificate_enrollments(state), state, population, visibility)
        .select("certificate_id", "user_id")
        .unique()
        .join(state.users.select("user_id", learner_name="name", learner_email="email"), on="user_id", how="left")
    )
    rows = (
        _with_award(learners, rules.counted_awards(state), ["certificate_id", "user_id"])
        .rename({"status": "latest_status"})
        .select(
            "certificate_id", "user_id", "learner_name", "learner_email", "latest_status", "delivery_date", "expiration_date"
        )
    )
    return rows.sort("certificate_id", "user_id") if ordered else rows


def learner_certificate_history(
    state: State, population: PopulationFilter = DEFAULT_POPULATION, visibility: Visibility = EVERYTHING,
    ordered: bool = True,
) -> pl.DataFrame:
    """One row per non-deleted enrollment in a session granting a certificate;
    the status is that of the most recent counted award of that enrollment.
    Sorted by certificate, learner and enrollment date when ``ordered`` (a
    file's rows are; the warehouse snapshot's are not, see ``catalog``)."""
    enrollments = restrict(certificate_enrollments(state), state, population, visibility).join(
        state.courses.select("course_id", path_name="name"), on="course_id", how="left"
    )
    awards = rules.counted_awards(state).filter(pl.col("enrollment_id").is_not_null())
    rows = (
        _with_award(enrollments, awards, ["certificate_id", "enrollment_id"])
        .select(
            "certificate_id",
            "user_id",
            "enrollment_id",
            pl.col("status").alias("certification_status"),
            "delivery_date",
            "expiration_date",
            "path_name",
            pl.col("session_name").alias("path_session"),
            pl.col("progress_status").fill_null("not_started").alias("path_status"),
            pl.col("auto_reenrolled").alias("auto_reenrollment"),
            "enrolled_at",
        )
    )
    if ordered:
        rows = rows.sort("certificate_id", "user_id", "enrolled_at", "enrollment_id")
    return rows.drop("enrolled_at")
