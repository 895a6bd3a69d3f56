"""Files that appear whole or not at all: written under a hidden temporary
name beside their final one, fsynced, then renamed into place. A crash never
leaves a partial file under the final name."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def replace_atomically(final_path: Path, write: Callable[[BinaryIO, str], None]) -> None:
    """``write(file, its name)`` into a hidden temporary file beside
    ``final_path``, fsync it, then rename it into place: a crash never leaves
    a partial file under the final name, and the temporary file is removed on
    any error."""
    base_dir = final_path.parent
    # mkstemp creates the file O_EXCL with mode 0o600.  The leading dot keeps
    # it from ever clashing with a final name (those never start with a dot).
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=".tmp", dir=base_dir)
    tmp_path = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            os.fchmod(fh.fileno(), 0o600)
            write(fh, tmp_name)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_path, final_path)
    except BaseException:
        try:
            tmp_path.unlink()
        except FileNotFoundError:
            pass
        raise
    fsync_directory(base_dir)
