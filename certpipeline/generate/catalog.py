"""The platform's catalog on the first export day, and its changes during the window.

An organisation tree (a company with divisions, departments and teams; external
partners with their own teams), certificates, courses and learning paths with their
question sets, and sessions (see :mod:`certpipeline.generate.sessions`). The first
``staff_count`` users are the staff who author all of it.

Sizes grow with the number of learners, within bounds, so that a small run still has
every kind of thing the reports meet and a large one stays realistic.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from operator import itemgetter
from random import Random

from certpipeline.generate.sampling import WeightedChoice
from certpipeline.generate.sessions import Session, build_sessions
from certpipeline.generate.timeline import DAY, Window
from certpipeline.generate.vocabulary import (
    COURSE_TITLES,
    DIVISIONS,
    FREE_TEXT_QUESTION_PREFIX,
    PARTNER_TEAM_NAMES,
    PARTNERS,
    PATH_TITLES,
    QUESTIONS,
    REGIONS,
    TEAM_NAMES,
    TOPICS,
    CHOICES,
    numbered,
)

# An event before delivery: (occurred at, in seconds since the epoch; event type; payload).
Event = tuple[int, str, dict]


def user_id(index: int) -> str:
    return f"usr-{index + 1:07d}"


def staff_count(learners: int) -> int:
    """The first users are staff: they create courses, teach and mentor."""
    return min(learners, max(8, min(2000, learners // 100)))


def platform_admin_count(learners: int) -> int:
    """The first staff members are platform admins."""
    return min(staff_count(learners), max(2, min(20, learners // 5000)))


# --------------------------------------------------------------------------- types


@dataclass(eq=False, slots=True)
class Group:
    group_id: str
    name: str
    parent: Group | None
    division: str | None  # the company division it belongs to; None outside the company

    def payload(self, name: str | None = None) -> dict:
        return {"group_id": self.group_id, "name": name or self.name,
                "parent_group_id": self.parent.group_id if self.parent else None}


@dataclass(eq=False, slots=True)
class Certificate:
    certificate_id: str
    title: str
    certificate_type: str
    owner_group_id: str | None
    validity_months: int | None

    def payload(self, title: str | None = None) -> dict:
        return {
            "certificate_id": self.certificate_id,
            "title": title or self.title,
            "certificate_type": self.certificate_type,
            "owner_group_id": self.owner_group_id,
            "validity_months": self.validity_months,
        }


@dataclass(frozen=True, slots=True)
class Question:
    question_id: str
    text: str
    max_score: int
    free_text: bool
    correct_choice: str  # of CHOICES; unused for free text


@dataclass(frozen=True, slots=True)
class QuestionSet:
    question_set_id: str
    questions: tuple[Question, ...]


@dataclass(eq=False, slots=True)
class Course:
    """A course, or a learning path (``is_path``): paths grant a certificate."""

    course_id: str
    name: str
    topic: str
    is_path: bool
    created_by: str
    authors: list[str]
    instructors: list[str]
    is_new: bool  # created during the window rather than imported on the first day
    created_at: int
    certificates: list[Certificate] = field(default_factory=list)
    question_sets: list[QuestionSet] = field(default_factory=list)

    def payload(self, instructors: list[str] | None = None) -> dict:
        return {
            "course_id": self.course_id,
            "name": self.name,
            "created_by": self.created_by,
            "authors": list(self.authors),
            "instructors": list(instructors if instructors is not None else self.instructors),
        }


@dataclass(frozen=True)
class Organisation:
    company: Group
    divisions: list[Group]  # each has a group admin among the first learners after the platform admins
    teams: WeightedChoice[Group]  # company teams, some much larger than others
    partner_teams: list[Group]


@dataclass(frozen=True)
class Catalog:
    """What learners are generated against, and the catalog's own events."""

    events: list[Event]  # in time order, all before the window's end
    staff: list[str]
    platform_admins: int
    organisation: Organisation
    history_sessions: WeightedChoice[Session]  # open for enrollment before the window
    live_sessions: WeightedChoice[Session]  # open for enrollment during the window
    path_courses: list[Course]  # imported paths, whose certificate an admin may award by hand


# --------------------------------------------------------------------------- building


class Staff:
    """The staff's user ids, and draws of one or a few of them."""

    def __init__(self, rng: Random, staff: list[str]):
        self.rng, self.ids = rng, staff

    def any(self) -> str:
        return self.ids[int(self.rng.random() * len(self.ids))]

    def some(self, k: int) -> list[str]:
        return self.rng.sample(self.ids, min(k, len(self.ids)))


def build_catalog(rng: Random, window: Window, learners: int) -> Catalog:
    """Draw the catalog. The order of the steps is the order of the draws."""
    staff = Staff(rng, [user_id(i) for i in range(staff_count(learners))])
    organisation, events = _build_organisation(rng, window, learners)
    courses, first_paths = _build_courses(rng, window, learners, staff)
    certificates = _grant_certificates(rng, courses, first_paths, organisation)
    events += _certificate_events(rng, window, certificates)
    _build_question_sets(rng, courses, first_paths)
    events += _course_events(rng, window, courses, staff)
    sessions, session_events = build_sessions(rng, window, courses, first_paths, staff)
    events += session_events
    events.sort(key=itemgetter(0))
    return Catalog(
        events=[e for e in events if e[0] < window.end],
        staff=staff.ids,
        platform_admins=platform_admin_count(learners),
        organisation=organisation,
        history_sessions=WeightedChoice.of(*_weighted([s for s in sessions if s.history_until > s.history_from])),
        live_sessions=WeightedChoice.of(*_weighted([s for s in sessions if s.live_until > s.live_from])),
        path_courses=[c for c in courses if c.is_path and not c.is_new],
    )


def _weighted(sessions: list[Session]) -> tuple[list[Session], list[float]]:
    return sessions, [s.weight for s in sessions]


def _build_organisation(rng: Random, window: Window, learners: int) -> tuple[Organisation, list[Event]]:
    """Company -> divisions -> departments -> teams; partners -> organisations -> teams.
    Groups are upserted on the first day, top level first; two are renamed later."""
    rnd = rng.random
    numbers = itertools.count(1)

    def group(name: str, parent: Group | None, division: str | None) -> Group:
        return Group(f"grp-{next(numbers):05d}", name, parent, division)

    company = group("Acme Corporation", None, None)
    division_count = min(len(DIVISIONS), 3 + learners // 4000)
    divisions = [group(DIVISIONS[k], company, DIVISIONS[k]) for k in range(division_count)]
    department_count = max(division_count, min(600, learners // 400))
    departments = []
    for k in range(department_count):
        division = divisions[k % division_count]
        region = numbered(REGIONS, k // division_count)
        departments.append(group(f"{division.name} {region}", division, division.name))
    team_count = max(department_count, min(40_000, learners // 30))
    teams = []
    for k in range(team_count):
        department = departments[k % department_count]
        teams.append(group(f"{department.name} · {numbered(TEAM_NAMES, k // department_count)}",
                           department, department.division))
    partners = group("External Partners", None, None)
    partner_organisations = [group(name, partners, None) for name in PARTNERS]
    partner_teams = []
    for partner in partner_organisations:
        for t in range(1 + int(rnd() * 2)):
            partner_teams.append(group(f"{partner.name} {PARTNER_TEAM_NAMES[t]}", partner, None))
    team_sizes = [min(20.0, rng.paretovariate(1.6)) for _ in teams]

    events: list[Event] = []
    start, end = window.start, window.end
    levels = [[company, partners], divisions + partner_organisations, departments + partner_teams, teams]
    # (seconds after midnight the level starts, seconds its groups spread over)
    slots = [(1800, 10), (1810, 50), (1860, 120), (1980, 300)]
    for groups, (offset, span) in zip(levels, slots):
        for k, g in enumerate(groups):
            events.append((start + offset + k * span // len(groups), "group.upserted", g.payload()))
    if len(window.days) >= 2:  # a reorganisation: a few groups renamed during the window
        for g in rng.sample(departments + teams, min(2, len(departments) + len(teams))):
            events.append((start + DAY + int(rnd() * (end - start - DAY - 3600)), "group.upserted",
                           g.payload(g.name + " (renamed)")))
    organisation = Organisation(company, divisions, WeightedChoice.of(teams, team_sizes), partner_teams)
    return organisation, events


def _build_courses(rng: Random, window: Window, learners: int, staff: Staff) -> tuple[list[Course], list[Course]]:
    """Courses first, then paths; titles from shuffled (topic, pattern) pairs. Returns
    the courses and the first three paths, which every run has whatever its size."""
    rnd = rng.random
    course_count = max(4, min(2000, learners // 150))
    path_count = max(3, min(800, learners // 400))
    course_titles = [(t, p) for t in TOPICS for p in COURSE_TITLES]
    rng.shuffle(course_titles)
    path_titles = [(t, p) for t in TOPICS for p in PATH_TITLES]
    rng.shuffle(path_titles)
    days = len(window.days)
    courses = []
    for k in range(course_count + path_count):
        is_path = k >= course_count
        j = k - course_count if is_path else k
        titles = path_titles if is_path else course_titles
        topic, pattern = titles[j % len(titles)]
        created_by = staff.any()
        authors = sorted(set([created_by] + staff.some(int(rnd() * 3))))
        instructors = staff.some(1 + int(rnd() * 3))
        is_new = (not is_path) and k > 0 and days >= 4 and rnd() < 0.03
        if is_new:
            created_at = window.start + DAY + int(rnd() * (days // 2) * DAY)
        else:
            created_at = window.start + 2400 + k * 600 // (course_count + path_count)
        courses.append(Course(
            course_id=f"pth-{j + 1:04d}" if is_path else f"crs-{j + 1:05d}",
            name=pattern.format(t=topic) + (f" ({j // len(titles) + 1})" if j >= len(titles) else ""),
            topic=topic, is_path=is_path, created_by=created_by, authors=authors, instructors=instructors,
            is_new=is_new, created_at=created_at,
        ))
    return courses, [c for c in courses if c.is_path][:3]


def _grant_certificates(rng: Random, courses: list[Course], first_paths: list[Course],
                        organisation: Organisation) -> list[Certificate]:
    """Certificates, attached to the courses whose sessions grant them: every path grants
    one (a fifth share another path's), about a third of the courses one or two, and the
    first course one of each type (seed 000). Two more are linked to nothing."""
    rnd = rng.random
    certificates: list[Certificate] = []
    owners = [organisation.company.group_id] + [d.group_id for d in organisation.divisions]

    def certificate(title: str, certificate_type: str, validity_months: int | None) -> Certificate:
        owner = owners[int(rnd() * len(owners))] if rnd() < 0.92 else None
        made = Certificate(f"cert-{len(certificates) + 1:04d}", title, certificate_type, owner, validity_months)
        certificates.append(made)
        return made

    def path_validity() -> int | None:
        r = rnd()
        return 12 if r < 0.35 else 24 if r < 0.5 else 6 if r < 0.8 else None

    for c in courses:
        if c.is_path and c in first_paths:
            # the first paths cover every validity, whatever the size: 12 and 6 months
            # (re-certified through automatic re-enrollment) and none
            k = first_paths.index(c)
            c.certificates = [certificate(f"Certified {c.topic} Professional",
                                          ("professional", "verified", "professional")[k], (12, 6, None)[k])]
        elif c.is_path:
            shared = [x for x in courses if x.is_path and x.certificates]
            if shared and rnd() < 0.2:
                c.certificates = [shared[int(rnd() * len(shared))].certificates[0]]
            else:
                certificate_type = "professional" if rnd() < 0.6 else "verified"
                title = (f"Certified {c.topic} Professional" if certificate_type == "professional"
                         else f"{c.topic} Practitioner Certificate")
                c.certificates = [certificate(title, certificate_type, path_validity())]
        elif c is courses[0]:  # seed 000: one course grants certificates of several types
            c.certificates = [certificate(f"{c.name} – {t.title()} Certificate", t, v)
                              for t, v in (("verified", None), ("honor", None), ("professional", 24))]
        elif rnd() < 0.35:
            types = ("verified", "honor") if rnd() < 0.4 else (("verified",) if rnd() < 0.5 else ("honor",))
            c.certificates = [certificate(f"{c.name} – {t.title()} Certificate", t,
                                          None if rnd() < 0.6 else (12 if rnd() < 0.5 else 24)) for t in types]
    for _ in range(2):  # definitions not linked to any session
        certificate(f"{TOPICS[int(rnd() * len(TOPICS))]} Legacy Certificate", "honor", None)
    return certificates


def _certificate_events(rng: Random, window: Window, certificates: list[Certificate]) -> list[Event]:
    events = [(window.start + 2100 + k * 300 // len(certificates), "certificate.upserted", c.payload())
              for k, c in enumerate(certificates)]
    if len(window.days) >= 3 and certificates:  # a title correction during the window
        c = certificates[int(rng.random() * len(certificates))]
        events.append((window.start + 2 * DAY + int(rng.random() * DAY), "certificate.upserted",
                       c.payload(c.title + " (v2)")))
    return events


def _build_question_sets(rng: Random, courses: list[Course], first_paths: list[Course]) -> None:
    """One or two question sets for about 40 % of the courses (always the first course
    and the first path), three to six questions each; one question kind in eight is
    answered in free text and scored out of 5."""
    rnd = rng.random
    set_numbers, question_numbers = itertools.count(1), itertools.count(1)
    for c in courses:
        if rnd() < 0.4 or c is courses[0] or c in first_paths[:1]:
            for _ in range(1 + int(rnd() * 2)):
                set_id = f"qs-{next(set_numbers):05d}"
                questions = []
                for _ in range(3 + int(rnd() * 4)):
                    question_id = f"q-{next(question_numbers):06d}"
                    pattern = QUESTIONS[int(rnd() * len(QUESTIONS))]
                    free_text = pattern.startswith(FREE_TEXT_QUESTION_PREFIX)
                    max_score = 5 if free_text else (1 if rnd() < 0.75 else 2)
                    questions.append(Question(question_id, pattern.format(t=c.topic), max_score, free_text,
                                              CHOICES[int(rnd() * len(CHOICES))]))
                c.question_sets.append(QuestionSet(set_id, tuple(questions)))


def _course_events(rng: Random, window: Window, courses: list[Course], staff: Staff) -> list[Event]:
    """Each course's creation; one in twenty gets a new instructor during the window."""
    rnd = rng.random
    start, end = window.start, window.end
    events: list[Event] = []
    for c in courses:
        events.append((c.created_at, "course.upserted", c.payload()))
        if len(window.days) >= 2 and rnd() < 0.05:
            since = max(c.created_at, start)
            t = since + 3600 + int(rnd() * (end - since - 7200))
            if t < end:
                events.append((t, "course.upserted", c.payload(list(dict.fromkeys(c.instructors + staff.some(1))))))
    return events
