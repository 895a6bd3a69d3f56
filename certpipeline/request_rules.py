"""What may be requested and by whom, and the file a request gives.

A request names a report type of the catalog (``certpipeline.reports.catalog``)
and its scope; filing and production both check its shape (type, scope ids,
filters) and its rights (contract section 5) against a state, and production
writes its file. ``report_requests`` keeps the queue and its lifecycle.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from certpipeline.report_files import ReportFile, safe_file_component, write_report_file
from certpipeline.reports import catalog
from certpipeline.reports.catalog import (
    ALL,
    BATCH,
    BATCH_TEAM,
    CERTIFICATE,
    CERTIFICATE_VIEWERS,
    COURSE,
    COURSE_TEAM,
    LEARNER,
    POPULATION_FILTERS,
)
from certpipeline.reports.filters import EVERYTHING, USER_STATUSES, PopulationFilter, requester_visibility
from certpipeline.state import State


class RequestRefused(ValueError):
    """A request that cannot be filed or produced, with a reason a person can act on."""


class RequestForbidden(RequestRefused):
    """Refused because of who asks: unknown or deleted requester, or outside their rights."""


class RequestConflict(RequestRefused):
    """Refused because an identical request is still waiting."""


# -- what may be requested: the report catalog's files ---------------------------


@dataclass(frozen=True)
class RequestSpec:
    report_type: str
    requested_by: str
    course: str | None = None
    batch: str | None = None
    certificate: str | None = None
    learner: str | None = None
    filters: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @property
    def scope(self) -> str:
        """Canonical scope text, e.g. ``batch=b-1`` or ``certificate=c-1;learner=u-1``."""
        parts = [f"{kind}={value}" for kind, value in self.scope_ids().items()]
        return ";".join(parts) if parts else ALL

    def scope_ids(self) -> dict[str, str]:
        given = {COURSE: self.course, BATCH: self.batch, CERTIFICATE: self.certificate, LEARNER: self.learner}
        return {kind: value for kind, value in given.items() if value is not None}

    @property
    def filters_json(self) -> str:
        return json.dumps(dict(sorted(self.filters)), sort_keys=True)

    @classmethod
    def from_row(cls, report_type: str, requested_by: str, scope: str, filters: str) -> "RequestSpec":
        """Inverse of ``scope``. Ids may contain ``;`` and ``=``: the scope starts with
        its one kind, and a learner, when the report type takes one, comes last."""
        ids: dict[str, str] = {}
        if scope != ALL:
            kind, _, value = scope.partition("=")
            known = catalog.FILES.get(report_type)
            if kind == CERTIFICATE and known is not None and LEARNER in known.scope:
                value, _, ids[LEARNER] = value.rpartition(f";{LEARNER}=")
            ids[kind] = value
        return cls(report_type, requested_by, filters=tuple(sorted(json.loads(filters).items())), **ids)


def parse_filters(spec: RequestSpec) -> PopulationFilter:
    """Filters (contract section 7): user_status, group, registered_from,
    registered_to and custom.KEY=VALUE."""
    options: dict = {}
    custom = []
    for key, value in spec.filters:
        if key == "user_status":
            if value not in USER_STATUSES:
                raise RequestRefused(f"filter user_status must be one of {', '.join(USER_STATUSES)}, not {value!r}")
            options["user_status"] = value
        elif key == "group":
            options["group_id"] = value
        elif key in ("registered_from", "registered_to"):
            try:
                options[key] = dt.date.fromisoformat(value)
            except ValueError:
                raise RequestRefused(f"filter {key} must be a date YYYY-MM-DD, not {value!r}") from None
        elif key.startswith("custom.") and len(key) > len("custom."):
            custom.append((key[len("custom."):], value))
        else:
            raise RequestRefused(
                f"unknown filter {key!r}: use {', '.join(POPULATION_FILTERS[:-1])} or {POPULATION_FILTERS[-1]}"
            )
    return PopulationFilter(custom_fields=tuple(custom), **options)


def check_shape(spec: RequestSpec) -> catalog.File:
    report_type = catalog.FILES.get(spec.report_type)
    if report_type is None:
        raise RequestRefused(f"unknown report type {spec.report_type!r}; known: {', '.join(catalog.FILES)}")
    given = set(spec.scope_ids())
    if given != set(report_type.scope):
        wanted = " and ".join(f"--{kind}" for kind in report_type.scope) or "no scope option"
        raise RequestRefused(f"{spec.report_type} takes {wanted}")
    if spec.filters and not report_type.filters:
        raise RequestRefused(f"{spec.report_type} takes no filters; filters apply to path certificate reports")
    if report_type.filters:
        parse_filters(spec)
    return report_type


# -- who may request what (contract section 5) ------------------------------


def _first(frame: pl.DataFrame, column: str):
    return frame[column][0] if not frame.is_empty() else None


def _user_ids(frame: pl.DataFrame, column: str) -> list[str]:
    """The first row's list cell (authors, instructors, mentors) as a Python list.
    Polars returns a list cell as a Series, whose truth value is an error."""
    value = _first(frame, column)
    if value is None:
        return []
    return value.to_list() if isinstance(value, pl.Series) else list(value)


def check_rights(state: State, spec: RequestSpec) -> None:
    """Raise RequestRefused unless the scope exists and the requester may request it."""
    report_type = check_shape(spec)
    user = state.users.filter(pl.col("user_id") == spec.requested_by)
    if user.is_empty():
        raise RequestForbidden(f"unknown requester {spec.requested_by!r}")
    if user["status"][0] != "active":
        raise RequestForbidden(f"requester {spec.requested_by!r} is a deleted user")
    is_admin = user["platform_role"][0] == "admin"
    me = spec.requested_by

    if report_type.requesters == COURSE_TEAM:
        course = state.courses.filter(pl.col("course_id") == spec.course)
        if course.is_empty():
            raise RequestRefused(f"unknown course {spec.course!r}")
        if not (is_admin or _first(course, "created_by") == me or me in _user_ids(course, "authors")
                or me in _user_ids(course, "instructors")):
            raise RequestForbidden(
                f"{me} may not request {spec.report_type} for course {spec.course}: "
                "only platform admins, the course creator, authors and instructors may"
            )
    if report_type.requesters in (BATCH_TEAM, catalog.BATCH_OWNERS):
        batch = state.sessions.filter((pl.col("session_id") == spec.batch) & ~pl.col("is_deleted"))
        if batch.is_empty():
            raise RequestRefused(f"unknown batch {spec.batch!r}")
        course = state.courses.filter(pl.col("course_id") == batch["course_id"][0])
        creators = {_first(batch, "created_by"), _first(course, "created_by")} - {None}
        mentors_may = report_type.requesters == BATCH_TEAM
        allowed = is_admin or me in creators or (mentors_may and me in _user_ids(batch, "mentors"))
        if not allowed:
            who = "the course or batch creator" + (" and batch mentors" if mentors_may else "")
            raise RequestForbidden(
                f"{me} may not request {spec.report_type} for batch {spec.batch}: only platform admins, {who} may"
            )
    if report_type.requesters == CERTIFICATE_VIEWERS:
        visibility = requester_visibility(state, me)
        if not visibility.sees_anything:
            raise RequestForbidden(
                f"{me} may not request {spec.report_type}: only platform admins, group admins, coaches, "
                "and authors or instructors of paths may"
            )
        population = parse_filters(spec)
        if population.group_id and state.groups.filter(pl.col("group_id") == population.group_id).is_empty():
            raise RequestRefused(f"unknown group {population.group_id!r}")
        if spec.certificate is not None:
            if state.certificates.filter(pl.col("certificate_id") == spec.certificate).is_empty():
                raise RequestRefused(f"unknown certificate {spec.certificate!r}")
            if not visibility.may_see_certificate(spec.certificate):
                raise RequestForbidden(
                    f"{me} may not request {spec.report_type} for certificate {spec.certificate}: "
                    "it is not granted by a path they author or instruct"
                )
        if spec.learner is not None:
            if state.users.filter(pl.col("user_id") == spec.learner).is_empty():
                raise RequestRefused(f"unknown learner {spec.learner!r}")
            if not visibility.may_see_learner(spec.certificate, spec.learner):
                raise RequestForbidden(
                    f"{me} may not see learner {spec.learner} for certificate {spec.certificate}"
                )


# -- producing the files (contract section 5) ------------------------------------


def report_frame(state: State, spec: RequestSpec) -> pl.DataFrame:
    """The report's rows with exactly the contract's CSV columns (from the catalog)."""
    report = catalog.FILES.get(spec.report_type)
    if report is None:
        raise RequestRefused(f"unknown report type {spec.report_type!r}")
    # Filters and the requester's visibility narrow the reports that take filters.
    population = parse_filters(spec) if report.filters else PopulationFilter()
    visibility = requester_visibility(state, spec.requested_by) if report.filters else EVERYTHING
    return report.frame(state, catalog.Ask(spec.scope_ids(), population, visibility))


def report_file_location(exhausts_dir: Path, request_id: str, spec: RequestSpec) -> tuple[Path, str]:
    """``exhausts/<report_type>/<scope>-<request_id>``: ids are sanitized, so
    nothing a requester types can leave the exhausts folder. A long scope is
    shortened (with a hash of the whole); the request id always stays whole."""
    directory = exhausts_dir / safe_file_component(spec.report_type)
    return directory, f"{safe_file_component(spec.scope)}-{safe_file_component(request_id)}"


def produce(state: State, exhausts_dir: Path, request_id: str, spec: RequestSpec, password: str | None) -> ReportFile:
    check_rights(state, spec)
    frame = report_frame(state, spec)
    directory, stem = report_file_location(exhausts_dir, request_id, spec)
    # A production killed mid-write leaves its hidden temporary file behind.
    for stale in directory.glob(f".{stem}.*.tmp"):
        stale.unlink(missing_ok=True)
    return write_report_file(frame, directory, stem, password)
