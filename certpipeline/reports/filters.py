"""Who a report is about: the seed-001 filters and the requester's visibility.

Rules chosen where the contract is silent:
- A group's *learners* are its members with role ``learner`` in the group or
  any subgroup; the group filter and coach/group-admin visibility use them.
- The registration date range is inclusive at both ends, on the UTC date of
  ``registered_at``.
- Visibility is a set of (certificate, learner) pairs: a platform admin sees
  every pair; an author or instructor of a path sees every learner of the
  certificates its sessions grant; a coach or group admin sees every
  certificate of the learners of their groups. A requester with several roles
  sees the union.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from certpipeline.state import State

USER_STATUSES = ("active", "deleted", "all")


@dataclass(frozen=True)
class PopulationFilter:
    user_status: str = "active"
    group_id: str | None = None
    registered_from: dt.date | None = None
    registered_to: dt.date | None = None
    custom_fields: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if self.user_status not in USER_STATUSES:
            raise ValueError(f"user_status must be one of {', '.join(USER_STATUSES)}, not {self.user_status!r}")

    @property
    def narrows_population(self) -> bool:
        """Anything besides the user status that restricts who is counted."""
        return bool(self.group_id or self.registered_from or self.registered_to or self.custom_fields)


@dataclass(frozen=True)
class Visibility:
    everything: bool
    certificate_ids: frozenset[str] = frozenset()
    learner_ids: frozenset[str] = frozenset()
    leads_groups: bool = False  # a coach or group admin, even of groups without learners yet

    @property
    def sees_anything(self) -> bool:
        return self.everything or self.leads_groups or bool(self.certificate_ids) or bool(self.learner_ids)

    def may_see_certificate(self, certificate_id: str) -> bool:
        return self.everything or self.leads_groups or certificate_id in self.certificate_ids

    def may_see_learner(self, certificate_id: str, user_id: str) -> bool:
        return self.everything or certificate_id in self.certificate_ids or user_id in self.learner_ids


EVERYTHING = Visibility(everything=True)


def group_learners(state: State, group_ids: list[str]) -> pl.Series:
    """Users with role learner in any of ``group_ids`` or their subgroups."""
    groups = state.group_closure.filter(pl.col("ancestor_id").is_in(group_ids))["group_id"]
    return (
        state.group_members.filter(pl.col("group_id").is_in(groups.implode()) & (pl.col("role") == "learner"))["user_id"]
        .unique()
        .sort()
    )


def population_user_ids(state: State, population: PopulationFilter) -> pl.Series | None:
    """The users a report counts; ``None`` means no restriction at all (``all``
    without other filters, which also keeps users the warehouse has no profile for)."""
    if population.user_status == "all" and not population.narrows_population:
        return None
    users = state.users
    if population.user_status != "all":
        users = users.filter(pl.col("status") == population.user_status)
    if population.registered_from:
        users = users.filter(pl.col("registered_at").dt.date() >= population.registered_from)
    if population.registered_to:
        users = users.filter(pl.col("registered_at").dt.date() <= population.registered_to)
    for key, value in population.custom_fields:
        users = users.filter(pl.col("custom_fields").map.get(key).eq_missing(value))
    if population.group_id:
        users = users.filter(pl.col("user_id").is_in(group_learners(state, [population.group_id]).implode()))
    return users["user_id"]


def restrict(frame: pl.DataFrame, state: State, population: PopulationFilter, visibility: Visibility) -> pl.DataFrame:
    """Keep rows (with ``certificate_id`` and ``user_id``) the filters and visibility allow."""
    user_ids = population_user_ids(state, population)
    if user_ids is not None:
        # A semi join: at a million learners twice as fast as is_in over the ids.
        frame = frame.join(user_ids.to_frame("user_id"), on="user_id", how="semi", maintain_order="left")
    if not visibility.everything:
        frame = frame.filter(
            pl.col("certificate_id").is_in(list(visibility.certificate_ids))
            | pl.col("user_id").is_in(list(visibility.learner_ids))
        )
    return frame


def requester_visibility(state: State, user_id: str) -> Visibility:
    """What a requester may see in the path certificate reports."""
    user = state.users.filter(pl.col("user_id") == user_id)
    if user.is_empty() or user["status"][0] != "active":
        return Visibility(everything=False)
    if user["platform_role"][0] == "admin":
        return EVERYTHING
    own_courses = state.courses.filter(
        pl.col("authors").list.contains(user_id) | pl.col("instructors").list.contains(user_id)
    )["course_id"]
    own_certificates = state.sessions.filter(
        ~pl.col("is_deleted") & pl.col("course_id").is_in(own_courses.implode()) & pl.col("certificate_id").is_not_null()
    )["certificate_id"]
    led_groups = state.group_members.filter(
        (pl.col("user_id") == user_id) & pl.col("role").is_in(["coach", "admin"])
    )["group_id"]
    learners = group_learners(state, led_groups.to_list()) if len(led_groups) else pl.Series([], dtype=pl.String)
    return Visibility(
        everything=False,
        certificate_ids=frozenset(own_certificates.to_list()),
        learner_ids=frozenset(learners.to_list()),
        leads_groups=len(led_groups) > 0,
    )
