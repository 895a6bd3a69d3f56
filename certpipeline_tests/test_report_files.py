"""Tests for certpipeline.report_files (contract section 5: report files).

The encrypted-zip tests drive the real `7z` binary (Debian p7zip-full).  They
FAIL, never skip, when 7z is missing: CI installs it.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import stat
import subprocess
from pathlib import Path

import polars as pl
import pytest

from certpipeline.report_files import (
    FORMULA_PREFIXES,
    ReportFile,
    format_whole_numbers,
    neutralize_formulas,
    safe_file_component,
    spreadsheet_safe,
    write_report_file,
)

PASSWORD = "s3cret-Pässwörd!"
BOM = b"\xef\xbb\xbf"  # contract section 5: UTF-8 with a byte-order mark


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def require_7z() -> str:
    # Called inside each test body (not a fixture) so a missing 7z is a test
    # FAILURE, not a setup error, and never a skip.
    exe = shutil.which("7z")
    assert exe is not None, "7z (p7zip-full) is required for these tests; install it"
    return exe


def run_7z(exe: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [exe, *args],
        stdin=subprocess.DEVNULL,  # never let 7z wait on an interactive prompt
        capture_output=True,
        text=True,
        timeout=120,
    )


def sample_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "User Name": ["Zoë Ñúñez", "=HYPERLINK(\"http://x\")", None, "a-b"],
            "Registration Date": [dt.date(2024, 1, 2), None, dt.date(1999, 12, 31), dt.date(2024, 2, 29)],
            "Progress": [100, -5, None, 0],
            "Total Score": [1.5, -2.25, 0.0, None],
        },
        schema={
            "User Name": pl.String,
            "Registration Date": pl.Date,
            "Progress": pl.Int64,
            "Total Score": pl.Float64,
        },
    )


SAMPLE_CSV = BOM + (
    "User Name,Registration Date,Progress,Total Score\n"
    "Zoë Ñúñez,2024-01-02,100,1.5\n"
    "\"'=HYPERLINK(\"\"http://x\"\")\",,-5,-2.25\n"
    ",1999-12-31,,0\n"
    "a-b,2024-02-29,0,\n"
).encode("utf-8")


def dir_entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# --------------------------------------------------------------------------
# neutralize_formulas
# --------------------------------------------------------------------------


def test_formula_prefixes_are_exactly_the_contract_set():
    assert FORMULA_PREFIXES == ("=", "+", "-", "@", "|", "\t", "\r", "\n")


@pytest.mark.parametrize("prefix", FORMULA_PREFIXES)
def test_each_formula_prefix_gets_a_leading_quote(prefix):
    value = f"{prefix}1+cmd|' /C calc'!A0"
    frame = pl.DataFrame({"t": [value, prefix]})
    out = neutralize_formulas(frame)
    assert out["t"].to_list() == [f"'{value}", f"'{prefix}"]


@pytest.mark.parametrize("spaces", [" ", "   ", "\u00a0", "\u3000", " \t "])
@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "|"])
def test_prefix_after_leading_whitespace_gets_a_leading_quote(spaces, prefix):
    value = f"{spaces}{prefix}1+1"
    assert neutralize_formulas(pl.DataFrame({"t": [value]}))["t"].to_list() == [f"'{value}"]


def test_harmless_text_nulls_and_non_string_columns_untouched():
    frame = pl.DataFrame(
        {
            "t": ["a-b", "3", "", None, " x=", "'=already", "x=1", "Zoë", " ", "a|b", "a\nb"],
            "i": [-1, 2, -3, 4, 5, 6, 7, 8, 9, 10, 11],
            "f": [-1.5, None, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            "d": [dt.date(2024, 1, 1)] * 11,
        }
    )
    out = neutralize_formulas(frame)
    assert out.schema == frame.schema
    assert out["t"].to_list() == ["a-b", "3", "", None, " x=", "'=already", "x=1", "Zoë", " ", "a|b", "a\nb"]
    assert out["i"].to_list() == [-1, 2, -3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert out["f"].to_list() == [-1.5, None, 0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert out.columns == ["t", "i", "f", "d"]


def test_neutralize_mixed_column_exact_values():
    frame = pl.DataFrame(
        {"a": ["=1", "+2", "-3", "@4", "|5", "\t6", "\r7", "\n8", "  =9", "10", "a\rb", None], "n": [1] * 12}
    )
    out = neutralize_formulas(frame)
    assert out["a"].to_list() == [
        "'=1", "'+2", "'-3", "'@4", "'|5", "'\t6", "'\r7", "'\n8", "'  =9", "10", "a\rb", None
    ]
    assert out["n"].to_list() == [1] * 12


def test_whole_numbers_lose_their_decimal_point_and_others_keep_it():
    frame = pl.DataFrame(
        {
            "f": [26.0, 1.5, -2.0, -0.0, -2.25, 0.1 + 0.2, 2.0**53, 1e20, float("nan"), float("inf"), None],
            "i": list(range(11)),
        }
    )
    out = format_whole_numbers(frame)
    assert out["f"].to_list() == [
        "26", "1.5", "-2", "0", "-2.25", "0.30000000000000004", "9007199254740992.0", "1e+20", "NaN", "inf", None
    ]
    assert out["i"].to_list() == list(range(11))


def test_negative_numbers_stay_numbers_and_negative_text_is_neutralized():
    frame = pl.DataFrame({"text": ["-2", "-2.5"], "score": [-2.0, -2.5], "count": [-2, 3]})
    out = spreadsheet_safe(frame)
    assert out.rows() == [("'-2", "-2", -2), ("'-2.5", "-2.5", 3)]


def test_neutralize_categorical_column_comes_back_as_string():
    frame = pl.DataFrame({"c": ["=x", "y", None]}, schema={"c": pl.Categorical})
    out = neutralize_formulas(frame)
    assert out.schema["c"] == pl.String
    assert out["c"].to_list() == ["'=x", "y", None]


def test_neutralize_without_string_columns_returns_equal_frame():
    frame = pl.DataFrame({"i": [-1, 2]})
    assert neutralize_formulas(frame).equals(frame)


# --------------------------------------------------------------------------
# safe_file_component
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc/passwd", "_.._etc_passwd_3754d6cb3a"),
        ("a/b", "a_b_c14cddc033"),
        ("a?b", "a_b_c2a7b64a2d"),
        ("", "_e3b0c44298"),
        ("..", "_5ec1f7e700"),
        (".", "_cdb4ee2aea"),
        (".hidden", "hidden_1692419006"),
        ("normal-id_1.x", "normal-id_1.x"),
        ("a_b", "a_b"),
        ("Zoë Ñúñez", "Zo_____ez_eadd386d24"),
        ("日本", "___cf2abf0c5b"),
        ("a\x00b", "a_b_59b271ae1b"),
        ("x" * 80, "x" * 80),
        ("x" * 81, "x" * 69 + "_4d1f7bb876"),
        ("x" * 200, "x" * 69 + "_aa20c23e32"),
    ],
)
def test_safe_file_component_exact(text, expected):
    assert safe_file_component(text) == expected


@pytest.mark.parametrize(
    "text", ["../../etc/passwd", "a/b", "", "..", ".", ".hidden", "Zoë Ñúñez", "\\..\\x", "x" * 500, "\udcff"]
)
def test_safe_file_component_properties(text):
    out = safe_file_component(text)
    assert out == safe_file_component(text)  # deterministic
    assert 0 < len(out) <= 80
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in out)
    assert not out.startswith(".")
    assert out not in (".", "..")


def test_safe_file_component_colliding_ids_stay_distinct():
    ids = ["a/b", "a?b", "a b", "a\\b", "a_b", "a:b"]
    outs = [safe_file_component(i) for i in ids]
    assert len(set(outs)) == len(ids)


# --------------------------------------------------------------------------
# write_report_file: plain CSV
# --------------------------------------------------------------------------


def test_plain_csv_exact_bytes_mode_and_no_temp_files(tmp_path):
    out_dir = tmp_path / "reports"
    result = write_report_file(sample_frame(), out_dir, "batch-1_users", None)

    assert result == ReportFile(path=out_dir.resolve() / "batch-1_users.csv", row_count=4, encrypted=False)
    assert result.path.read_bytes() == SAMPLE_CSV
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700
    assert dir_entries(out_dir) == ["batch-1_users.csv"]


def test_directory_created_with_parents(tmp_path):
    out_dir = tmp_path / "a" / "b"
    result = write_report_file(pl.DataFrame({"x": [1]}), out_dir, "r", None)
    assert result.path.read_bytes() == BOM + b"x\n1\n"
    assert stat.S_IMODE(out_dir.stat().st_mode) == 0o700


def test_header_only_for_empty_frame(tmp_path):
    frame = pl.DataFrame(schema={"Course Id": pl.String, "Enrolment Date": pl.Date})
    result = write_report_file(frame, tmp_path, "empty", None)
    assert result.row_count == 0
    assert result.path.read_bytes() == BOM + b"Course Id,Enrolment Date\n"


def test_formula_cells_are_neutralized_in_file(tmp_path):
    frame = pl.DataFrame(
        {
            "Question Response": ["\tx", "\ry", "\nz", "+1", "@SUM(A1)", "-2", "|cmd", "   =1+1", "a\rb", "ok"],
            "Question Score": [26.0, 1.5, -2.0, 0.0, None, 3.0, 4.0, 5.0, 6.0, 7.0],
        }
    )
    result = write_report_file(frame, tmp_path, "q", None)
    assert result.path.read_bytes() == BOM + (
        b"Question Response,Question Score\n"
        b"'\tx,26\n"
        b"\"'\ry\",1.5\n"
        b"\"'\nz\",-2\n"
        b"'+1,0\n"
        b"'@SUM(A1),\n"
        b"'-2,3\n"
        b"'|cmd,4\n"
        b"'   =1+1,5\n"
        b"\"a\rb\",6\n"
        b"ok,7\n"
    )


def test_stem_traversal_stays_inside_directory(tmp_path):
    out_dir = tmp_path / "out"
    result = write_report_file(pl.DataFrame({"x": ["1"]}), out_dir, "../../etc/passwd", None)
    assert result.path == out_dir.resolve() / "_.._etc_passwd_3754d6cb3a.csv"
    assert result.path.resolve().parent == out_dir.resolve()
    assert dir_entries(out_dir) == ["_.._etc_passwd_3754d6cb3a.csv"]
    assert dir_entries(tmp_path) == ["out"]


def test_dot_stem_cannot_produce_hidden_or_parent_name(tmp_path):
    result = write_report_file(pl.DataFrame({"x": [1]}), tmp_path, "..", None)
    assert result.path == tmp_path.resolve() / "_5ec1f7e700.csv"


def test_final_name_symlink_pointing_outside_is_refused(tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    outside = tmp_path / "outside.csv"
    outside.write_bytes(b"keep")
    (out_dir / "r.csv").symlink_to(outside)
    with pytest.raises(ValueError):
        write_report_file(pl.DataFrame({"x": [1]}), out_dir, "r", None)
    assert outside.read_bytes() == b"keep"
    assert dir_entries(out_dir) == ["r.csv"]


def test_rewrite_replaces_existing_file(tmp_path):
    write_report_file(pl.DataFrame({"x": [1]}), tmp_path, "r", None)
    result = write_report_file(pl.DataFrame({"x": [2, 3]}), tmp_path, "r", None)
    assert result.path.read_bytes() == BOM + b"x\n2\n3\n"
    assert result.row_count == 2
    assert dir_entries(tmp_path) == ["r.csv"]


@pytest.mark.parametrize("password", [None, PASSWORD])
def test_failure_leaves_no_temp_file_and_keeps_previous_file(tmp_path, password):
    good = write_report_file(pl.DataFrame({"x": [1]}), tmp_path, "r", password)
    before = good.path.read_bytes()
    # Nested columns cannot be written as CSV: write_csv raises mid-write.
    bad = pl.DataFrame({"x": [[1, 2]]})
    with pytest.raises(Exception):
        write_report_file(bad, tmp_path, "r", password)
    assert dir_entries(tmp_path) == [good.path.name]
    assert good.path.read_bytes() == before


def test_empty_password_is_refused(tmp_path):
    with pytest.raises(ValueError):
        write_report_file(pl.DataFrame({"x": [1]}), tmp_path, "r", "")
    assert dir_entries(tmp_path) == []


# --------------------------------------------------------------------------
# write_report_file: AES-256 zip, checked with 7z
# --------------------------------------------------------------------------


def test_encrypted_zip_extracts_with_7z_to_exact_csv(tmp_path):
    sevenzip = require_7z()
    out_dir = tmp_path / "reports"
    result = write_report_file(sample_frame(), out_dir, "batch-1_users", PASSWORD)

    assert result == ReportFile(path=out_dir.resolve() / "batch-1_users.zip", row_count=4, encrypted=True)
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert dir_entries(out_dir) == ["batch-1_users.zip"]
    # no plaintext member name or content visible in the archive bytes
    assert "Zoë".encode() not in result.path.read_bytes()

    extract_dir = tmp_path / "x"
    proc = run_7z(sevenzip, "x", f"-p{PASSWORD}", f"-o{extract_dir}", "-y", str(result.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dir_entries(extract_dir) == ["batch-1_users.csv"]
    assert (extract_dir / "batch-1_users.csv").read_bytes() == SAMPLE_CSV


def test_encrypted_and_plain_csv_bytes_match(tmp_path):
    sevenzip = require_7z()
    frame = sample_frame()
    plain = write_report_file(frame, tmp_path / "plain", "same", None)
    enc = write_report_file(frame, tmp_path / "enc", "same", PASSWORD)
    extract_dir = tmp_path / "x"
    proc = run_7z(sevenzip, "x", f"-p{PASSWORD}", f"-o{extract_dir}", "-y", str(enc.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (extract_dir / "same.csv").read_bytes() == plain.path.read_bytes()


def test_encrypted_zip_wrong_password_fails(tmp_path):
    sevenzip = require_7z()
    result = write_report_file(sample_frame(), tmp_path / "reports", "r", PASSWORD)
    extract_dir = tmp_path / "x"
    proc = run_7z(sevenzip, "x", "-pwrong-password", f"-o{extract_dir}", "-y", str(result.path))
    assert proc.returncode != 0
    assert "Wrong password" in proc.stdout + proc.stderr
    # 7-Zip 26.02 leaves a 0-byte placeholder for the member it failed to
    # decrypt; what matters is that no CSV content came out.
    extracted = extract_dir / "r.csv"
    assert not extracted.exists() or extracted.stat().st_size == 0
    if extract_dir.exists():
        assert [p.name for p in extract_dir.iterdir() if p.stat().st_size > 0] == []

    # Same through stdout: nothing decrypted at all.
    proc = subprocess.run(
        [sevenzip, "x", "-pwrong-password", "-so", str(result.path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stdout == b""


def test_encrypted_zip_listing_shows_single_aes256_member(tmp_path):
    sevenzip = require_7z()
    result = write_report_file(sample_frame(), tmp_path, "../evil id", PASSWORD)
    assert result.path == tmp_path.resolve() / "_evil_id_de30f3c53c.zip"
    proc = run_7z(sevenzip, "l", "-slt", f"-p{PASSWORD}", str(result.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listing = proc.stdout
    assert "AES-256" in listing
    members = [line.split(" = ", 1)[1] for line in listing.splitlines() if line.startswith("Path = ")]
    # first "Path = " is the archive itself, then one per member
    assert members[1:] == ["_evil_id_de30f3c53c.csv"]
    assert "Encrypted = +" in listing
    assert "Method = AES-256 Deflate" in listing


def test_unicode_password_interoperates_with_7z(tmp_path):
    sevenzip = require_7z()
    password = "Zoë Ñúñez 🔑"
    result = write_report_file(pl.DataFrame({"a": ["x"]}), tmp_path / "r", "u", password)
    extract_dir = tmp_path / "x"
    proc = run_7z(sevenzip, "x", f"-p{password}", f"-o{extract_dir}", "-y", str(result.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (extract_dir / "u.csv").read_bytes() == BOM + b"a\nx\n"


def test_large_report_round_trip(tmp_path):
    sevenzip = require_7z()
    n = 100_000
    frame = pl.DataFrame(
        {
            "User UUID": pl.Series([f"user-{i:08d}" for i in range(n)]),
            "Enrolment Date": pl.date_range(dt.date(2020, 1, 1), dt.date(2020, 1, 1) + dt.timedelta(days=n - 1), eager=True),
            "Progress": pl.Series([i % 101 for i in range(n)]),
        }
    )
    plain = write_report_file(frame, tmp_path / "p", "big", None)
    enc = write_report_file(frame, tmp_path / "e", "big", PASSWORD)
    assert plain.row_count == enc.row_count == n
    data = plain.path.read_bytes()
    assert data.count(b"\n") == n + 1
    assert data.startswith(BOM + b"User UUID,Enrolment Date,Progress\nuser-00000000,2020-01-01,0\n")
    extract_dir = tmp_path / "x"
    proc = run_7z(sevenzip, "x", f"-p{PASSWORD}", f"-o{extract_dir}", "-y", str(enc.path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (extract_dir / "big.csv").read_bytes() == data
    assert enc.path.stat().st_size < len(data)  # deflated
    assert dir_entries(tmp_path / "e") == ["big.zip"]
    assert os.stat(enc.path).st_mode & 0o077 == 0
