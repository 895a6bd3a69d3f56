"""Report files opened by a real spreadsheet: LibreOffice Calc, headless (contract section 5).

One world whose names, titles, emails, custom fields, group names, certificate
types, course and batch names and answers carry a battery of formula payloads
and accented names is run through the production definitions; one request of
each of the seven report types is filed and produced by the real sensor and
``report_exhaust``. Calc (``soffice --headless``, a private profile) then
converts the seven CSV files to xlsx twice, in one invocation each:

- with Calc's defaults (no filter options): no cell of any sheet holds a formula
  or an error, and every cell reads back as the CSV's text (text cells as text,
  numbers and dates as numbers). Calc 7.4's converter reads a CSV without
  options as Windows-1252 whatever its byte-order mark (its import dialog is
  what sniffs the mark), so there only ASCII cells are compared;
- declaring UTF-8: every cell, accented names included, reads back exactly,
  and the byte-order mark is consumed, not shown in the first header.

The xlsx is read as XML (a formula is an ``<f>`` element), without a new dependency.

Fails, never skips, when ``soffice`` is missing: CI installs libreoffice-calc-nogui.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import dagster as dg
import pytest
import pyzipper

from certpipeline import report_requests as rq
from certpipeline.defs.resources import WarehouseResource
from certpipeline_tests.conftest import Landing, run_nightly
from certpipeline_tests.test_requests import file, read_csv, request_row, sensor_pass

pytestmark = pytest.mark.slow

TODAY = dt.datetime.now(dt.timezone.utc).date()
DAY = TODAY - dt.timedelta(days=3)
PASSWORD = "sheet-passphrase"

# Each payload and what its cell must hold in the file: a leading quote (Calc
# shows it and keeps the rest as text).
PAYLOADS = {
    "=1+1": "'=1+1",
    "+1+1": "'+1+1",
    "-1+1": "'-1+1",
    "@SUM(1)": "'@SUM(1)",
    "|cmd": "'|cmd",
    "\t=1+1": "'\t=1+1",
    "\r=1+1": "'\r=1+1",
    "\n=1+1": "'\n=1+1",
    "   =1+1": "'   =1+1",
    "\u00a0=1+1": "'\u00a0=1+1",
    '=HYPERLINK("http://evil.example/","click")': '\'=HYPERLINK("http://evil.example/","click")',
    "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "abc\r=1+1": "abc\r=1+1",
    "-2": "'-2",
}
NAMES = ["José Santos", "Zoë", "Łukasz", "山田太郎", "Ñúñez-Öztürk"]

ADMIN = "u-admin"
COURSE, BATCH = "c-main", "b-main"
COURSE_NAME, BATCH_NAME = '=HYPERLINK("http://evil.example/","click")', "@SUM(1)"
PATH_CERT, PATH_LEARNER = "cert-path", "u-path"


def learners() -> list[tuple[str, str, str]]:
    """(user_id, name, email): payloads as ids, names and emails, then accented names."""
    people = [(payload, payload, payload) for payload in PAYLOADS]
    people += [(f"u-name-{i}", name, f"{name}@例え.jp") for i, name in enumerate(NAMES)]
    return people


def write_world(landing: Landing) -> None:
    d = DAY
    at = f"{d.isoformat()}T09:00:00Z"
    landing.user(d, ADMIN, platform_role="admin")
    landing.user(d, PATH_LEARNER, name="Zoë Łukasz 山田")
    landing.course(d, COURSE, name=COURSE_NAME)
    landing.session(d, BATCH, COURSE, name=BATCH_NAME)
    landing.certificate(d, PATH_CERT, title="Path certificate")
    texts = list(PAYLOADS) + NAMES
    for i, (user_id, name, email) in enumerate(learners()):
        text = texts[i]
        landing.user(d, user_id, name=name, email=email, custom_fields={"note": text, "city": NAMES[i % len(NAMES)]})
        # The batch: every learner enrolled, with an answer whose id, text and response carry the payload.
        landing.enroll(d, f"e-b-{i}", user_id, BATCH, enrolled_at=at)
        landing.progress(d, f"e-b-{i}", progress_percent=26)
        landing.event(d, "question.answered", {
            "attempt_id": f"att-{i}", "user_id": user_id, "session_id": BATCH, "question_set_id": "qs-1",
            "question_id": text, "question_text": text, "response": text, "score": 26.0, "max_score": 30,
            "answered_at": at})
        # One certificate per text: its title, type and owner group's name carry it, granted by a
        # session of the course, awarded to this learner (certificate type totals, path statistics).
        landing.group(d, f"g-{i}", name=text)
        landing.certificate(d, f"cert-{i}", certificate_type=text, owner_group_id=f"g-{i}", title=text)
        landing.session(d, f"s-cert-{i}", COURSE, certificate_id=f"cert-{i}", name=f"Session {i}")
        landing.enroll(d, f"e-c-{i}", user_id, f"s-cert-{i}", enrolled_at=at)
        landing.award(d, f"a-c-{i}", user_id, f"cert-{i}", at, enrollment_id=f"e-c-{i}", course_id=COURSE)
        # The path certificate: a path per text, named by it, whose session is named by it too;
        # this learner and the path learner enrolled (learners list, the path learner's history).
        landing.course(d, f"c-path-{i}", name=text)
        landing.session(d, f"s-path-{i}", f"c-path-{i}", certificate_id=PATH_CERT, name=text)
        landing.enroll(d, f"e-p-{i}", user_id, f"s-path-{i}", enrolled_at=at)
        landing.enroll(d, f"e-pl-{i}", PATH_LEARNER, f"s-path-{i}", enrolled_at=at)


REQUESTS = {
    "certificate_type_totals": {"course": COURSE},
    "path_certificate_stats": {},
    "path_certificate_learners": {"certificate": PATH_CERT},
    "learner_certificate_history": {"certificate": PATH_CERT, "learner": PATH_LEARNER},
    "course_progress_exhaust": {"batch": BATCH},
    "user_profile_exhaust": {"batch": BATCH, "password": PASSWORD},
    "question_set_report": {"batch": BATCH},
}


# -- reading what Calc made of the files --------------------------------------------

SHEET_NS = {"x": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
SERIAL_EPOCH = dt.date(1899, 12, 30)


def _text(element) -> str:
    return "".join(t.text or "" for t in element.iter(f"{{{SHEET_NS['x']}}}t"))


def read_xlsx(path: Path) -> dict[tuple[int, int], tuple[str, str, bool]]:
    """(row, column) -> (cell type, value as text, has a formula), 0-based."""
    with zipfile.ZipFile(path) as book:
        names = set(book.namelist())
        shared = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
            shared = [_text(si) for si in root.findall("x:si", SHEET_NS)]
        sheet = ElementTree.fromstring(book.read("xl/worksheets/sheet1.xml"))
    cells = {}
    for cell in sheet.iter(f"{{{SHEET_NS['x']}}}c"):
        ref = cell.get("r")
        letters = "".join(ch for ch in ref if ch.isalpha())
        column = 0
        for ch in letters:
            column = column * 26 + ord(ch) - ord("A") + 1
        kind = cell.get("t", "n")
        value = cell.find("x:v", SHEET_NS)
        text = value.text if value is not None else ""
        if kind == "s":
            text = shared[int(text)]
        elif kind == "inlineStr":
            text = _text(cell)
        cells[(int(ref[len(letters):]) - 1, column - 1)] = (kind, text, cell.find("x:f", SHEET_NS) is not None)
    return cells


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str):
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def mismatches(csv_rows: list[list[str]], sheet: dict, ascii_only: bool) -> list[str]:
    """Every cell where Calc's sheet does not show the CSV's cell as written."""
    problems = [f"{ref}: formula or error {cell!r}" for ref, cell in sheet.items() if cell[2] or cell[0] == "e"]
    expected_refs = set()
    for r, row in enumerate(csv_rows):
        for c, text in enumerate(row):
            if text == "":
                continue
            expected_refs.add((r, c))
            if ascii_only and not text.isascii():
                continue
            kind, shown, _ = sheet.get((r, c), ("missing", "", False))
            text = text.replace("\r\n", "\n").replace("\r", "\n")  # Calc keeps a quoted line break as a line feed
            if _number(text) is not None:
                ok = kind == "n" and float(shown) == _number(text)
            elif _date(text) is not None:
                ok = kind == "n" and SERIAL_EPOCH + dt.timedelta(days=float(shown)) == _date(text)
            else:
                ok = kind in ("s", "str", "inlineStr") and shown == text
            if not ok:
                problems.append(f"{(r, c)}: wrote {text!r}, Calc shows {kind} {shown!r}")
    problems += [f"{ref}: Calc shows {sheet[ref]!r}, the CSV has no such cell" for ref in set(sheet) - expected_refs]
    return problems


def convert(soffice: str, profile: Path, sources: list[Path], out: Path, infilter: str | None) -> None:
    """One soffice invocation converting every source to xlsx in ``out``."""
    command = [soffice, f"-env:UserInstallation={profile.as_uri()}", "--headless", "--norestore"]
    if infilter:
        command.append(f"--infilter={infilter}")
    command += ["--convert-to", "xlsx", "--outdir", str(out), *map(str, sources)]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    missing = [s.name for s in sources if not (out / f"{s.stem}.xlsx").exists()]
    assert done.returncode == 0 and not missing, f"soffice failed ({missing}): {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def produced(tmp_path_factory) -> dict:
    """The seven report files through the product's request path, and Calc's two readings of them."""
    soffice = shutil.which("soffice")
    assert soffice is not None, "LibreOffice (soffice, Debian libreoffice-calc-nogui) is required for these tests"
    root = tmp_path_factory.mktemp("spreadsheet")
    data = root / "data"
    data.mkdir()
    write_world(Landing(data))
    warehouse = WarehouseResource(data_dir=str(data))
    with dg.DagsterInstance.ephemeral() as instance:
        assert run_nightly(warehouse, DAY, instance).success
        request_ids = {}
        for report_type, scope in REQUESTS.items():
            scope = dict(scope)
            request_ids[report_type] = file(warehouse, report_type, ADMIN, password=scope.pop("password", None),
                                            **scope)
        assert sensor_pass(warehouse, instance).success

    csv_dir = root / "csv"
    csv_dir.mkdir()
    files = {}
    for report_type, request_id in request_ids.items():
        row = request_row(warehouse, request_id)
        assert row["status"] == rq.SUCCESS, (report_type, row["status_reason"])
        path = Path(row["file_path"])
        target = csv_dir / f"{report_type}.csv"
        if path.suffix == ".zip":
            with pyzipper.AESZipFile(path) as archive:
                archive.setpassword(PASSWORD.encode())
                [member] = archive.namelist()
                target.write_bytes(archive.read(member))
        else:
            shutil.copyfile(path, target)
        files[report_type] = target

    profile = root / "lo-profile"  # private: never the user's, never shared between tests
    sources = list(files.values())
    convert(soffice, profile, sources, root / "defaults", None)
    convert(soffice, profile, sources, root / "utf8", "Text - txt - csv (StarCalc):44,34,76,1")
    return {"files": files, "root": root}


def csv_rows(path: Path) -> list[list[str]]:
    header, rows = read_csv(path)  # also asserts the byte-order mark
    return [header] + [[row[name] for name in header] for row in rows]


@pytest.mark.parametrize("report_type", list(REQUESTS))
def test_calc_with_its_defaults_runs_no_cell_and_reads_every_ascii_cell_as_written(produced, report_type):
    rows = csv_rows(produced["files"][report_type])
    sheet = read_xlsx(produced["root"] / "defaults" / f"{report_type}.xlsx")
    # Read as Windows-1252, the byte-order mark shows as three characters before the first header.
    kind, first, formula = sheet[(0, 0)]
    assert first == "\u00ef\u00bb\u00bf" + rows[0][0]
    sheet[(0, 0)] = (kind, rows[0][0], formula)
    assert mismatches(rows, sheet, ascii_only=True) == []


@pytest.mark.parametrize("report_type", list(REQUESTS))
def test_calc_reading_utf8_shows_every_cell_and_name_exactly(produced, report_type):
    rows = csv_rows(produced["files"][report_type])
    sheet = read_xlsx(produced["root"] / "utf8" / f"{report_type}.xlsx")
    assert mismatches(rows, sheet, ascii_only=False) == []
    shown = {cell[1] for cell in sheet.values()}
    assert "2" not in shown  # what "=1+1" would have become


# What each report carries, as written: every payload neutralized, every name as is.
SHOWN = set(PAYLOADS.values()) | set(NAMES)


def column(rows: list[list[str]], name: str) -> list[str]:
    index = rows[0].index(name)
    return [row[index] for row in rows[1:]]


@pytest.mark.parametrize(
    ("report_type", "columns"),
    [
        ("certificate_type_totals", ["Certificate Type"]),
        ("path_certificate_stats", ["Title", "Owner group"]),
        ("learner_certificate_history", ["Path name", "Path session"]),
        ("course_progress_exhaust", ["User UUID"]),
        ("user_profile_exhaust", ["User Name", "Custom: note"]),
        ("question_set_report", ["Question Id", "Question Title", "Question Response"]),
    ],
)
def test_every_payload_and_name_is_in_the_file_as_contract_section_5_writes_it(produced, report_type, columns):
    rows = csv_rows(produced["files"][report_type])
    for name in columns:
        values = set(column(rows, name))
        if report_type == "course_progress_exhaust":  # ids: the payload learners' ids, plus plain ones
            assert set(PAYLOADS.values()) <= values, name
        else:
            assert SHOWN <= values, (name, SHOWN - values)


def test_batch_and_learner_cells_exactly(produced):
    profile = csv_rows(produced["files"]["user_profile_exhaust"])
    assert set(column(profile, "Course Name")) == {PAYLOADS[COURSE_NAME]}
    assert set(column(profile, "Batch Name")) == {PAYLOADS[BATCH_NAME]}
    assert sorted(column(profile, "Email ID")) == sorted(
        [PAYLOADS[p] for p in PAYLOADS] + [f"{name}@例え.jp" for name in NAMES])
    learners_file = csv_rows(produced["files"]["path_certificate_learners"])
    assert sorted(column(learners_file, "Learner")) == sorted(
        [f"{PAYLOADS[p]} <{PAYLOADS[p].lstrip(chr(39))}>" for p in PAYLOADS]
        + [f"{name} <{name}@例え.jp>" for name in NAMES] + [f"Zoë Łukasz 山田 <{PATH_LEARNER}@example.com>"])
    progress = csv_rows(produced["files"]["course_progress_exhaust"])
    assert set(column(progress, "Progress")) == {"26"}
    assert set(column(progress, "Total Score")) == {"26"}  # whole numbers without a decimal point
    questions = csv_rows(produced["files"]["question_set_report"])
    assert (set(column(questions, "Question Score")), set(column(questions, "Question Max Score"))) == ({"26"}, {"30"})
