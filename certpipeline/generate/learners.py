"""Learners: profile, group memberships, enrollments with their progress, awards and
answers, deletions; one learner's events at a time, handed to the delivery in order.

About 88 % of the learners registered before the window: the first export day
imports their history (past enrollments with their latest progress snapshot,
awards, answers), with historical timestamps in the payload and the import time as
``occurred_at``. The others register during the window. The first learners are the
staff (see :mod:`certpipeline.generate.catalog`), then each division's group admin.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from operator import itemgetter
from random import Random

from certpipeline.events import ENROLLMENT_STATUSES, MEMBER_ROLES
from certpipeline.generate.catalog import Catalog, Event, Group, staff_count, user_id
from certpipeline.generate.sampling import WeightedChoice, poisson
from certpipeline.generate.sessions import Session
from certpipeline.generate.timeline import DAY, NEVER, Window, iso_timestamp
from certpipeline.generate.vocabulary import (
    CHOICES,
    COUNTRIES,
    EMAIL_DOMAINS,
    EMPLOYMENT_TYPES,
    FIRST_NAMES,
    FREE_TEXT_ANSWERS,
    JOB_LEVELS,
    LAST_NAMES,
    PARTNER_EMAIL_DOMAINS,
    email_part,
)

IN_PROGRESS, COMPLETED, FAILED, NOT_STARTED = "in_progress", "completed", "failed", "not_started"
assert {IN_PROGRESS, COMPLETED, FAILED, NOT_STARTED} <= set(ENROLLMENT_STATUSES)
LEARNER, COACH, ADMIN = "learner", "coach", "admin"
assert {LEARNER, COACH, ADMIN} <= set(MEMBER_ROLES)

COUNTRY = WeightedChoice.of([name for name, _ in COUNTRIES], [weight for _, weight in COUNTRIES])
JOB_LEVEL = WeightedChoice.of(range(len(JOB_LEVELS)), [weight for _, weight in JOB_LEVELS])
EMPLOYMENT_TYPE = WeightedChoice.of([name for name, _ in EMPLOYMENT_TYPES], [w for _, w in EMPLOYMENT_TYPES])
HISTORY_ENROLLMENTS = poisson(1.7)  # per learner registered over two days before the window
MAX_REENROLLMENTS = 4  # automatic re-enrollments in a row


class Learners:
    """Generates learner ``index`` (0-based) with ``generate(index)``, in increasing order."""

    def __init__(self, rng: Random, window: Window, catalog: Catalog, learners: int,
                 emit: Callable[[int, str, dict], None]):
        self.rng, self.catalog, self.learners, self.emit = rng, catalog, learners, emit
        self.start, self.end = window.start, window.end
        self.staff_count = staff_count(learners)
        self.live_enrollments = poisson(min(0.025 * len(window.days), 8.0))
        self.enrollment_numbers = itertools.count(1)
        self.award_numbers = itertools.count(1)
        self.attempt_numbers = itertools.count(1)

    def generate(self, index: int) -> None:
        rnd = self.rng.random
        start, end = self.start, self.end
        uid = user_id(index)
        is_staff = index < self.staff_count
        imported = is_staff or rnd() < 0.88
        if imported:  # registered up to two years before the window; imported on the first day
            registered = start - 3600 - int(rnd() * 730 * DAY)
            imported_at = start + 3600 + (index * 18_000) // self.learners + int(rnd() * 60)
            created_at = start + (index * 1740) // self.staff_count if is_staff else imported_at
            live_from = imported_at + 900
        else:  # after the first day's catalog import
            registered = start + 7200 + int(rnd() * (end - start - 9000))
            imported_at = created_at = registered
            live_from = registered + 300
        live_span = end - live_from - 600

        profile, team, partner, job_level = self._profile(index, uid, is_staff, registered)
        events: list[Event] = [(registered, "user.upserted", profile)]
        self._memberships(index, uid, team, partner, registered, events)
        if not partner and live_span > 3600 and rnd() < 0.01:  # moved to another team
            t = live_from + int(rnd() * live_span)
            other = self.catalog.organisation.teams.draw(rnd)
            if other is not team:
                events.append((t, "group_member.removed", {"group_id": team.group_id, "user_id": uid, "role": LEARNER}))
                events.append((t + 1, "group_member.added", {"group_id": other.group_id, "user_id": uid, "role": LEARNER}))
        if live_span > 3600 and rnd() < 0.04:  # promoted
            custom_fields = dict(profile["custom_fields"])
            custom_fields["job_level"] = JOB_LEVELS[min(job_level + 1, len(JOB_LEVELS) - 1)][0]
            promoted = dict(profile)
            promoted["custom_fields"] = custom_fields
            events.append((live_from + int(rnd() * live_span), "user.upserted", promoted))
        self._enrollments(uid, imported, registered, live_from, live_span, events)
        self._award_by_hand(uid, registered, events)
        events.sort(key=itemgetter(0))
        if not is_staff:
            events = self._maybe_deleted(uid, imported, registered, live_from, live_span, events)
        self._deliver(events, imported_at, created_at)

    def _profile(self, index: int, uid: str, is_staff: bool, registered: int) -> tuple[dict, Group, bool, int]:
        """The user.upserted payload, the learner's team, whether it is a partner's, and
        the job level's index."""
        rnd = self.rng.random
        organisation = self.catalog.organisation
        first = FIRST_NAMES[int(rnd() * len(FIRST_NAMES))]
        last = LAST_NAMES[int(rnd() * len(LAST_NAMES))]
        partner = (not is_staff) and rnd() < 0.04
        if partner:
            team = organisation.partner_teams[int(rnd() * len(organisation.partner_teams))]
            domain = PARTNER_EMAIL_DOMAINS[int(rnd() * len(PARTNER_EMAIL_DOMAINS))]
        else:
            team = organisation.teams.draw(rnd)
            domain = EMAIL_DOMAINS[int(rnd() * len(EMAIL_DOMAINS))]
        custom_fields = {}
        if team.division:
            custom_fields["department"] = team.division
        custom_fields["country"] = COUNTRY.draw(rnd)
        job_level = JOB_LEVEL.index(rnd)
        custom_fields["job_level"] = JOB_LEVELS[job_level][0]
        if rnd() < 0.8:
            custom_fields["employment_type"] = EMPLOYMENT_TYPE.draw(rnd)
        if rnd() < 0.5:
            custom_fields["cost_center"] = f"CC-{1000 + int(rnd() * 9000)}"
        profile = {
            "user_id": uid,
            "name": f"{first} {last}",
            "email": f"{email_part(first)}.{email_part(last)}{index + 1}@{domain}",
            "registered_at": iso_timestamp(registered),
            "custom_fields": custom_fields,
            "platform_role": "admin" if index < self.catalog.platform_admins else None,
        }
        return profile, team, partner, job_level

    def _memberships(self, index: int, uid: str, team: Group, partner: bool, registered: int, events: list[Event]) -> None:
        """A learner of their team; each division's admin; a few coaches, department or
        division admins, and members of a second team."""
        rnd = self.rng.random
        organisation = self.catalog.organisation
        events.append((registered + 120, "group_member.added", {"group_id": team.group_id, "user_id": uid, "role": LEARNER}))
        division = index - self.catalog.platform_admins
        if 0 <= division < len(organisation.divisions):
            events.append((registered + 150, "group_member.added",
                           {"group_id": organisation.divisions[division].group_id, "user_id": uid, "role": ADMIN}))
        if partner:
            return
        r = rnd()
        if r < 0.025:
            events.append((registered + 180, "group_member.added", {"group_id": team.group_id, "user_id": uid, "role": COACH}))
        elif r < 0.03:
            department = team.parent
            group = department if rnd() < 0.6 else department.parent
            events.append((registered + 180, "group_member.added", {"group_id": group.group_id, "user_id": uid, "role": ADMIN}))
        if rnd() < 0.05:
            other = organisation.teams.draw(rnd)
            if other is not team:
                events.append((registered + 240, "group_member.added",
                               {"group_id": other.group_id, "user_id": uid, "role": LEARNER}))

    def _enrollments(self, uid: str, imported: bool, registered: int, live_from: int, live_span: int,
                     events: list[Event]) -> None:
        """A Poisson number of past enrollments (imported learners registered at least
        two days before the window), then of live ones; at most one per session, four
        tries each to find a session open at a time the learner can enroll."""
        rnd = self.rng.random
        taken: set[str] = set()
        history, live = self.catalog.history_sessions, self.catalog.live_sessions
        if imported and registered < self.start - 2 * DAY and history.items:
            for _ in range(HISTORY_ENROLLMENTS.index(rnd)):
                for _try in range(4):
                    s = history.draw(rnd)
                    lo, hi = max(s.history_from, registered + 3600), s.history_until
                    if hi > lo and s.session_id not in taken:
                        taken.add(s.session_id)
                        # skewed towards the recent past
                        self._enroll(uid, s, hi - int((hi - lo) * rnd() ** 1.5), False, events, 0)
                        break
        if live_span > 3600 and live.items:
            for _ in range(self.live_enrollments.index(rnd)):
                for _try in range(4):
                    s = live.draw(rnd)
                    lo, hi = max(s.live_from, live_from), s.live_until - 600
                    if hi > lo and s.session_id not in taken:
                        taken.add(s.session_id)
                        self._enroll(uid, s, lo + int((hi - lo) * rnd()), False, events, 0)
                        break

    def _award_by_hand(self, uid: str, registered: int, events: list[Event]) -> None:
        """0.4 % get a path's certificate from an admin, without an enrollment."""
        rnd = self.rng.random
        paths = self.catalog.path_courses
        if paths and rnd() < 0.004:
            path = paths[int(rnd() * len(paths))]
            t = registered + 7 * DAY + int(rnd() * max(DAY, self.end - registered - 8 * DAY))
            events.append((t, "certificate.issued", {
                "award_id": f"aw-{next(self.award_numbers):08d}", "user_id": uid,
                "certificate_id": path.certificates[0].certificate_id, "issued_at": iso_timestamp(t),
                "enrollment_id": None, "course_id": path.course_id}))

    def _maybe_deleted(self, uid: str, imported: bool, registered: int, live_from: int, live_span: int,
                       events: list[Event]) -> list[Event]:
        """0.8 % of the imported learners were deleted before the window (at least 30
        days after registering), 1.2 % (2 % of the others) during it: their events
        stop there."""
        rnd = self.rng.random
        r = rnd()
        deleted_at = None
        if r < 0.008 and imported and self.start - registered > 30 * DAY:
            deleted_at = registered + int((self.start - registered) * (0.3 + 0.69 * rnd()))
        elif r < 0.02 and live_span > 3600:
            deleted_at = live_from + int(rnd() * live_span)
        if deleted_at is None:
            return events
        return [e for e in events if e[0] < deleted_at] + [(deleted_at, "user.deleted", {"user_id": uid})]

    def _deliver(self, events: list[Event], imported_at: int, created_at: int) -> None:
        """Events before the window are the history import: the first at the user's
        creation, the others one second apart from the import time (their payloads keep
        the historical timestamps). Live events follow in order, pushed after the
        import when they would precede it; those at or after the window's end are not
        exported yet."""
        emit = self.emit
        start, end = self.start, self.end
        imported = 0
        cursor = imported_at - 1
        for t, event_type, payload in events:
            if t < start:
                emit(created_at if imported == 0 else imported_at + imported, event_type, payload)
                cursor = imported_at + imported
                imported += 1
            else:
                t = t if t > cursor else cursor + 1
                if t >= end:
                    break
                emit(t, event_type, payload)
                cursor = t

    # ----------------------------------------------------------------- one enrollment

    def _enroll(self, uid: str, s: Session, enrolled_at: int, auto: bool, out: list[Event], depth: int) -> None:
        """One enrollment and what follows it: progress to an outcome, an award, a
        revocation or an automatic re-enrollment before expiry, answers. Appends to
        ``out`` what happened before the enrollment, session or window stops it."""
        rnd = self.rng.random
        enrollment_id = f"enr-{next(self.enrollment_numbers):08d}"
        created = {"enrollment_id": enrollment_id, "user_id": uid, "session_id": s.session_id,
                   "enrolled_at": iso_timestamp(enrolled_at)}
        if auto or rnd() < 0.8:  # the optional field, present in most exports
            created["auto_reenrolled"] = auto
        events: list[Event] = [(enrolled_at, "enrollment.created", created)]
        stop = min(s.deleted_at or NEVER, self.end)
        if rnd() < 0.015:  # removed by an admin
            deleted_at = enrolled_at + 3600 + int(rnd() * 60 * DAY)
            if deleted_at < stop:
                stop = deleted_at
                events.append((deleted_at, "enrollment.deleted", {"enrollment_id": enrollment_id}))
        started = max(enrolled_at + 600 + int(rnd() * 3 * DAY), s.start_at + 8 * 3600 + int(rnd() * 3 * DAY))
        session_end = s.end_at if s.end_at is not None else NEVER
        r = rnd()
        outcome = COMPLETED if r < 0.62 else FAILED if r < 0.68 else IN_PROGRESS if r < 0.9 else NOT_STARTED
        if started >= session_end:
            outcome = NOT_STARTED
        if outcome == NOT_STARTED:
            if rnd() < 0.5:
                events.append((enrolled_at + 60, "enrollment.progressed", {
                    "enrollment_id": enrollment_id, "status": NOT_STARTED, "progress_percent": 0,
                    "completed_at": None}))
        else:
            finished, quiz_at = self._progress(enrollment_id, outcome, started, session_end, events)
            if outcome == COMPLETED and s.certificate is not None and rnd() < 0.92:
                self._award(uid, s, enrollment_id, finished, stop, session_end, depth, events, out)
            if quiz_at is not None and s.course.question_sets:
                self._answers(uid, s, quiz_at, enrolled_at + 60, events)
        _keep_before_stop(events, stop, self.start, out)

    def _progress(self, enrollment_id: str, outcome: str, started: int, session_end: int,
                  events: list[Event]) -> tuple[int, int | None]:
        """One to three in-progress snapshots, then completion or failure. Returns when
        it finished, and when the learner took the quizzes (at 40 % progress, or half
        an hour before finishing)."""
        rnd = self.rng.random
        duration = int((2 + 40 * rnd() * rnd()) * DAY)
        if started + duration >= session_end:
            duration = max(3600, session_end - started - 3600)
        finished = started + duration
        steps = 1 + int(rnd() * 3)
        highest = 99 if outcome == COMPLETED else (90 if outcome == FAILED else 95)
        percents = sorted(5 + int(rnd() * (highest - 5)) for _ in range(steps))
        quiz_at = None
        for j, percent in enumerate(percents):
            t = started + duration * j // (steps + 1) + int(rnd() * 600)
            percent = percent if rnd() < 0.9 else percent + 0.5
            events.append((t, "enrollment.progressed", {
                "enrollment_id": enrollment_id, "status": IN_PROGRESS, "progress_percent": percent,
                "completed_at": None}))
            if quiz_at is None and percent >= 40:
                quiz_at = t
        if outcome == COMPLETED:
            events.append((finished, "enrollment.progressed", {
                "enrollment_id": enrollment_id, "status": COMPLETED, "progress_percent": 100,
                "completed_at": iso_timestamp(finished)}))
        elif outcome == FAILED:
            events.append((finished, "enrollment.progressed", {
                "enrollment_id": enrollment_id, "status": FAILED, "progress_percent": percents[-1],
                "completed_at": None}))
        if quiz_at is None and outcome in (COMPLETED, FAILED):
            quiz_at = finished - 1800
        return finished, quiz_at

    def _award(self, uid: str, s: Session, enrollment_id: str, finished: int, stop: int, session_end: int,
               depth: int, events: list[Event], out: list[Event]) -> None:
        """The session's certificate, issued within hours of completion (8 % name the
        course too); 2.5 % are revoked later, otherwise an auto-re-enrollment session
        re-enrolls the learner a few weeks before the certificate expires."""
        rnd = self.rng.random
        issued_at = finished + 60 + int(rnd() * 4 * 3600)
        award_id = f"aw-{next(self.award_numbers):08d}"
        events.append((issued_at, "certificate.issued", {
            "award_id": award_id, "user_id": uid, "certificate_id": s.certificate.certificate_id,
            "issued_at": iso_timestamp(issued_at), "enrollment_id": enrollment_id,
            "course_id": s.course.course_id if rnd() < 0.08 else None}))
        if rnd() < 0.025:
            events.append((issued_at + DAY + int(rnd() * 120 * DAY), "certificate.revoked", {"award_id": award_id}))
        elif s.auto_reenrollment and s.certificate.validity_months and depth < MAX_REENROLLMENTS:
            reenroll_at = issued_at + int((s.certificate.validity_months * 30.44 - 20 - rnd() * 25) * DAY)
            if reenroll_at < stop and reenroll_at < session_end and reenroll_at > issued_at:
                self._enroll(uid, s, reenroll_at, True, out, depth + 1)

    def _answers(self, uid: str, s: Session, quiz_at: int, earliest: int, events: list[Event]) -> None:
        """Each of the course's question sets is taken with 55 % probability, in one
        attempt or two; the second attempt scores better."""
        rnd = self.rng.random
        for question_set in s.course.question_sets:
            if rnd() >= 0.55:
                continue
            attempts = 1 if rnd() < 0.75 else 2
            attempt_at = max(quiz_at - 600 - int(rnd() * 3000), earliest)
            for attempt in range(attempts):
                attempt_id = f"att-{next(self.attempt_numbers):08d}"
                t = attempt_at
                p_correct = 0.7 if attempt == 0 else 0.85
                for q in question_set.questions:
                    t += 15 + int(rnd() * 105)
                    if q.free_text:
                        response = FREE_TEXT_ANSWERS[int(rnd() * len(FREE_TEXT_ANSWERS))]
                        score = min(q.max_score, int(rnd() * (q.max_score + 1)) + (1 if rnd() < p_correct else 0))
                    elif rnd() < p_correct:
                        response, score = q.correct_choice, q.max_score
                    else:
                        response = CHOICES[int(rnd() * len(CHOICES))]
                        score = q.max_score if response == q.correct_choice else 0
                    events.append((t, "question.answered", {
                        "attempt_id": attempt_id, "user_id": uid, "session_id": s.session_id,
                        "question_set_id": question_set.question_set_id, "question_id": q.question_id,
                        "question_text": q.text, "response": response, "score": score,
                        "max_score": q.max_score, "answered_at": iso_timestamp(t)}))
                attempt_at = t + 3600 + int(rnd() * 3 * DAY)


def _keep_before_stop(events: list[Event], stop: int, window_start: int, out: list[Event]) -> None:
    """Append to ``out`` the events before ``stop`` (and the deletion that set it). Of
    the progress snapshots before the window, the history import carries only the
    latest."""
    latest_imported = None
    for i, (t, event_type, _) in enumerate(events):
        if t < window_start and event_type == "enrollment.progressed":
            if latest_imported is None or t >= events[latest_imported][0]:
                latest_imported = i
    for i, event in enumerate(events):
        t, event_type, _ = event
        if t < stop or event_type == "enrollment.deleted":
            if event_type == "enrollment.progressed" and t < window_start and i != latest_imported:
                continue
            out.append(event)
