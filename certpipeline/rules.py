"""The certificate rules every report follows (contract section 3).

Plain Polars over the ``State`` frames, so each rule is testable on its own.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from certpipeline.state import State, cutoff_after

VALID = "Valid"
EXPIRING_SOON = "Expiring soon"
EXPIRED = "Expired"
NOT_OBTAINED = "Not obtained"
EXPIRING_SOON_DAYS = 30


def expiration_date(delivery_date: pl.Expr, validity_months: pl.Expr) -> pl.Expr:
    """Delivery date plus whole calendar months, clamped to the month's last day
    (Polars' ``offset_by`` clamps: Jan 31 + 1mo = Feb 28/29); null without validity."""
    return (
        pl.when(validity_months.is_not_null())
        .then(delivery_date.dt.offset_by(pl.format("{}mo", validity_months)))
        .otherwise(None)
    )


def award_status(expiration: pl.Expr, as_of: dt.date) -> pl.Expr:
    soon = as_of + dt.timedelta(days=EXPIRING_SOON_DAYS)
    return (
        pl.when(expiration.is_not_null() & (expiration <= as_of))
        .then(pl.lit(EXPIRED))
        .when(expiration.is_not_null() & (expiration <= soon))
        .then(pl.lit(EXPIRING_SOON))
        .otherwise(pl.lit(VALID))
    )


def effective_enrollments(state: State) -> pl.DataFrame:
    """Enrollments with ``is_deleted`` also true when their session is deleted."""
    return state.derived(_effective_enrollments)


def _effective_enrollments(state: State) -> pl.DataFrame:
    deleted_sessions = state.sessions.filter(pl.col("is_deleted")).select("session_id")
    return state.enrollments.with_columns(
        is_deleted=pl.col("is_deleted") | pl.col("session_id").is_in(deleted_sessions["session_id"].implode())
    )


def live_enrollments(state: State) -> pl.DataFrame:
    """Non-deleted enrollments (their own deletion or their session's)."""
    return effective_enrollments(state).filter(~pl.col("is_deleted")).drop("is_deleted")


def counted_awards(state: State) -> pl.DataFrame:
    """Awards that count as of the report day, with delivery and expiration
    dates and status. An award counts when issued on or before the day, not
    revoked, and its enrollment (when it has one) is not deleted. An award
    pointing at an enrollment the warehouse has never seen still counts: that
    is a referential problem the ingestion checks report, not a deletion."""
    return state.derived(_counted_awards)


def _counted_awards(state: State) -> pl.DataFrame:
    deleted_enrollments = effective_enrollments(state).filter(pl.col("is_deleted")).select("enrollment_id")
    cutoff = cutoff_after(state.as_of)
    return (
        state.awards.filter(
            ~pl.col("is_revoked")
            & pl.col("issued_at").is_not_null()
            & (pl.col("issued_at") < cutoff)
            & ~pl.col("enrollment_id").is_in(deleted_enrollments["enrollment_id"].implode()).fill_null(False)
        )
        .join(state.certificates.select("certificate_id", "certificate_type", "validity_months"), on="certificate_id", how="left")
        .with_columns(delivery_date=pl.col("issued_at").dt.date())
        .with_columns(expiration_date=expiration_date(pl.col("delivery_date"), pl.col("validity_months")))
        .with_columns(status=award_status(pl.col("expiration_date"), state.as_of))
        .drop("is_revoked")
    )


def most_recent_award(awards: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """The most recent award per ``by`` key (latest issued_at, then award_id)."""
    return awards.sort(["issued_at", "award_id"], descending=True).unique(subset=by, keep="first", maintain_order=True)
