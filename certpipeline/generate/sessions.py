"""Sessions (course batches): their schedule, status changes, deletions, and when
learners can enroll in them.

A session is of one of four kinds relative to the first export day: past (ended
before it), current (running), upcoming (starts later, sometimes created during the
window), evergreen (long-running, paths' re-certification sessions among them).
"""

from __future__ import annotations

from dataclasses import dataclass
from random import Random
from typing import TYPE_CHECKING

from certpipeline.generate.timeline import DAY, NEVER, Window, date_of, iso_date
from certpipeline.generate.vocabulary import MONTH_ABBREVIATIONS

if TYPE_CHECKING:
    from certpipeline.generate.catalog import Certificate, Course, Event, Staff

PAST, CURRENT, UPCOMING, EVERGREEN = "past", "current", "upcoming", "evergreen"
NOT_STARTED, ONGOING, ENDED, ARCHIVED = "not_started", "ongoing", "ended", "archived"

ENROLL_BEFORE_START = 21 * DAY  # enrollment opens three weeks before a session starts
HISTORY_DEPTH = 730 * DAY  # imported enrollments go back two years


@dataclass(eq=False, slots=True)
class Session:
    session_id: str
    course: Course
    name: str
    start_day: int  # days since 1970-01-01
    end_day: int | None  # None: open-ended
    start_at: int  # its first second
    end_at: int | None  # its last second
    status: str  # as created
    certificate: Certificate | None  # granted on completion
    auto_reenrollment: bool
    created_by: str
    mentors: list[str]
    created_at: int
    imported: bool  # part of the first day's catalog import
    weight: float  # how popular it is relative to the others
    deleted_at: int | None = None
    # when learners can enroll: history-import enrollments in [history_from,
    # history_until), live ones in [live_from, live_until)
    history_from: int = 0
    history_until: int = 0
    live_from: int = 0
    live_until: int = 0

    def payload(self, status: str) -> dict:
        return {
            "session_id": self.session_id,
            "course_id": self.course.course_id,
            "name": self.name,
            "start_date": iso_date(self.start_day),
            "end_date": iso_date(self.end_day) if self.end_day is not None else None,
            "status": status,
            "certificate_id": self.certificate.certificate_id if self.certificate else None,
            "auto_reenrollment": self.auto_reenrollment,
            "created_by": self.created_by,
            "mentors": list(self.mentors),
        }


def build_sessions(rng: Random, window: Window, courses: list[Course], first_paths: list[Course],
                   staff: Staff) -> tuple[list[Session], list[Event]]:
    sessions: list[Session] = []
    for course in courses:
        for j, kind in enumerate(_kinds(rng, course, courses, first_paths)):
            sessions.append(_session(rng, window, course, courses, j, kind, len(sessions), staff))
    _delete_some(rng, window, sessions)
    events = _lifecycle_events(rng, window, sessions)
    for s in sessions:
        _open_for_enrollment(s, window)
    return sessions, events


def _kinds(rng: Random, course: Course, courses: list[Course], first_paths: list[Course]) -> list[str]:
    """The kinds of a course's sessions. The first course and the first two paths have
    a fixed mix, so that every run has what the reports meet."""
    rnd = rng.random
    if course.is_new:
        return [UPCOMING] * (1 + int(rnd() * 2))
    if course is courses[0]:
        return [PAST, CURRENT, UPCOMING, EVERGREEN]
    if course in first_paths[:2]:
        return [EVERGREEN, EVERGREEN, CURRENT, PAST]
    count = (2 + int(rnd() * 3)) if course.is_path else (2 + int(rnd() * 4))
    kinds = []
    for _ in range(count):
        r = rnd()
        if course.is_path:
            kinds.append(EVERGREEN if r < 0.45 else CURRENT if r < 0.7 else PAST if r < 0.88 else UPCOMING)
        else:
            kinds.append(PAST if r < 0.35 else CURRENT if r < 0.7 else UPCOMING if r < 0.85 else EVERGREEN)
    return kinds


def _session(rng: Random, window: Window, course: Course, courses: list[Course], j: int, kind: str,
             number: int, staff: Staff) -> Session:
    """The j-th session of a course, the number-th of the catalog (from 0)."""
    rnd = rng.random
    first_day, days = window.first_day_number, len(window.days)
    created_at = course.created_at + 60 + int(rnd() * 3600) if course.is_new else window.start + 3000 + number % 600
    imported = not course.is_new
    if kind == PAST:
        start = first_day - 120 - int(rnd() * 580)
        end = min(start + 20 + int(rnd() * 100), first_day - 2)
    elif kind == CURRENT:
        start = first_day - 10 - int(rnd() * 190)
        end = first_day + 5 + int(rnd() * 200)
    elif kind == UPCOMING:
        start = max(first_day, course.created_at // DAY) + 1 + int(rnd() * (days + 45))
        end = start + 20 + int(rnd() * 70)
        if not course.is_new and rnd() < 0.4 and start < first_day + days - 2 and days >= 4:
            # created during the window, a couple of weeks before it starts
            created = max(window.start + DAY, start * DAY - (7 + int(rnd() * 30)) * DAY)
            if created < start * DAY:
                created_at = created + int(rnd() * 3600)
                imported = False
    else:  # EVERGREEN
        start = first_day - 300 - int(rnd() * 420)
        end = None if rnd() < 0.6 else first_day + 100 + int(rnd() * 300)
    if course.is_path:
        start_date = date_of(start)
        name = f"{course.name} – {MONTH_ABBREVIATIONS[start_date.month - 1]} {start_date.year}"
        certificate = course.certificates[0]
        auto_reenrollment = (kind == EVERGREEN and certificate.validity_months is not None
                             and (rnd() < 0.7 or j == 0))
    else:
        name = f"Batch {j + 1}"
        if course is courses[0]:
            certificate = course.certificates[j % len(course.certificates)]
        elif course.certificates and rnd() < 0.85:
            certificate = course.certificates[int(rnd() * len(course.certificates))]
        else:
            certificate = None
        auto_reenrollment = False
    created_by = course.created_by if rnd() < 0.7 else staff.any()
    mentors = staff.some(int(rnd() * 3))
    if start > first_day:
        status = NOT_STARTED
    elif end is None or end >= first_day:
        status = ONGOING
    else:
        archived = (end < first_day - 90 and rnd() < 0.5) or (course is courses[0] and kind == PAST)
        status = ARCHIVED if archived else ENDED
    weight = min(30.0, rng.paretovariate(1.3)) * (3.0 if kind == EVERGREEN else 1.0)
    return Session(
        session_id=f"ses-{number + 1:06d}", course=course, name=name, start_day=start, end_day=end,
        start_at=start * DAY, end_at=end * DAY + DAY - 1 if end is not None else None, status=status,
        certificate=certificate, auto_reenrollment=auto_reenrollment, created_by=created_by, mentors=mentors,
        created_at=created_at, imported=imported, weight=weight,
    )


def _delete_some(rng: Random, window: Window, sessions: list[Session]) -> None:
    """About 3 % of the imported sessions (at least one) are deleted during the window,
    from the second day on: after the first day's history import."""
    rnd = rng.random
    deletable = [s for s in sessions if s.imported]
    if len(window.days) >= 2 and deletable:
        chosen = [s for s in deletable if rnd() < 0.03] or [deletable[int(rnd() * len(deletable))]]
        for s in chosen:
            s.deleted_at = window.start + DAY + int(rnd() * (window.end - window.start - DAY - 3600))


def _lifecycle_events(rng: Random, window: Window, sessions: list[Session]) -> list[Event]:
    """Creation, then the status changes the window sees: starting, ending, archiving
    (one ended imported session in ten), deletion."""
    rnd = rng.random
    start, end = window.start, window.end
    events: list[Event] = []
    for s in sessions:
        events.append((s.created_at, "session.upserted", s.payload(s.status)))
        stop = min(s.deleted_at or NEVER, end)
        status = s.status
        if status == NOT_STARTED and s.start_at > s.created_at and s.start_at < stop:
            t = s.start_at + 300 + int(rnd() * 600)
            if t < stop:
                status = ONGOING
                events.append((t, "session.upserted", s.payload(status)))
        if status == ONGOING and s.end_at is not None and s.end_at + 1 < stop:
            t = s.end_at + 1 + 300 + int(rnd() * 600)
            if t < stop:
                status = ENDED
                events.append((t, "session.upserted", s.payload(status)))
        if status == ENDED and s.imported and len(window.days) >= 2 and rnd() < 0.1:
            t = start + 3600 + int(rnd() * (end - start - 7200))
            if t < stop:
                events.append((t, "session.upserted", s.payload(ARCHIVED)))
        if s.deleted_at is not None:
            events.append((s.deleted_at, "session.deleted", {"session_id": s.session_id}))
    return events


def _open_for_enrollment(s: Session, window: Window) -> None:
    """Enrollment opens three weeks before the start and closes at the end, the
    deletion or the window's end. History-import enrollments of imported sessions
    are in the two years before the window; live ones start an hour after creation."""
    opens = s.start_at - ENROLL_BEFORE_START
    closes = min(s.end_at if s.end_at is not None else NEVER, s.deleted_at or NEVER, window.end)
    s.history_from = max(opens, window.start - HISTORY_DEPTH)
    s.history_until = min(closes, window.start - 3600) if s.imported else s.history_from - 1
    s.live_from, s.live_until = max(opens, s.created_at + 3600, window.start), closes
