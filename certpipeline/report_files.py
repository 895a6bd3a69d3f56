"""Report files: how a report DataFrame becomes the file a user downloads.

Contract section 5: a CSV with a header row, UTF-8 with a byte-order mark (so
spreadsheet programs pick UTF-8 and show accented names as written), comma
separated, dates as ``YYYY-MM-DD``, whole numbers without a decimal point, an
empty value as an empty cell; text cells that a spreadsheet could run as a
formula are neutralized (see ``spreadsheet_safe``); with a password the CSV is
the only member of an AES-256 encrypted zip.

Every rule about what a cell looks like in the file lives here, in
``spreadsheet_safe``; the writers below only serialize its result.

Files are published atomically: written under a hidden temporary name in the
target directory, fsynced, chmod 0o600, then ``os.replace``d into place, so a
crash never leaves a partial file under the final name.  For encrypted reports
the CSV is streamed by Polars straight into the encrypted zip member, so the
plaintext never touches the disk.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyzipper

from certpipeline.atomic_files import replace_atomically

__all__ = [
    "FORMULA_PREFIXES",
    "FORMULA_TRIGGER",
    "ReportFile",
    "ZIP_COMPRESSION",
    "ZIP_COMPRESSLEVEL",
    "format_whole_numbers",
    "neutralize_formulas",
    "safe_file_component",
    "spreadsheet_safe",
    "write_report_file",
]

# Contract section 5: a text cell beginning with one of these, also after
# leading whitespace, may be run as a formula (``|`` starts a DDE link in some
# spreadsheets; some strip a leading tab or line break before they look).
FORMULA_PREFIXES = ("=", "+", "-", "@", "|", "\t", "\r", "\n")
# The same rule as one regular expression. Whitespace is spelled out so that
# Polars (Rust regex, where ``\s`` is Unicode) and DuckDB (RE2, where ``\s`` is
# ASCII) agree on every character: a no-break or ideographic space counts too.
FORMULA_TRIGGER = r"^(?:[\s\p{Z}\x0B\x{85}]*[=+\-@|]|[\t\r\n])"

# Compression of the encrypted zip member.
#
# Measured (pyzipper 0.4, WZ_AES nbits=256, 2 vCPU Xeon) on a 100,000 row x
# 10 column CSV of 17,294,917 bytes (ids, UUIDs, names, e-mails, dates, ints);
# Polars write_csv itself takes ~0.05 s:
#
#   method                 seconds   zip bytes    ratio
#   ZIP_STORED             0.06      17,295,075   100 %
#   ZIP_DEFLATED level 1   0.17       6,952,527    40 %
#   ZIP_DEFLATED level 6   0.46       6,168,006    36 %
#   ZIP_DEFLATED level 9   0.80       6,029,989    35 %
#
# (AES itself is cheap: STORED includes encryption.)  Level 1 gets ~90 % of
# the size reduction of level 6 at ~1/3 of the CPU; the extra 0.78 MB level 6
# saves costs 0.29 s, i.e. it only pays off for downloads slower than
# ~2.7 MB/s.  Streaming the CSV into the member instead of writing a temp CSV
# and ``zf.write``-ing it costs the same time (+~5 MB peak RSS for Polars'
# write batches) and keeps the plaintext off the disk.
ZIP_COMPRESSION = pyzipper.ZIP_DEFLATED
ZIP_COMPRESSLEVEL = 1

_MAX_COMPONENT_LEN = 80
# A file stem is ``<scope>-<request_id>``: two components, each already
# bounded, must both survive whole (well under the 255-byte name limit).
_MAX_STEM_LEN = 2 * _MAX_COMPONENT_LEN + 1
_HASH_LEN = 10  # hex chars of sha256 (40 bits) appended when an id was altered
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_DATE_FORMAT = "%Y-%m-%d"


# --------------------------------------------------------------------------
# Formula neutralization
# --------------------------------------------------------------------------


def _is_text_dtype(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def neutralize_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column: a cell matching FORMULA_TRIGGER gets a leading single
    quote, so a spreadsheet shows it as text (OWASP CSV injection advice); the
    rest of the cell is kept as is (a cell with a line break is quoted in the
    file, where spreadsheets keep the break inside the cell). Pure Polars
    expressions, no Python loop over rows; non-text columns untouched.

    Categorical / Enum columns hold text that ends up in the CSV just the same,
    so they are neutralized too (and come back as String).  Nulls stay null.
    """
    exprs = []
    for name, dtype in frame.schema.items():
        if not _is_text_dtype(dtype):
            continue
        text = pl.col(name).cast(pl.String)
        exprs.append(
            pl.when(text.str.contains(FORMULA_TRIGGER))
            .then(pl.lit("'") + text)
            .otherwise(text)
            .alias(name)
        )
    if not exprs:
        return frame
    return frame.with_columns(exprs)


# Beyond 2**53 a float no longer holds every whole number exactly; such values
# keep Polars' own rendering (e.g. ``1e+20``), which has no decimal point either.
_EXACT_WHOLE_LIMIT = 2.0**53


def format_whole_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Every float column as text: a whole value without a decimal point
    (``26``, not ``26.0``), any other value as Polars writes it (``1.5``,
    ``NaN``). Nulls stay null. Run after neutralize_formulas: these cells are
    numbers, and ``-2`` must stay a number, not become the text ``'-2``."""
    exprs = []
    for name, dtype in frame.schema.items():
        if not dtype.is_float():
            continue
        value = pl.col(name)
        whole = value.is_finite() & (value == value.round(0)) & (value.abs() < _EXACT_WHOLE_LIMIT)
        exprs.append(
            pl.when(whole)
            .then(value.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(value.cast(pl.String))
            .alias(name)
        )
    if not exprs:
        return frame
    return frame.with_columns(exprs)


def spreadsheet_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame exactly as its cells are written to the CSV (contract section 5)."""
    return format_whole_numbers(neutralize_formulas(frame))


# --------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------


def safe_file_component(text: str, max_length: int = _MAX_COMPONENT_LEN) -> str:
    """A file-name-safe, non-empty, bounded (<= ``max_length`` chars) rendering of an id.

    Only ``[A-Za-z0-9._-]`` survives, every other character (one per code
    point) becomes ``_``; leading dots are stripped so ``..`` or ``.hidden``
    can't be made.  An id that is already safe (and <= 80 chars, not starting
    with a dot, non-empty) is returned unchanged.  Otherwise - something was
    replaced, stripped or truncated, or the id is empty - ``_`` plus the first
    10 hex chars of the sha256 of the original id is appended, so distinct ids
    that sanitize to the same text still get distinct names.  Deterministic.
    """
    sanitized = _UNSAFE_CHARS.sub("_", text).lstrip(".")
    if sanitized == text and 0 < len(text) <= max_length:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    head = sanitized[: max_length - _HASH_LEN - 1]
    return f"{head}_{digest[:_HASH_LEN]}"


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFile:
    path: Path
    row_count: int
    encrypted: bool


def _write_csv(frame: pl.DataFrame, target) -> None:
    frame.write_csv(
        target,
        include_header=True,
        separator=",",
        line_terminator="\n",
        date_format=_DATE_FORMAT,
        null_value="",
        include_bom=True,
    )


def write_report_file(
    frame: pl.DataFrame, directory: Path, stem: str, password: str | None
) -> ReportFile:
    """Writes `frame` as CSV (header row, UTF-8 with a byte-order mark, comma
    separated, dates as YYYY-MM-DD, null -> empty cell) after spreadsheet_safe.

    Without password: ``directory/stem.csv``.  With password:
    ``directory/stem.zip``, a zip whose only member is ``stem.csv``, AES-256
    encrypted with pyzipper (WZ_AES, nbits=256); the password is encoded as
    UTF-8.  An empty password is refused (ValueError) rather than silently
    producing a file anyone can open.  `stem` is passed through
    safe_file_component (up to 161 characters, so a ``<scope>-<request_id>``
    stem made of two safe components stays whole).

    The file is first written to a hidden temporary name in the same
    directory, fsynced, chmod 0o600, then os.replace()d into place, so a crash
    never leaves a partial file under the final name; the temporary file is
    removed on any error.  `directory` is created (mode 0o700) if missing.
    """
    if password is not None and password == "":
        raise ValueError("empty report password; pass None for an unencrypted report")
    encrypted = password is not None
    final_path = _final_path(Path(directory), safe_file_component(stem, max_length=_MAX_STEM_LEN), encrypted)
    cleaned = spreadsheet_safe(frame)
    csv_name = final_path.with_suffix(".csv").name

    def write(fh, tmp_name: str) -> None:
        if encrypted:
            _write_encrypted_zip(cleaned, fh, csv_name, password)
        else:
            # Let Polars write the file natively (fastest path); fsync
            # through our descriptor afterwards, it is the same inode.
            _write_csv(cleaned, tmp_name)

    replace_atomically(final_path, write)
    return ReportFile(path=final_path, row_count=cleaned.height, encrypted=encrypted)


def _final_path(directory: Path, safe_stem: str, encrypted: bool) -> Path:
    """``directory/<stem>.zip`` or ``.csv``, the directory created owner-only."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    base_dir = directory.resolve(strict=True)
    final_path = base_dir / (f"{safe_stem}.zip" if encrypted else f"{safe_stem}.csv")
    # Defence in depth: safe_file_component already rules out separators and
    # dot-names, but never publish anything outside `directory`.
    if final_path.resolve().parent != base_dir or final_path.parent != base_dir:
        raise ValueError(f"report path {final_path!s} escapes {base_dir!s}")
    return final_path


def _write_encrypted_zip(frame: pl.DataFrame, fh, member: str, password: str) -> None:
    with pyzipper.AESZipFile(
        fh,
        "w",
        compression=ZIP_COMPRESSION,
        compresslevel=ZIP_COMPRESSLEVEL,
        encryption=pyzipper.WZ_AES,
    ) as zf:
        zf.setpassword(password.encode("utf-8"))
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        info = zf.zipinfo_cls(member, date_time=time.localtime()[:6])
        info.compress_type = ZIP_COMPRESSION
        # pyzipper (a vendored zipfile) reads the level from this slot; it is
        # what ZipFile.open(name, "w") sets from `compresslevel` itself.
        info._compresslevel = ZIP_COMPRESSLEVEL
        info.external_attr = 0o600 << 16  # member extracted as -rw-------
        with zf.open(info, "w") as out:
            # Polars streams the CSV in batches into the encrypting writer.
            _write_csv(frame, out)
