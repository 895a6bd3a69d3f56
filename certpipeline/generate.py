"""Deterministic generator of realistic synthetic landing files (contract sections 1 and 2).

``generate_landing`` writes ``landing/events/date=YYYY-MM-DD/part-NNNNN.jsonl[.gz]`` for
``days`` consecutive export days ending at ``end_date``. The data imitates a corporate
learning platform that starts exporting on the first day:

* day 0 carries the catalog (groups, certificates, courses/paths, sessions) and a
  history import of every user who registered before the window (their memberships,
  past enrollments with their latest progress snapshot, awards, answers), with the
  historical timestamps in the payload and the import time as ``occurred_at``;
* the following days carry live activity: new users, enrollments, progress, awards,
  revocations, automatic re-enrollments, session status changes, deletions;
* about 2 % of the events land in a later day's folder than the day they occurred,
  about 0.5 % are delivered twice (same line, same or later day), and about 0.1 % of
  the lines are malformed, cycling through the kinds of rejection of the contract.

The schema comes from :mod:`certpipeline.events`; the generator builds payloads with
exactly its field names and values from its allowed sets, and corrupts a field
according to its declared kind when it writes a malformed line.

Learners are generated in chunks; each chunk's lines are appended to the day files
(one open handle per day), so memory does not grow with the number of learners.
Everything is drawn from one ``random.Random(seed)`` so the bytes are a function of
(seed, learners, days, end_date, max_lines_per_file).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import shutil
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path
from random import Random
from typing import Callable

from certpipeline.events import (
    BOOL,
    ENROLLMENT_STATUSES,
    EVENT_TYPES,
    INT,
    MEMBER_ROLES,
    NUMBER,
    SESSION_STATUSES,
    STRING_LIST,
    STRING_MAP,
    TIMESTAMP,
)

__all__ = ["GenerationSummary", "generate_landing"]

DAY = 86_400
CHUNK_SIZE = 10_000
_EPOCH_ORD = dt.date(1970, 1, 1).toordinal()
_INF = 1 << 62

# Rates of the delivery defects.
LATE_RATE = 0.02
DUPLICATE_EVERY = (100, 300)  # one duplicate every 100..300 events: ~0.5 %
MALFORMED_EVERY = (600, 1400)  # one malformed line every 600..1400 events: ~0.1 %
MALFORMED_KINDS = (
    "invalid_json",
    "unknown_event_type",
    "missing_required_field",
    "wrong_type",
    "not_allowed",
    "bad_timestamp",
)

# Statuses used below, checked against the schema once at import.
_IN_PROGRESS, _COMPLETED, _FAILED, _NOT_STARTED = "in_progress", "completed", "failed", "not_started"
_ONGOING, _ENDED, _ARCHIVED = "ongoing", "ended", "archived"
assert {_IN_PROGRESS, _COMPLETED, _FAILED, _NOT_STARTED} <= set(ENROLLMENT_STATUSES)
assert {_NOT_STARTED, _ONGOING, _ENDED, _ARCHIVED} <= set(SESSION_STATUSES)
_LEARNER, _COACH, _ADMIN = "learner", "coach", "admin"
assert {_LEARNER, _COACH, _ADMIN} <= set(MEMBER_ROLES)

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
try:  # the C encoder without the per-call set-up of JSONEncoder.encode: same output, faster
    from json.encoder import c_make_encoder as _c_make_encoder, encode_basestring as _encode_str

    _c_encode = _c_make_encoder(None, json.JSONEncoder().default, _encode_str, None, ":", ",", False, False, True)

    def _encode_payload(obj) -> str:
        return "".join(_c_encode(obj, 0))

except (ImportError, TypeError):  # pragma: no cover - interpreters without the C accelerator
    _encode_payload = _encode
_TOD = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


@dataclass
class GenerationSummary:
    days: list[dt.date]
    files: int
    lines: int  # all lines written, malformed included
    malformed_lines: int
    duplicate_lines: int


# --------------------------------------------------------------------------- vocabulary

_FIRST = (
    "Emma Liam Olivia Noah Ava Lucas Sophia Mateo Mia Elijah Amelia Hugo Chloé Léa Jules Zoë "
    "José Ana João Søren Ingrid Björn Aisha Omar Fatima Yusuf Priya Arjun Mei Wei Hiroshi Yuki "
    "Sakura Min-jun Ji-woo Olga Dmitri Chiara Marco Giulia Lukas Hannah Finn Maja Kofi Amara "
    "Chinedu Nia Santiago Valentina Camila Diego Isabella Ethan Grace Jack Chloe Leo Ruby Oscar"
).split()
_LAST = (
    "Smith|Johnson|Williams|Brown|Jones|García|Müller|Schmidt|Dubois|Martin|Bernard|Rossi|Russo|"
    "Fernández|López|Silva|Santos|Kowalski|Nowak|Novák|Jensen|Nielsen|Andersson|Johansson|O'Brien|"
    "O'Connor|McCarthy|Kim|Lee|Park|Wang|Li|Zhang|Chen|Tanaka|Suzuki|Sato|Patel|Sharma|Singh|Khan|"
    "Ahmed|Hassan|Okafor|Mensah|Adeyemi|Ivanov|Petrov|Kuznetsov|van der Berg|de Vries|Janssen|"
    "Peeters|Murphy|Walsh|Taylor|Anderson|Thomas|Moore|Clark"
).split("|")
_DOMAINS = ("example.com", "example.com", "example.com", "corp.example.net", "example.org")
_PARTNER_DOMAINS = ("contoso.example", "fabrikam.example", "globex.example")
_COUNTRIES = (
    ("United States", 20), ("France", 12), ("Germany", 12), ("United Kingdom", 10), ("India", 10),
    ("Spain", 6), ("Brazil", 5), ("Canada", 5), ("Japan", 4), ("Netherlands", 4), ("Italy", 4),
    ("Poland", 3), ("Mexico", 3), ("Australia", 3), ("Sweden", 2), ("Singapore", 2),
    ("South Africa", 2), ("Côte d'Ivoire", 1), ("Türkiye", 1),
)
_JOB_LEVELS = (
    ("Individual Contributor", 40), ("Senior", 22), ("Lead", 12), ("Manager", 14),
    ("Senior Manager", 6), ("Director", 4), ("VP", 2),
)
_EMPLOYMENT = (("Full-time", 80), ("Part-time", 8), ("Contractor", 12))
_DIVISIONS = (
    "Sales", "Engineering", "Operations", "Finance", "Human Resources", "Marketing",
    "Customer Support", "Legal", "Manufacturing", "Research & Development",
)
_REGIONS = (
    "EMEA", "North America", "APAC", "LATAM", "DACH", "Nordics", "UK & Ireland", "France",
    "Iberia", "India", "Japan", "ANZ",
)
_TEAM_NAMES = (
    "Alpha Bravo Delta Echo Falcon Harbor Horizon Kestrel Lynx Meridian Nova Orion Phoenix "
    "Quartz Summit Tango Vega Zenith Atlas Borealis Cedar Comet Ember Granite"
).split()
_PARTNERS = ("Contoso Consulting", "Fabrikam Services", "Globex Logistics")
_TOPICS = (
    "Data Privacy", "Information Security", "Cloud Computing", "Project Management",
    "Agile Delivery", "Leadership", "Negotiation", "Public Speaking", "Excel", "SQL",
    "Python Programming", "Machine Learning", "Customer Service", "Sales Fundamentals",
    "Workplace Safety", "Anti-Bribery Compliance", "GDPR", "Diversity & Inclusion",
    "Financial Reporting", "Supply Chain", "Lean Six Sigma", "Time Management",
    "Conflict Resolution", "Coaching Skills", "Product Management", "UX Design",
    "Digital Marketing", "Business Writing", "Risk Management", "First Aid", "Kubernetes",
    "Network Fundamentals", "Quality Assurance", "Change Management", "Accounting Basics",
    "Cybersecurity Awareness", "Code of Conduct", "Presentation Skills", "Data Visualization",
    "Forklift Operation",
)
_COURSE_PATTERNS = (
    "{t} Essentials", "Introduction to {t}", "Advanced {t}", "{t} for Managers",
    "{t}: Best Practices", "Foundations of {t}", "{t} Masterclass", "Practical {t}",
)
_PATH_PATTERNS = ("{t} Certification Path", "{t} Professional Track", "Certified {t} Program", "{t} Learning Path")
_QUESTIONS = (
    "Which of the following best describes {t}?",
    "What is the main goal of {t}?",
    "Select the correct statement about {t}.",
    "True or false: {t} applies to every team.",
    "Which tool is most useful for {t}?",
    "In {t}, what should you do first?",
    "Describe one risk related to {t}.",
    "Which role is accountable for \"{t}\" in your team?",
)
_FREE_TEXT = (
    "Escalate to my manager and document the issue.",
    "Check the policy, then ask the owner.",
    "Loss of customer data & trust",
    "Not sure — I would look it up",
    "Review the checklist before starting",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNKNOWN_TYPES = ("badge.awarded", "course.published", "enrollment.paused", "user.login", "session.moved")
_BAD_ENUMS = ("done", "finished", "member", "superuser", "closed", "pending")


@lru_cache(maxsize=None)
def _ascii(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in text.lower() if ch.isalnum() or ch == "-")


def _numbered(names: tuple[str, ...], i: int) -> str:
    """names[i], with a number once the names run out: 'Alpha', ..., 'Alpha 2', ..."""
    name = names[i % len(names)]
    return f"{name} {i // len(names) + 1}" if i >= len(names) else name


def _cumulative(weights) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


def _poisson_cdf(lam: float) -> list[float]:
    out, p, acc = [], math.exp(-lam), 0.0
    for k in range(0, 200):
        acc += p
        out.append(acc)
        if acc > 1 - 1e-12:
            break
        p *= lam / (k + 1)
    out[-1] = 1.0
    return out


# --------------------------------------------------------------------------- catalog types


class _Group:
    __slots__ = ("id", "name", "parent", "level", "division")

    def __init__(self, gid, name, parent, level, division):
        self.id, self.name, self.parent, self.level, self.division = gid, name, parent, level, division


class _Cert:
    __slots__ = ("id", "title", "type", "owner", "validity")

    def __init__(self, cid, title, ctype, owner, validity):
        self.id, self.title, self.type, self.owner, self.validity = cid, title, ctype, owner, validity

    def payload(self, title=None):
        return {
            "certificate_id": self.id,
            "title": title or self.title,
            "certificate_type": self.type,
            "owner_group_id": self.owner,
            "validity_months": self.validity,
        }


class _Course:
    __slots__ = ("id", "name", "topic", "is_path", "created_by", "authors", "instructors",
                 "certs", "qsets", "created_ts", "is_new")

    def payload(self, instructors=None):
        return {
            "course_id": self.id,
            "name": self.name,
            "created_by": self.created_by,
            "authors": list(self.authors),
            "instructors": list(instructors if instructors is not None else self.instructors),
        }


class _Session:
    __slots__ = ("id", "course", "name", "start", "end", "status", "cert", "auto", "created_by",
                 "mentors", "created_ts", "deleted_ts", "start_ts", "end_ts", "weight",
                 "h_lo", "h_hi", "l_lo", "l_hi", "imported")

    def payload(self, status):
        return {
            "session_id": self.id,
            "course_id": self.course.id,
            "name": self.name,
            "start_date": self.start,
            "end_date": self.end,
            "status": status,
            "certificate_id": self.cert.id if self.cert else None,
            "auto_reenrollment": self.auto,
            "created_by": self.created_by,
            "mentors": list(self.mentors),
        }


# --------------------------------------------------------------------------- day files


class _DayWriter:
    """Parts of one export day; one handle open at a time."""

    def __init__(self, folder: Path, gz: bool, max_lines: int):
        self.folder, self.gz, self.max_lines = folder, gz, max_lines
        self.part = -1
        self.raw = None
        self.fh = None
        self.in_part = 0
        self.files = 0
        self.lines = 0

    def _next_part(self):
        self.close()
        self.part += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{self.part:05d}.jsonl" + (".gz" if self.gz else "")
        self.raw = open(self.folder / name, "wb", buffering=1 << 20)
        if self.gz:
            self.fh = gzip.GzipFile(filename="", mode="wb", fileobj=self.raw, compresslevel=6, mtime=0)
        else:
            self.fh = self.raw
        self.in_part = 0
        self.files += 1

    def write(self, lines: list[str]):
        i, n = 0, len(lines)
        while i < n:
            if self.fh is None or self.in_part >= self.max_lines:
                self._next_part()
            k = min(n - i, self.max_lines - self.in_part)
            self.fh.write(("\n".join(lines[i:i + k]) + "\n").encode("utf-8"))
            self.in_part += k
            self.lines += k
            i += k

    def close(self):
        if self.fh is not None:
            if self.gz:
                self.fh.close()
            self.raw.close()
            self.fh = self.raw = None

    def finish(self):
        if self.files == 0:  # every export day has a file, even an empty one
            self._next_part()
        self.close()


# --------------------------------------------------------------------------- generator


class _Generator:
    def __init__(self, data_dir: Path, learners: int, days: int, seed: int, end_date: dt.date,
                 progress, max_lines_per_file: int):
        self.data_dir = Path(data_dir)
        self.L = learners
        self.ndays = days
        self.seed = seed
        self.progress = progress
        self.max_lines = max_lines_per_file
        self.rng = Random(seed)
        self.days = [end_date - dt.timedelta(days=days - 1 - i) for i in range(days)]
        self.ws = (self.days[0].toordinal() - _EPOCH_ORD) * DAY
        self.we = self.ws + days * DAY
        self.last = days - 1
        self._dcache: dict[int, str] = {}
        # counters
        self.n_event = 0
        self.n_lines = 0
        self.n_dup = 0
        self.n_mal = 0
        self.n_enr = 0
        self.n_award = 0
        self.n_attempt = 0
        rnd = self.rng.random
        self.dup_left = DUPLICATE_EVERY[0] + int(rnd() * (DUPLICATE_EVERY[1] - DUPLICATE_EVERY[0]))
        self.mal_left = MALFORMED_EVERY[0] + int(rnd() * (MALFORMED_EVERY[1] - MALFORMED_EVERY[0]))
        self.bufs: list[list[str]] = [[] for _ in range(days)]
        self._schema = {
            et: {
                "required": tuple(f.name for f in fields if f.required),
                "typed": tuple(f for f in fields if f.kind in (NUMBER, INT, BOOL, STRING_LIST, STRING_MAP)),
                "enum": tuple(f for f in fields if f.allowed or f.minimum is not None or f.maximum is not None),
                "ts": tuple(f.name for f in fields if f.kind == TIMESTAMP),
            }
            for et, fields in EVENT_TYPES.items()
        }

    # ----------------------------------------------------------------- time helpers

    def _date(self, daynum: int) -> str:
        s = self._dcache.get(daynum)
        if s is None:
            s = dt.date.fromordinal(daynum + _EPOCH_ORD).isoformat()
            self._dcache[daynum] = s
        return s

    def ts(self, t: int) -> str:
        """Payload timestamp, UTC with Z."""
        d, s = divmod(t, DAY)
        return f"{self._date(d)}T{_TOD[s]}Z"

    # ----------------------------------------------------------------- emission

    def emit(self, t: int, etype: str, payload: dict):
        rnd = self.rng.random
        self.n_event += 1
        eid = f"e-{self.seed}-{self.n_event}"
        d, s = divmod(t, DAY)
        r = rnd()
        if r < 0.95:
            occ = f"{self._date(d)}T{_TOD[s]}Z"
        elif r < 0.975 or s >= 22 * 3600:
            occ = f"{self._date(d)}T{_TOD[s]}"
        else:  # same calendar date in +02:00 as in UTC
            occ = f"{self._date(d)}T{_TOD[s + 7200]}+02:00"
        # eid, etype and occ are plain ASCII without characters JSON would escape
        line = (f'{{"event_id":"{eid}","event_type":"{etype}","occurred_at":"{occ}","payload":'
                f'{_encode_payload(payload)}}}')
        folder = (t - self.ws) // DAY
        if folder < self.last and rnd() < LATE_RATE:
            r = rnd()
            folder = min(self.last, folder + (1 if r < 0.6 else 2 if r < 0.85 else 3 + int(rnd() * 3)))
        bufs = self.bufs
        bufs[folder].append(line)
        self.n_lines += 1
        self.dup_left -= 1
        if self.dup_left <= 0:
            f2 = folder if rnd() < 0.5 else min(self.last, folder + 1 + int(rnd() * 3))
            bufs[f2].append(line)
            self.n_lines += 1
            self.n_dup += 1
            self.dup_left = DUPLICATE_EVERY[0] + int(rnd() * (DUPLICATE_EVERY[1] - DUPLICATE_EVERY[0]))
        self.mal_left -= 1
        if self.mal_left <= 0:
            bad = self._malformed(MALFORMED_KINDS[self.n_mal % len(MALFORMED_KINDS)], etype, occ, payload)
            if bad is not None:  # otherwise retried on the next event
                bufs[folder].append(bad)
                self.n_lines += 1
                self.n_mal += 1
                self.mal_left = MALFORMED_EVERY[0] + int(rnd() * (MALFORMED_EVERY[1] - MALFORMED_EVERY[0]))

    def _malformed(self, kind: str, etype: str, occ: str, payload: dict) -> str | None:
        """A broken delivery of an event like this one (its own event id), or None if
        this event has no field the kind can break."""
        rnd = self.rng.random
        sch = self._schema[etype]
        p = dict(payload)
        if kind == "invalid_json":
            pass
        elif kind == "unknown_event_type":
            etype = _UNKNOWN_TYPES[int(rnd() * len(_UNKNOWN_TYPES))]
        elif kind == "missing_required_field":
            req = sch["required"]
            del p[req[int(rnd() * len(req))]]
        elif kind == "wrong_type":
            cands = [f for f in sch["typed"] if p.get(f.name) is not None]
            if not cands:
                return None
            f = cands[int(rnd() * len(cands))]
            v = p[f.name]
            if f.kind in (NUMBER, INT):
                p[f.name] = str(v)
            elif f.kind == BOOL:
                p[f.name] = "yes" if v else "no"
            elif f.kind == STRING_LIST:
                p[f.name] = ",".join(v)
            else:  # STRING_MAP
                p[f.name] = [f"{k}={x}" for k, x in v.items()] if rnd() < 0.5 else {k: 1 for k in v} or [1]
        elif kind == "not_allowed":
            cands = [f for f in sch["enum"] if f.name in p]
            if not cands:
                return None
            f = cands[int(rnd() * len(cands))]
            if f.allowed:
                p[f.name] = _BAD_ENUMS[int(rnd() * len(_BAD_ENUMS))]
            elif f.maximum is not None and rnd() < 0.6:
                p[f.name] = f.maximum + 1 + int(rnd() * 60)
            else:
                p[f.name] = int(f.minimum) - 1 - int(rnd() * 5)
        else:  # bad_timestamp
            date = occ[:10]
            y, m, d = date.split("-")
            bad = (
                f"{d}/{m}/{y} 13:05", f"{y}-{m}-{d}T25:61:00Z", f"{y}-13-{d}T10:00:00Z",
                f"{y}-02-30T08:00:00Z", "yesterday", f"{m}/{d}/{y} 1:05 PM",
            )[int(rnd() * 6)]
            ts_fields = [n for n in sch["ts"] if p.get(n) is not None]
            if ts_fields and rnd() < 0.5:
                p[ts_fields[int(rnd() * len(ts_fields))]] = bad
            else:
                occ = bad
        self.n_event += 1
        line = _encode({"event_id": f"e-{self.seed}-{self.n_event}", "event_type": etype,
                        "occurred_at": occ, "payload": p})
        if kind == "invalid_json":
            line = line[: len(line) // 3 + int(rnd() * (len(line) // 2))]
        return line

    def flush(self, writers: list[_DayWriter]):
        for buf, w in zip(self.bufs, writers):
            if buf:
                w.write(buf)
                buf.clear()

    # ----------------------------------------------------------------- catalog

    def build_catalog(self):
        rng, rnd = self.rng, self.rng.random
        L, ws, we, ndays = self.L, self.ws, self.we, self.ndays
        cat: list[tuple[int, str, dict]] = []

        self.n_staff = min(L, max(8, min(2000, L // 100)))
        self.n_admins = min(self.n_staff, max(2, min(20, L // 5000)))
        staff = [self.uid(i) for i in range(self.n_staff)]
        self.staff = staff

        def pick_staff(k):
            return rng.sample(staff, min(k, len(staff)))

        # ---- groups: company -> divisions -> departments -> teams; partners -> org -> team
        gseq = [0]

        def new_group(name, parent, level, division):
            gseq[0] += 1
            return _Group(f"grp-{gseq[0]:05d}", name, parent, level, division)

        company = new_group("Acme Corporation", None, 0, None)
        n_div = min(len(_DIVISIONS), 3 + L // 4000)
        divisions = [new_group(_DIVISIONS[k], company.id, 1, _DIVISIONS[k]) for k in range(n_div)]
        n_dept = max(n_div, min(600, L // 400))
        departments = []
        for k in range(n_dept):
            div = divisions[k % n_div]
            reg_i = k // n_div
            region = _numbered(_REGIONS, reg_i)
            departments.append(new_group(f"{div.name} {region}", div.id, 2, div.name))
        n_teams = max(n_dept, min(40_000, L // 30))
        teams = []
        for k in range(n_teams):
            dept = departments[k % n_dept]
            ti = k // n_dept
            tname = _numbered(_TEAM_NAMES, ti)
            teams.append(new_group(f"{dept.name} · {tname}", dept.id, 3, dept.division))
        partners = new_group("External Partners", None, 0, None)
        porgs = [new_group(n, partners.id, 1, None) for n in _PARTNERS]
        pteams = []
        for po in porgs:
            for t in range(1 + int(rnd() * 2)):
                pteams.append(new_group(f"{po.name} {('Delivery', 'Field Team')[t]}", po.id, 2, None))
        self.teams, self.pteams = teams, pteams
        self.team_cum = _cumulative(min(20.0, rng.paretovariate(1.6)) for _ in teams)
        self.divisions, self.departments = divisions, departments
        self.dept_of = {t.id: t.parent for t in teams}
        self.div_of = {d.id: d.parent for d in departments}
        levels = [[company, partners], divisions + porgs, departments + pteams, teams]
        slots = [(1800, 10), (1810, 50), (1860, 120), (1980, 300)]
        for grp_list, (start, span) in zip(levels, slots):
            for k, g in enumerate(grp_list):
                cat.append((ws + start + k * span // len(grp_list), "group.upserted",
                            {"group_id": g.id, "name": g.name, "parent_group_id": g.parent}))
        # a reorganisation: a few groups renamed during the window
        if ndays >= 2:
            for g in rng.sample(departments + teams, min(2, len(departments) + len(teams))):
                cat.append((ws + DAY + int(rnd() * (we - ws - DAY - 3600)), "group.upserted",
                            {"group_id": g.id, "name": g.name + " (renamed)", "parent_group_id": g.parent}))

        # ---- courses and paths
        n_courses = max(4, min(2000, L // 150))
        n_paths = max(3, min(800, L // 400))
        combos = [(t, p) for t in _TOPICS for p in _COURSE_PATTERNS]
        rng.shuffle(combos)
        pcombos = [(t, p) for t in _TOPICS for p in _PATH_PATTERNS]
        rng.shuffle(pcombos)
        courses: list[_Course] = []
        for k in range(n_courses + n_paths):
            is_path = k >= n_courses
            j = k - n_courses if is_path else k
            pool = pcombos if is_path else combos
            topic, pat = pool[j % len(pool)]
            c = _Course()
            c.id = f"pth-{j + 1:04d}" if is_path else f"crs-{j + 1:05d}"
            c.name = pat.format(t=topic) + (f" ({j // len(pool) + 1})" if j >= len(pool) else "")
            c.topic, c.is_path = topic, is_path
            c.created_by = staff[int(rnd() * len(staff))]
            c.authors = sorted(set([c.created_by] + pick_staff(int(rnd() * 3))))
            c.instructors = pick_staff(1 + int(rnd() * 3))
            c.certs, c.qsets = [], []
            c.is_new = (not is_path) and k > 0 and ndays >= 4 and rnd() < 0.03
            if c.is_new:
                c.created_ts = ws + DAY + int(rnd() * (ndays // 2) * DAY)
            else:
                c.created_ts = ws + 2400 + k * 600 // (n_courses + n_paths)
            courses.append(c)
        self.courses = courses

        # ---- certificates
        certs: list[_Cert] = []
        owners = [company.id] + [d.id for d in divisions]

        def new_cert(title, ctype, validity):
            cert = _Cert(f"cert-{len(certs) + 1:04d}", title, ctype,
                         owners[int(rnd() * len(owners))] if rnd() < 0.92 else None, validity)
            certs.append(cert)
            return cert

        def path_validity():
            r = rnd()
            return 12 if r < 0.35 else 24 if r < 0.5 else 6 if r < 0.8 else None

        first_paths = [c for c in courses if c.is_path][:3]
        for c in courses:
            if c.is_path and c in first_paths:
                # the first paths cover every validity, whatever the size: 12 and 6 months
                # (re-certified through automatic re-enrollment) and none
                k = first_paths.index(c)
                c.certs = [new_cert(f"Certified {c.topic} Professional",
                                    ("professional", "verified", "professional")[k], (12, 6, None)[k])]
            elif c.is_path:
                shared = [x for x in courses if x.is_path and x.certs]
                if shared and rnd() < 0.2:
                    c.certs = [shared[int(rnd() * len(shared))].certs[0]]
                else:
                    ctype = "professional" if rnd() < 0.6 else "verified"
                    c.certs = [new_cert(f"Certified {c.topic} Professional" if ctype == "professional"
                                        else f"{c.topic} Practitioner Certificate", ctype, path_validity())]
            elif c is courses[0]:  # seed 000: one course grants certificates of several types
                c.certs = [new_cert(f"{c.name} – {t.title()} Certificate", t, v)
                           for t, v in (("verified", None), ("honor", None), ("professional", 24))]
            elif rnd() < 0.35:
                types = ("verified", "honor") if rnd() < 0.4 else (("verified",) if rnd() < 0.5 else ("honor",))
                c.certs = [new_cert(f"{c.name} – {t.title()} Certificate", t,
                                    None if rnd() < 0.6 else (12 if rnd() < 0.5 else 24)) for t in types]
        for _ in range(2):  # definitions not linked to any session
            new_cert(f"{_TOPICS[int(rnd() * len(_TOPICS))]} Legacy Certificate", "honor", None)
        for k, cert in enumerate(certs):
            cat.append((ws + 2100 + k * 300 // len(certs), "certificate.upserted", cert.payload()))
        if ndays >= 3 and certs:  # a title correction during the window
            cert = certs[int(rnd() * len(certs))]
            cat.append((ws + 2 * DAY + int(rnd() * DAY), "certificate.upserted", cert.payload(cert.title + " (v2)")))
        self.certs = certs

        # ---- question sets
        qseq = [0, 0]
        for c in courses:
            if rnd() < 0.4 or c is courses[0] or c in first_paths[:1]:
                for _ in range(1 + int(rnd() * 2)):
                    qseq[0] += 1
                    questions = []
                    for _ in range(3 + int(rnd() * 4)):
                        qseq[1] += 1
                        tmpl = _QUESTIONS[int(rnd() * len(_QUESTIONS))]
                        free = tmpl.startswith("Describe")
                        questions.append((f"q-{qseq[1]:06d}", tmpl.format(t=c.topic),
                                          5 if free else (1 if rnd() < 0.75 else 2), free, "ABCD"[int(rnd() * 4)]))
                    c.qsets.append((f"qs-{qseq[0]:05d}", questions))

        # ---- course events
        for c in courses:
            cat.append((c.created_ts, "course.upserted", c.payload()))
            if ndays >= 2 and rnd() < 0.05:  # a new instructor during the window
                t = max(c.created_ts, ws) + 3600 + int(rnd() * (we - max(c.created_ts, ws) - 7200))
                if t < we:
                    cat.append((t, "course.upserted", c.payload(list(dict.fromkeys(c.instructors + pick_staff(1))))))

        # ---- sessions
        sessions: list[_Session] = []
        ws_day = ws // DAY
        for c in courses:
            if c.is_new:
                cats = ["upcoming"] * (1 + int(rnd() * 2))
            elif c is courses[0]:
                cats = ["past", "current", "upcoming", "evergreen"]
            elif c in first_paths[:2]:
                cats = ["evergreen", "evergreen", "current", "past"]
            else:
                n = (2 + int(rnd() * 3)) if c.is_path else (2 + int(rnd() * 4))
                cats = []
                for _ in range(n):
                    r = rnd()
                    if c.is_path:
                        cats.append("evergreen" if r < 0.45 else "current" if r < 0.7
                                    else "past" if r < 0.88 else "upcoming")
                    else:
                        cats.append("past" if r < 0.35 else "current" if r < 0.7
                                    else "upcoming" if r < 0.85 else "evergreen")
            for j, kind in enumerate(cats):
                s = _Session()
                s.id = f"ses-{len(sessions) + 1:06d}"
                s.course = c
                s.created_ts = c.created_ts + 60 + int(rnd() * 3600) if c.is_new else ws + 3000 + len(sessions) % 600
                s.imported = not c.is_new  # part of the first day's catalog import
                if kind == "past":
                    start = ws_day - 120 - int(rnd() * 580)
                    end = min(start + 20 + int(rnd() * 100), ws_day - 2)
                elif kind == "current":
                    start = ws_day - 10 - int(rnd() * 190)
                    end = ws_day + 5 + int(rnd() * 200)
                elif kind == "upcoming":
                    base = max(ws_day, c.created_ts // DAY) + 1
                    start = base + int(rnd() * (ndays + 45))
                    end = start + 20 + int(rnd() * 70)
                    if not c.is_new and rnd() < 0.4 and start < ws_day + ndays - 2 and ndays >= 4:
                        # created during the window, a couple of weeks before it starts
                        created = max(ws + DAY, start * DAY - (7 + int(rnd() * 30)) * DAY)
                        if created < start * DAY:
                            s.created_ts = created + int(rnd() * 3600)
                            s.imported = False
                else:  # evergreen
                    start = ws_day - 300 - int(rnd() * 420)
                    end = None if rnd() < 0.6 else ws_day + 100 + int(rnd() * 300)
                s.start_ts = start * DAY
                s.end_ts = end * DAY + DAY - 1 if end is not None else None
                s.start = self._date(start)
                s.end = self._date(end) if end is not None else None
                if c.is_path:
                    start_date = dt.date.fromordinal(start + _EPOCH_ORD)
                    s.name = f"{c.name} – {_MONTHS[start_date.month - 1]} {start_date.year}"
                    s.cert = c.certs[0]
                    s.auto = kind == "evergreen" and s.cert.validity is not None and (rnd() < 0.7 or j == 0)
                else:
                    s.name = f"Batch {j + 1}"
                    if c is courses[0]:
                        s.cert = c.certs[j % len(c.certs)]
                    else:
                        s.cert = c.certs[int(rnd() * len(c.certs))] if c.certs and rnd() < 0.85 else None
                    s.auto = False
                s.created_by = c.created_by if rnd() < 0.7 else staff[int(rnd() * len(staff))]
                s.mentors = pick_staff(int(rnd() * 3))
                day0 = ws_day
                if start > day0:
                    s.status = _NOT_STARTED
                elif end is None or end >= day0:
                    s.status = _ONGOING
                else:
                    archived = (end < day0 - 90 and rnd() < 0.5) or (c is courses[0] and kind == "past")
                    s.status = _ARCHIVED if archived else _ENDED
                s.weight = min(30.0, rng.paretovariate(1.3)) * (3.0 if kind == "evergreen" else 1.0)
                s.deleted_ts = None
                sessions.append(s)

        deletable = [s for s in sessions if s.imported]
        if ndays >= 2 and deletable:
            chosen = [s for s in deletable if rnd() < 0.03] or [deletable[int(rnd() * len(deletable))]]
            for s in chosen:
                # from the second day on: after the first day's history import
                s.deleted_ts = ws + DAY + int(rnd() * (we - ws - DAY - 3600))

        for s in sessions:
            cat.append((s.created_ts, "session.upserted", s.payload(s.status)))
            stop = min(s.deleted_ts or _INF, we)
            status = s.status
            if status == _NOT_STARTED and s.start_ts > s.created_ts and s.start_ts < stop:
                t = s.start_ts + 300 + int(rnd() * 600)
                if t < stop:
                    status = _ONGOING
                    cat.append((t, "session.upserted", s.payload(status)))
            if status == _ONGOING and s.end_ts is not None and s.end_ts + 1 < stop:
                t = s.end_ts + 1 + 300 + int(rnd() * 600)
                if t < stop:
                    status = _ENDED
                    cat.append((t, "session.upserted", s.payload(status)))
            if status == _ENDED and s.imported and ndays >= 2 and rnd() < 0.1:
                t = ws + 3600 + int(rnd() * (we - ws - 7200))
                if t < stop:
                    cat.append((t, "session.upserted", s.payload(_ARCHIVED)))
            if s.deleted_ts is not None:
                cat.append((s.deleted_ts, "session.deleted", {"session_id": s.id}))
        self.sessions = sessions

        # enrollable intervals and weighted pickers
        for s in sessions:
            lo = s.start_ts - 21 * DAY
            hi = min(s.end_ts if s.end_ts is not None else _INF, s.deleted_ts or _INF, we)
            s.h_lo, s.h_hi = max(lo, ws - 730 * DAY), min(hi, ws - 3600)
            if not s.imported:
                s.h_hi = s.h_lo - 1
            s.l_lo, s.l_hi = max(lo, s.created_ts + 3600, ws), hi
        hist = [s for s in sessions if s.h_hi > s.h_lo]
        live = [s for s in sessions if s.l_hi > s.l_lo]
        self.hist_sessions, self.hist_cum = hist, _cumulative(s.weight for s in hist)
        self.live_sessions, self.live_cum = live, _cumulative(s.weight for s in live)
        self.path_courses = [c for c in courses if c.is_path and not c.is_new]

        self.country_cum = _cumulative(w for _, w in _COUNTRIES)
        self.level_cum = _cumulative(w for _, w in _JOB_LEVELS)
        self.empl_cum = _cumulative(w for _, w in _EMPLOYMENT)
        self.hist_pois = _poisson_cdf(1.7)
        self.live_pois = _poisson_cdf(min(0.025 * ndays, 8.0))
        cat.sort(key=itemgetter(0))
        return [e for e in cat if e[0] < we]

    # ----------------------------------------------------------------- learners

    @staticmethod
    def uid(i: int) -> str:
        return f"usr-{i + 1:07d}"

    def _weighted(self, items, cum):
        return items[bisect_right(cum, self.rng.random() * cum[-1])]

    def gen_user(self, i: int):
        rng = self.rng
        rnd = rng.random
        ws, we = self.ws, self.we
        uid = self.uid(i)
        staff = i < self.n_staff
        pre = staff or rnd() < 0.88
        if pre:
            reg = ws - 3600 - int(rnd() * 730 * DAY)
            t_imp = ws + 3600 + (i * 18_000) // self.L + int(rnd() * 60)
            t_create = ws + (i * 1740) // self.n_staff if staff else t_imp
            live_lo = t_imp + 900
        else:
            reg = ws + 7200 + int(rnd() * (we - ws - 9000))  # after the first day's catalog import
            t_imp = t_create = reg
            live_lo = reg + 300
        evs: list[tuple[int, str, dict]] = []

        # profile
        first = _FIRST[int(rnd() * len(_FIRST))]
        last = _LAST[int(rnd() * len(_LAST))]
        partner = (not staff) and rnd() < 0.04
        if partner:
            team = self.pteams[int(rnd() * len(self.pteams))]
            domain = _PARTNER_DOMAINS[int(rnd() * len(_PARTNER_DOMAINS))]
        else:
            team = self._weighted(self.teams, self.team_cum)
            domain = _DOMAINS[int(rnd() * len(_DOMAINS))]
        email = f"{_ascii(first)}.{_ascii(last)}{i + 1}@{domain}"
        cf = {}
        if team.division:
            cf["department"] = team.division
        cf["country"] = _COUNTRIES[bisect_right(self.country_cum, rnd() * self.country_cum[-1])][0]
        level_i = bisect_right(self.level_cum, rnd() * self.level_cum[-1])
        cf["job_level"] = _JOB_LEVELS[level_i][0]
        if rnd() < 0.8:
            cf["employment_type"] = _EMPLOYMENT[bisect_right(self.empl_cum, rnd() * self.empl_cum[-1])][0]
        if rnd() < 0.5:
            cf["cost_center"] = f"CC-{1000 + int(rnd() * 9000)}"
        profile = {
            "user_id": uid,
            "name": f"{first} {last}",
            "email": email,
            "registered_at": self.ts(reg),
            "custom_fields": cf,
            "platform_role": "admin" if i < self.n_admins else None,
        }
        evs.append((reg, "user.upserted", profile))
        evs.append((reg + 120, "group_member.added", {"group_id": team.id, "user_id": uid, "role": _LEARNER}))
        if self.n_admins <= i < self.n_admins + len(self.divisions):  # each division has a group admin
            evs.append((reg + 150, "group_member.added",
                        {"group_id": self.divisions[i - self.n_admins].id, "user_id": uid, "role": _ADMIN}))
        if not partner:
            r = rnd()
            if r < 0.025:
                evs.append((reg + 180, "group_member.added", {"group_id": team.id, "user_id": uid, "role": _COACH}))
            elif r < 0.03:
                dept = self.dept_of[team.id]
                gid = dept if rnd() < 0.6 else self.div_of[dept]
                evs.append((reg + 180, "group_member.added", {"group_id": gid, "user_id": uid, "role": _ADMIN}))
            if rnd() < 0.05:
                other = self._weighted(self.teams, self.team_cum)
                if other is not team:
                    evs.append((reg + 240, "group_member.added",
                                {"group_id": other.id, "user_id": uid, "role": _LEARNER}))
        live_span = we - live_lo - 600
        if not partner and live_span > 3600 and rnd() < 0.01:  # moved to another team
            t = live_lo + int(rnd() * live_span)
            other = self._weighted(self.teams, self.team_cum)
            if other is not team:
                evs.append((t, "group_member.removed", {"group_id": team.id, "user_id": uid, "role": _LEARNER}))
                evs.append((t + 1, "group_member.added", {"group_id": other.id, "user_id": uid, "role": _LEARNER}))
        if live_span > 3600 and rnd() < 0.04:  # promotion
            cf2 = dict(cf)
            cf2["job_level"] = _JOB_LEVELS[min(level_i + 1, len(_JOB_LEVELS) - 1)][0]
            p2 = dict(profile)
            p2["custom_fields"] = cf2
            evs.append((live_lo + int(rnd() * live_span), "user.upserted", p2))

        # enrollments
        taken: set[str] = set()
        if pre and reg < ws - 2 * DAY and self.hist_sessions:
            for _ in range(bisect_right(self.hist_pois, rnd())):
                for _try in range(4):
                    s = self._weighted(self.hist_sessions, self.hist_cum)
                    lo, hi = max(s.h_lo, reg + 3600), s.h_hi
                    if hi > lo and s.id not in taken:
                        taken.add(s.id)
                        self._enroll(uid, s, hi - int((hi - lo) * rnd() ** 1.5), False, evs, 0)
                        break
        if live_span > 3600 and self.live_sessions:
            for _ in range(bisect_right(self.live_pois, rnd())):
                for _try in range(4):
                    s = self._weighted(self.live_sessions, self.live_cum)
                    lo, hi = max(s.l_lo, live_lo), s.l_hi - 600
                    if hi > lo and s.id not in taken:
                        taken.add(s.id)
                        self._enroll(uid, s, lo + int((hi - lo) * rnd()), False, evs, 0)
                        break
        if self.path_courses and rnd() < 0.004:  # awarded by hand, without an enrollment
            c = self.path_courses[int(rnd() * len(self.path_courses))]
            t = reg + 7 * DAY + int(rnd() * max(DAY, we - reg - 8 * DAY))
            self.n_award += 1
            evs.append((t, "certificate.issued", {
                "award_id": f"aw-{self.n_award:08d}", "user_id": uid, "certificate_id": c.certs[0].id,
                "issued_at": self.ts(t), "enrollment_id": None, "course_id": c.id}))

        evs.sort(key=itemgetter(0))
        # deletion
        if not staff:
            r = rnd()
            tdel = None
            if r < 0.008 and pre and ws - reg > 30 * DAY:
                tdel = reg + int((ws - reg) * (0.3 + 0.69 * rnd()))
            elif r < 0.02 and live_span > 3600:
                tdel = live_lo + int(rnd() * live_span)
            if tdel is not None:
                evs = [e for e in evs if e[0] < tdel]
                evs.append((tdel, "user.deleted", {"user_id": uid}))

        # emit: history import first, then live events in order
        emit = self.emit
        k = 0
        cursor = t_imp - 1
        for t, etype, payload in evs:
            if t < ws:
                emit(t_create if k == 0 else t_imp + k, etype, payload)
                cursor = t_imp + k
                k += 1
            else:
                t = t if t > cursor else cursor + 1
                if t >= we:
                    break
                emit(t, etype, payload)
                cursor = t

    def _enroll(self, uid: str, s: _Session, t_enr: int, auto: bool, out: list, depth: int):
        rnd = self.rng.random
        ws, we = self.ws, self.we
        self.n_enr += 1
        enr = f"enr-{self.n_enr:08d}"
        created = {"enrollment_id": enr, "user_id": uid, "session_id": s.id, "enrolled_at": self.ts(t_enr)}
        if auto or rnd() < 0.8:
            created["auto_reenrolled"] = auto
        evs = [(t_enr, "enrollment.created", created)]
        cut = min(s.deleted_ts or _INF, we)
        if rnd() < 0.015:  # enrollment removed by an admin
            t_del = t_enr + 3600 + int(rnd() * 60 * DAY)
            if t_del < cut:
                cut = t_del
                evs.append((t_del, "enrollment.deleted", {"enrollment_id": enr}))
        start = max(t_enr + 600 + int(rnd() * 3 * DAY), s.start_ts + 8 * 3600 + int(rnd() * 3 * DAY))
        end_limit = s.end_ts if s.end_ts is not None else _INF
        r = rnd()
        outcome = _COMPLETED if r < 0.62 else _FAILED if r < 0.68 else _IN_PROGRESS if r < 0.9 else _NOT_STARTED
        if start >= end_limit:
            outcome = _NOT_STARTED
        if outcome == _NOT_STARTED:
            if rnd() < 0.5:
                evs.append((t_enr + 60, "enrollment.progressed", {
                    "enrollment_id": enr, "status": _NOT_STARTED, "progress_percent": 0, "completed_at": None}))
        else:
            dur = int((2 + 40 * rnd() * rnd()) * DAY)
            if start + dur >= end_limit:
                dur = max(3600, end_limit - start - 3600)
            finish = start + dur
            n_steps = 1 + int(rnd() * 3)
            cap = 99 if outcome == _COMPLETED else (90 if outcome == _FAILED else 95)
            pcts = sorted(5 + int(rnd() * (cap - 5)) for _ in range(n_steps))
            t_q = None
            for j, pct in enumerate(pcts):
                t = start + dur * j // (n_steps + 1) + int(rnd() * 600)
                pct = pct if rnd() < 0.9 else pct + 0.5
                evs.append((t, "enrollment.progressed", {
                    "enrollment_id": enr, "status": _IN_PROGRESS, "progress_percent": pct, "completed_at": None}))
                if t_q is None and pct >= 40:
                    t_q = t
            if outcome == _COMPLETED:
                evs.append((finish, "enrollment.progressed",
                            {"enrollment_id": enr, "status": _COMPLETED, "progress_percent": 100,
                             "completed_at": self.ts(finish)}))
                t_q = t_q or finish - 1800
                if s.cert is not None and rnd() < 0.92:
                    t_iss = finish + 60 + int(rnd() * 4 * 3600)
                    self.n_award += 1
                    award = f"aw-{self.n_award:08d}"
                    evs.append((t_iss, "certificate.issued", {
                        "award_id": award, "user_id": uid, "certificate_id": s.cert.id,
                        "issued_at": self.ts(t_iss), "enrollment_id": enr,
                        "course_id": s.course.id if rnd() < 0.08 else None}))
                    if rnd() < 0.025:
                        evs.append((t_iss + DAY + int(rnd() * 120 * DAY), "certificate.revoked", {"award_id": award}))
                    elif s.auto and s.cert.validity and depth < 4:
                        t_re = t_iss + int((s.cert.validity * 30.44 - 20 - rnd() * 25) * DAY)
                        if t_re < cut and t_re < end_limit and t_re > t_iss:
                            self._enroll(uid, s, t_re, True, out, depth + 1)
            elif outcome == _FAILED:
                evs.append((finish, "enrollment.progressed", {
                    "enrollment_id": enr, "status": _FAILED, "progress_percent": pcts[-1], "completed_at": None}))
                t_q = t_q or finish - 1800
            if t_q is not None and s.course.qsets:
                self._answers(uid, s, enr, t_q, t_enr + 60, evs)
        # keep what happened before the cut; the history import carries the latest snapshot
        last_hist = None
        for idx, e in enumerate(evs):
            if e[0] < ws and e[1] == "enrollment.progressed":
                if last_hist is None or e[0] >= evs[last_hist][0]:
                    last_hist = idx
        for idx, e in enumerate(evs):
            if e[0] < cut or e[1] == "enrollment.deleted":
                if e[1] == "enrollment.progressed" and e[0] < ws and idx != last_hist:
                    continue
                out.append(e)

    def _answers(self, uid, s, enr, t_q, t_min, evs):
        rnd = self.rng.random
        for qs_id, questions in s.course.qsets:
            if rnd() >= 0.55:
                continue
            n_att = 1 if rnd() < 0.75 else 2
            t_a = max(t_q - 600 - int(rnd() * 3000), t_min)
            for a in range(n_att):
                self.n_attempt += 1
                att = f"att-{self.n_attempt:08d}"
                t = t_a
                p_ok = 0.7 if a == 0 else 0.85
                for qid, text, max_score, free, correct in questions:
                    t += 15 + int(rnd() * 105)
                    if free:
                        response = _FREE_TEXT[int(rnd() * len(_FREE_TEXT))]
                        score = min(max_score, int(rnd() * (max_score + 1)) + (1 if rnd() < p_ok else 0))
                    elif rnd() < p_ok:
                        response, score = correct, max_score
                    else:
                        response, score = "ABCD"[int(rnd() * 4)], 0
                        if response == correct:
                            score = max_score
                    evs.append((t, "question.answered", {
                        "attempt_id": att, "user_id": uid, "session_id": s.id, "question_set_id": qs_id,
                        "question_id": qid, "question_text": text, "response": response,
                        "score": score, "max_score": max_score, "answered_at": self.ts(t)}))
                t_a = t + 3600 + int(rnd() * 3 * DAY)

    # ----------------------------------------------------------------- run

    def run(self) -> GenerationSummary:
        progress = self.progress or (lambda stage, done, total: None)
        root = self.data_dir / "landing" / "events"
        root.mkdir(parents=True, exist_ok=True)
        folders = [root / f"date={d.isoformat()}" for d in self.days]
        for f in folders:
            if f.exists():
                shutil.rmtree(f)
        day_rng = Random(self.seed * 7919 + 17)
        gz_offset = day_rng.randrange(5)
        writers = [_DayWriter(f, (i % 5) == gz_offset, self.max_lines) for i, f in enumerate(folders)]
        try:
            progress("catalog", 0, 1)
            for t, etype, payload in self.build_catalog():
                self.emit(t, etype, payload)
            self.flush(writers)
            progress("catalog", 1, 1)
            progress("learners", 0, self.L)
            for lo in range(0, self.L, CHUNK_SIZE):
                hi = min(self.L, lo + CHUNK_SIZE)
                for i in range(lo, hi):
                    self.gen_user(i)
                self.flush(writers)
                progress("learners", hi, self.L)
        finally:
            for w in writers:
                w.finish()
        return GenerationSummary(
            days=list(self.days),
            files=sum(w.files for w in writers),
            lines=self.n_lines,
            malformed_lines=self.n_mal,
            duplicate_lines=self.n_dup,
        )


def generate_landing(
    data_dir: Path,
    *,
    learners: int = 1000,
    days: int = 30,
    seed: int = 0,
    end_date: dt.date | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    max_lines_per_file: int = 500_000,
) -> GenerationSummary:
    """Write synthetic landing files for the ``days`` days ending at ``end_date``
    (default: yesterday, UTC) under ``data_dir/landing/events/`` and return what was
    written. Existing folders of those days are replaced; other days are left alone.

    ``progress(stage, done, total)`` is called with stage ``"catalog"`` and then
    ``"learners"`` after each chunk of learners.
    """
    if learners < 1:
        raise ValueError("learners must be at least 1")
    if days < 1:
        raise ValueError("days must be at least 1")
    if max_lines_per_file < 1:
        raise ValueError("max_lines_per_file must be at least 1")
    if end_date is None:
        end_date = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    if isinstance(end_date, dt.datetime):
        end_date = end_date.date()
    gen = _Generator(Path(data_dir), learners, days, seed, end_date, progress, max_lines_per_file)
    return gen.run()
