"""Tests of the synthetic landing-file generator (certpipeline.generate).

One small dataset is generated per module and checked line by line against the event
schema of certpipeline.events; a few more small runs check determinism and layout.
"""

from __future__ import annotations

import calendar
import collections
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from certpipeline.events import (
    BOOL,
    DATE,
    ENVELOPE_FIELDS,
    EVENT_TYPES,
    INT,
    NUMBER,
    STRING,
    STRING_LIST,
    STRING_MAP,
    TIMESTAMP,
)
from certpipeline.generate import MALFORMED_KINDS, GenerationSummary, generate_landing

END = dt.date(2026, 11, 24)
LEARNERS = 1500
DAYS = 14
SEED = 7
MAX_LINES = 6000  # small, so that the first day is split into several parts
PINNED_DIGEST = "87109d635682682f3ed928c6b4f962fa920b3cd24b59e39b8f6fad4e83e763e9"  # learners=200, days=6, seed=1, END



# --------------------------------------------------------------------------- helpers


def parse_ts(value) -> dt.datetime | None:
    """UTC datetime of an ISO-8601 timestamp (no offset = UTC), None if it is not one."""
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def parse_date(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.date.fromisoformat(value)
        return True
    except ValueError:
        return parse_ts(value) is not None


def rejection(raw: str) -> str | None:
    """Why ingestion must reject this line (one of MALFORMED_KINDS), or None if valid."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return "invalid_json"
    if not isinstance(obj, dict) or any(k not in obj for k in ENVELOPE_FIELDS):
        return "missing_required_field"
    if obj["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    if not isinstance(obj["event_id"], str) or not isinstance(obj["payload"], dict):
        return "wrong_type"
    if parse_ts(obj["occurred_at"]) is None:
        return "bad_timestamp"
    payload = obj["payload"]
    for f in EVENT_TYPES[obj["event_type"]]:
        v = payload.get(f.name)
        if v is None:
            if f.required:
                return "missing_required_field"
            continue
        if f.kind == STRING:
            ok = isinstance(v, str)
        elif f.kind == BOOL:
            ok = isinstance(v, bool)
        elif f.kind == INT:
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif f.kind == NUMBER:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        elif f.kind == STRING_LIST:
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        elif f.kind == STRING_MAP:
            ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
        elif f.kind == TIMESTAMP:
            if not isinstance(v, str):
                return "wrong_type"
            if parse_ts(v) is None:
                return "bad_timestamp"
            ok = True
        elif f.kind == DATE:
            ok = parse_date(v)
        else:  # a kind this test does not know: the schema grew, update the test
            raise AssertionError(f"unknown field kind {f.kind}")
        if not ok:
            return "wrong_type"
        if f.allowed is not None and v not in f.allowed:
            return "not_allowed"
        if f.minimum is not None and v < f.minimum:
            return "not_allowed"
        if f.maximum is not None and v > f.maximum:
            return "not_allowed"
    return None


def read_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return text.splitlines()


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def add_months(d: dt.date, months: int) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    y, m = d.year + y, m + 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


class Dataset:
    def __init__(self, root: Path, summary: GenerationSummary, calls: list):
        self.root = root
        self.summary = summary
        self.calls = calls
        self.files: list[Path] = sorted((root / "landing" / "events").rglob("part-*"))
        self.rows: list[tuple[str, str, int, str]] = []  # folder date, file, line number, raw
        for f in self.files:
            day = f.parent.name.removeprefix("date=")
            for n, raw in enumerate(read_lines(f), 1):
                self.rows.append((day, f.name, n, raw))
        self.rejected = [(r, rejection(r[3])) for r in self.rows]
        self.events = []  # (folder date, parsed event) of valid lines, first delivery only
        self.valid_rows = []  # every valid line, duplicates included
        seen: set[str] = set()
        for row, why in self.rejected:
            if why is None:
                obj = json.loads(row[3])
                self.valid_rows.append((row, obj))
                if obj["event_id"] not in seen:
                    seen.add(obj["event_id"])
                    self.events.append((row[0], obj))

    def of(self, event_type: str) -> list[dict]:
        return [e["payload"] for _, e in self.events if e["event_type"] == event_type]


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("gen")
    calls: list = []
    summary = generate_landing(
        root, learners=LEARNERS, days=DAYS, seed=SEED, end_date=END,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
        max_lines_per_file=MAX_LINES,
    )
    return Dataset(root, summary, calls)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_other_seed_differs(ds, tmp_path):
    again = generate_landing(tmp_path / "a", learners=LEARNERS, days=DAYS, seed=SEED, end_date=END,
                             max_lines_per_file=MAX_LINES)
    assert again == ds.summary
    assert tree_digest(tmp_path / "a") == tree_digest(ds.root)

    other = generate_landing(tmp_path / "b", learners=LEARNERS, days=DAYS, seed=SEED + 1, end_date=END,
                             max_lines_per_file=MAX_LINES)
    assert other.days == ds.summary.days
    digest_b = tree_digest(tmp_path / "b")
    assert digest_b != tree_digest(ds.root)
    # not just one file: most day files differ
    common = set(digest_b) & set(tree_digest(ds.root))
    assert sum(digest_b[k] != tree_digest(ds.root)[k] for k in common) >= DAYS // 2


def test_the_bytes_of_a_small_generation_are_pinned(tmp_path):
    """Generated data are part of what the other tests and the benchmark figures were
    measured on. A change to the generator that changes its output must be deliberate:
    say why in the commit and update this digest."""
    summary = generate_landing(tmp_path, learners=200, days=6, seed=1, end_date=END)
    digest = hashlib.sha256(json.dumps(tree_digest(tmp_path), sort_keys=True).encode()).hexdigest()
    assert (summary.lines, summary.files, summary.malformed_lines, summary.duplicate_lines) == (1901, 6, 1, 12)
    assert digest == PINNED_DIGEST


def test_gzip_bytes_do_not_depend_on_the_directory(tmp_path):
    a = generate_landing(tmp_path / "x" / "one", learners=200, days=6, seed=1, end_date=END)
    b = generate_landing(tmp_path / "two", learners=200, days=6, seed=1, end_date=END)
    assert a == b
    da, db = tree_digest(tmp_path / "x" / "one"), tree_digest(tmp_path / "two")
    assert da == db
    assert any(k.endswith(".jsonl.gz") for k in da)


# --------------------------------------------------------------------------- layout


def test_layout_and_summary(ds):
    s = ds.summary
    assert s.days == [END - dt.timedelta(days=DAYS - 1 - i) for i in range(DAYS)]
    folders = sorted(p.name for p in (ds.root / "landing" / "events").iterdir())
    assert folders == [f"date={d.isoformat()}" for d in s.days]
    assert s.files == len(ds.files)
    assert s.lines == len(ds.rows)
    for f in ds.files:
        assert f.name.startswith("part-") and (f.name.endswith(".jsonl") or f.name.endswith(".jsonl.gz"))
        assert len(read_lines(f)) <= MAX_LINES
    # the first day (catalog + history import) is split into numbered parts
    first = sorted((ds.root / "landing" / "events" / f"date={s.days[0]}").iterdir())
    assert len(first) >= 2
    assert [p.name.split(".")[0] for p in first] == [f"part-{k:05d}" for k in range(len(first))]
    # about one day in five is gzipped, whole days at a time
    gz_days = {f.parent.name for f in ds.files if f.name.endswith(".gz")}
    plain_days = {f.parent.name for f in ds.files if not f.name.endswith(".gz")}
    assert not gz_days & plain_days
    assert len(gz_days) == pytest.approx(DAYS / 5, abs=1)
    for f in ds.files:
        if f.name.endswith(".gz"):
            assert f.read_bytes()[:2] == b"\x1f\x8b"
            gzip.decompress(f.read_bytes()).decode("utf-8")
    # every day has content
    per_day = collections.Counter(r[0] for r in ds.rows)
    assert all(per_day[d.isoformat()] > 0 for d in s.days)


def test_progress_is_reported(ds):
    stages = [c[0] for c in ds.calls]
    assert "catalog" in stages and "learners" in stages
    learner_calls = [c for c in ds.calls if c[0] == "learners"]
    assert learner_calls[-1] == ("learners", LEARNERS, LEARNERS)
    assert [c[1] for c in learner_calls] == sorted(c[1] for c in learner_calls)


def test_regenerating_replaces_its_days_only(tmp_path):
    end = dt.date(2026, 3, 10)
    generate_landing(tmp_path, learners=50, days=3, seed=0, end_date=end)
    events = tmp_path / "landing" / "events"
    stray = events / "date=2026-03-09" / "part-00099.jsonl"
    stray.write_text("{}\n")
    outside = events / "date=2026-01-01"
    outside.mkdir()
    (outside / "part-00000.jsonl").write_text("")
    first = tree_digest(tmp_path)
    generate_landing(tmp_path, learners=50, days=3, seed=0, end_date=end)
    assert not stray.exists()
    assert (outside / "part-00000.jsonl").exists()
    assert tree_digest(tmp_path) == {k: v for k, v in first.items() if "part-00099" not in k}


def test_parts_split_at_max_lines(tmp_path):
    s = generate_landing(tmp_path, learners=100, days=2, seed=5, end_date=END, max_lines_per_file=50)
    files = sorted((tmp_path / "landing" / "events").rglob("part-*"))
    assert s.files == len(files) > 4
    counts = [len(read_lines(f)) for f in files]
    assert sum(counts) == s.lines
    assert max(counts) == 50


def test_default_end_date_is_yesterday_utc(tmp_path):
    s = generate_landing(tmp_path, learners=20, days=2)
    assert s.days[-1] == dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def test_bad_arguments(tmp_path):
    for kwargs in ({"learners": 0}, {"days": 0}, {"max_lines_per_file": 0}):
        with pytest.raises(ValueError):
            generate_landing(tmp_path, end_date=END, **kwargs)


# --------------------------------------------------------------------------- schema, defects


def test_every_line_is_valid_or_counted_as_malformed(ds):
    bad = [why for _, why in ds.rejected if why is not None]
    assert len(bad) == ds.summary.malformed_lines
    assert set(bad) == set(MALFORMED_KINDS)  # every kind of rejection occurs
    rate = len(bad) / len(ds.rows)
    assert 0.0004 < rate < 0.003
    # valid lines: the envelope exactly, payload fields only from the schema
    for (_, _, _, raw), obj in ds.valid_rows:
        assert list(obj) == list(ENVELOPE_FIELDS)
        names = {f.name for f in EVENT_TYPES[obj["event_type"]]}
        assert set(obj["payload"]) <= names, raw
    # malformed lines that are JSON still carry an event id of their own
    valid_ids = {obj["event_id"] for _, obj in ds.valid_rows}
    for (row, why) in ds.rejected:
        if why not in (None, "invalid_json"):
            assert json.loads(row[3])["event_id"] not in valid_ids


def test_duplicates_are_identical_redeliveries(ds):
    by_id = collections.defaultdict(list)
    for row, obj in ds.valid_rows:
        by_id[obj["event_id"]].append(row)
    extra = 0
    later_day = same_day = 0
    for rows in by_id.values():
        if len(rows) > 1:
            assert len({r[3] for r in rows}) == 1  # same event, same text
            extra += len(rows) - 1
            days = sorted(r[0] for r in rows)
            later_day += days[-1] > days[0]
            same_day += days[-1] == days[0]
    assert extra == ds.summary.duplicate_lines > 0
    assert later_day > 0 and same_day > 0
    assert 0.002 < extra / len(ds.rows) < 0.01


def test_event_time_never_after_its_folder_and_late_arrivals_exist(ds):
    late = 0
    formats = collections.Counter()
    for (day, _, _, _), obj in ds.valid_rows:
        occ = obj["occurred_at"]
        utc_day = parse_ts(occ).date().isoformat()
        assert utc_day <= day, (day, occ)
        assert occ[:10] <= day  # also when read naively as a local date
        late += utc_day < day
        formats["Z" if occ.endswith("Z") else "+02:00" if occ.endswith("+02:00") else "naive"] += 1
    assert 0.01 < late / len(ds.valid_rows) < 0.04
    assert set(formats) == {"Z", "+02:00", "naive"}
    assert formats["Z"] / len(ds.valid_rows) > 0.9


def test_event_ids_look_like_the_contract(ds):
    for _, obj in ds.events:
        assert obj["event_id"].startswith(f"e-{SEED}-")


# --------------------------------------------------------------------------- content


def test_users(ds):
    users = ds.of("user.upserted")
    ids = {u["user_id"] for u in users}
    assert len(ids) == LEARNERS
    first_day = ds.summary.days[0]
    regs = [parse_ts(u["registered_at"]).date() for u in users]
    assert min(regs) < first_day - dt.timedelta(days=600)
    assert sum(r < first_day for r in regs) > 0.7 * len(regs)
    assert any(r >= first_day for r in regs)  # some register during the window
    for u in users:
        assert u["custom_fields"] and all(isinstance(v, str) for v in u["custom_fields"].values())
    keys = set().union(*(u["custom_fields"] for u in users))
    assert {"department", "country", "job_level"} <= keys
    admins = {u["user_id"] for u in users if u["platform_role"] == "admin"}
    assert 1 <= len(admins) <= 25
    deleted = {p["user_id"] for p in ds.of("user.deleted")}
    assert deleted and deleted <= ids and not deleted & admins
    assert len(deleted) < 0.05 * LEARNERS


def test_group_tree_and_memberships(ds):
    groups = {}
    for p in ds.of("group.upserted"):
        groups[p["group_id"]] = p["parent_group_id"]
    assert all(parent is None or parent in groups for parent in groups.values())

    def depth(g):
        d = 1
        while groups[g] is not None:
            g = groups[g]
            d += 1
            assert d < 20
        return d

    assert max(depth(g) for g in groups) >= 3
    assert sum(parent is None for parent in groups.values()) >= 1
    added = ds.of("group_member.added")
    assert {p["role"] for p in added} == {"learner", "coach", "admin"}
    assert all(p["group_id"] in groups for p in added)
    learners = {p["user_id"] for p in added if p["role"] == "learner"}
    assert len(learners) >= 0.95 * LEARNERS
    assert ds.of("group_member.removed")


def test_catalog(ds):
    courses = {p["course_id"]: p for p in ds.of("course.upserted")}
    sessions = {}
    for p in ds.of("session.upserted"):
        sessions.setdefault(p["session_id"], []).append(p)
    certs = {p["certificate_id"]: p for p in ds.of("certificate.upserted")}
    assert len(courses) >= 4 and len(certs) >= 3
    assert all(p["created_by"] and p["authors"] and p["instructors"] for p in courses.values())
    statuses = {p["status"] for ps in sessions.values() for p in ps}
    assert {"ongoing", "ended", "archived", "not_started"} <= statuses
    assert ds.of("session.deleted")
    latest = {sid: ps[-1] for sid, ps in sessions.items()}
    assert all(p["course_id"] in courses for p in latest.values())
    assert any(p["auto_reenrollment"] for p in latest.values())
    assert any(p["mentors"] for p in latest.values())
    assert any(p["end_date"] and p["end_date"] < ds.summary.days[0].isoformat() for p in latest.values())
    assert any(p["end_date"] is None for p in latest.values())
    # certificates: types, validity, owners; granted by path sessions and some course sessions
    assert {c["certificate_type"] for c in certs.values()} == {"verified", "honor", "professional"}
    assert {c["validity_months"] for c in certs.values()} <= {None, 6, 12, 24}
    assert None in {c["validity_months"] for c in certs.values()}
    assert len({c["validity_months"] for c in certs.values()}) >= 3
    granted = {p["certificate_id"] for p in latest.values() if p["certificate_id"]}
    assert granted <= set(certs)
    paths_with_cert = {p["course_id"] for p in latest.values() if p["certificate_id"]}
    assert any(c.startswith("pth-") for c in paths_with_cert)
    assert any(c.startswith("crs-") for c in paths_with_cert)
    types_per_course = collections.defaultdict(set)
    for p in latest.values():
        if p["certificate_id"]:
            types_per_course[p["course_id"]].add(certs[p["certificate_id"]]["certificate_type"])
    assert max(len(t) for t in types_per_course.values()) >= 2  # seed 000
    # catalog mostly created on the first day
    first = ds.summary.days[0].isoformat()
    created = [parse_ts(e["occurred_at"]).date().isoformat() for _, e in ds.events
               if e["event_type"] in ("group.upserted", "certificate.upserted", "course.upserted")]
    assert sum(d == first for d in created) > 0.8 * len(created)


def test_enrollments_progress_and_reenrollment(ds):
    created = ds.of("enrollment.created")
    assert len(created) > LEARNERS
    by_id = {p["enrollment_id"]: p for p in created}
    assert len(by_id) == len(created)
    progressed = ds.of("enrollment.progressed")
    assert {p["status"] for p in progressed} == {"not_started", "in_progress", "completed", "failed"}
    completed_at = {}
    for p in progressed:
        assert p["enrollment_id"] in by_id
        if p["status"] == "completed":
            assert p["progress_percent"] == 100 and parse_ts(p["completed_at"]) is not None
            completed_at[p["enrollment_id"]] = parse_ts(p["completed_at"])
        else:
            assert p["completed_at"] is None
    assert ds.of("enrollment.deleted")
    # automatic re-enrollment: a second enrollment of the same user in the same session,
    # enrolled after the first one completed
    auto = [p for p in created if p.get("auto_reenrolled")]
    assert auto
    firsts = collections.defaultdict(list)
    for p in created:
        firsts[(p["user_id"], p["session_id"])].append(p)
    for p in auto:
        earlier = [q for q in firsts[(p["user_id"], p["session_id"])]
                   if q["enrollment_id"] != p["enrollment_id"] and q["enrollment_id"] in completed_at]
        assert any(completed_at[q["enrollment_id"]] < parse_ts(p["enrolled_at"]) for q in earlier)


def test_awards(ds):
    certs = {p["certificate_id"]: p for p in ds.of("certificate.upserted")}
    enrollments = {p["enrollment_id"]: p for p in ds.of("enrollment.created")}
    issued = ds.of("certificate.issued")
    assert len(issued) > 0.2 * LEARNERS
    awards = {p["award_id"]: p for p in issued}
    assert len(awards) == len(issued)
    with_enrollment = [p for p in issued if p["enrollment_id"]]
    assert len(with_enrollment) > 0.9 * len(issued)
    assert sum(p["course_id"] is None for p in issued) > 0.8 * len(issued)
    for p in with_enrollment:
        assert enrollments[p["enrollment_id"]]["user_id"] == p["user_id"]
    revoked = {p["award_id"] for p in ds.of("certificate.revoked")}
    assert revoked and revoked <= set(awards)
    # history import: issued long before the event occurred
    first = ds.summary.days[0]
    assert any(parse_ts(p["issued_at"]).date() < first - dt.timedelta(days=180) for p in issued)
    # statuses as of the last day
    end = ds.summary.days[-1]
    status = collections.Counter()
    for p in issued:
        if p["award_id"] in revoked:
            continue
        validity = certs[p["certificate_id"]]["validity_months"]
        if validity is None:
            status["Valid"] += 1
            continue
        expires = add_months(parse_ts(p["issued_at"]).date(), validity)
        if expires <= end:
            status["Expired"] += 1
        elif expires <= end + dt.timedelta(days=30):
            status["Expiring soon"] += 1
        else:
            status["Valid"] += 1
    assert status["Expired"] > 0 and status["Expiring soon"] > 0
    assert status["Valid"] > status["Expired"] + status["Expiring soon"]


def test_question_answers(ds):
    answers = ds.of("question.answered")
    assert answers
    attempts = collections.defaultdict(list)
    for p in answers:
        attempts[p["attempt_id"]].append(p)
        assert 0 <= p["score"] <= p["max_score"]
    assert max(len(a) for a in attempts.values()) >= 3
    assert all(len({p["question_set_id"] for p in a}) == 1 for a in attempts.values())
    assert len({p["question_set_id"] for p in answers}) >= 2


def test_references_occur_after_the_entities_they_reference(ds):
    """In occurred_at order, every id is created before an event refers to it, and no
    enrollment is made in a session after it was deleted, no event follows a user's deletion."""
    created: dict[tuple[str, str], dt.datetime] = {}
    deleted: dict[tuple[str, str], dt.datetime] = {}
    creates = {
        "user.upserted": ("user", "user_id"), "group.upserted": ("group", "group_id"),
        "course.upserted": ("course", "course_id"), "session.upserted": ("session", "session_id"),
        "certificate.upserted": ("cert", "certificate_id"), "enrollment.created": ("enrollment", "enrollment_id"),
        "certificate.issued": ("award", "award_id"),
    }
    refs = {
        "user_id": "user", "group_id": "group", "parent_group_id": "group", "course_id": "course",
        "session_id": "session", "certificate_id": "cert", "owner_group_id": "group",
        "enrollment_id": "enrollment", "award_id": "award", "created_by": "user",
    }
    list_refs = {"authors": "user", "instructors": "user", "mentors": "user"}
    ordered = sorted((parse_ts(e["occurred_at"]), i, e) for i, (_, e) in enumerate(ds.events))
    problems = []
    for when, _, e in ordered:
        et, p = e["event_type"], e["payload"]
        own = creates.get(et)
        for name, value in p.items():
            kind = refs.get(name) or list_refs.get(name)
            if kind is None or value is None:
                continue
            for v in (value if name in list_refs else [value]):
                if own is not None and own == (kind, name):
                    continue
                if (kind, v) not in created:
                    problems.append((et, name, v, "not created yet"))
        if own is not None:
            created.setdefault((own[0], p[own[1]]), when)
        if et == "enrollment.created" and ("session", p["session_id"]) in deleted:
            problems.append((et, p["session_id"], "session deleted"))
        if et == "session.deleted":
            deleted[("session", p["session_id"])] = when
        if et != "user.deleted" and ("user", p.get("user_id")) in deleted:
            problems.append((et, p["user_id"], "user deleted"))
        if et == "user.deleted":
            deleted[("user", p["user_id"])] = when
    assert problems == []
