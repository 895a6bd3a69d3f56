"""Files and secrets: the data directory and every store are their owner's
only, and the password key lives outside the data directory."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from certpipeline.password_vault import PasswordVault
from certpipeline_tests.conftest import admin_and_largest_batch

YESTERDAY = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)


def modes(root: Path, skip: Path | None = None) -> dict[Path, str]:
    """``root`` and every entry below it (but ``skip``) with its permission bits, in octal."""
    found = {root: oct(stat.S_IMODE(root.lstat().st_mode))}
    for path in root.rglob("*"):
        if skip is None or (path != skip and skip not in path.parents):
            found[path] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


@pytest.mark.slow
def test_every_store_is_owner_only_and_the_key_is_outside_the_data_directory(tmp_path):
    data_dir, home, user_home = tmp_path / "data", tmp_path / "dagster_home", tmp_path / "user"
    data_dir.mkdir(mode=0o755)
    user_home.mkdir()
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(home), "HOME": str(user_home)}
    for variable in ("CERTPIPELINE_SECRET_KEY_FILE", "CERTPIPELINE_SECRET_KEY", "XDG_CONFIG_HOME"):
        env.pop(variable, None)

    def cli(*args, stdin=None):
        done = subprocess.run([sys.executable, "-m", "certpipeline.cli", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("generate", "--learners", "200", "--days", "1", "--seed", "3", "--end-date", YESTERDAY.isoformat())
    cli("run", "--date", YESTERDAY.isoformat())
    admin, batch = admin_and_largest_batch(data_dir)
    cli("request", "user_profile_exhaust", "--batch", batch, "--by", admin, "--password-stdin", stdin="a passphrase\n")
    cli("request", "course_progress_exhaust", "--batch", batch, "--by", admin)
    assert "Success" in cli("process-requests")

    found = {**modes(data_dir, skip=data_dir / "landing"), **modes(home)}
    for store in ("pipeline/work.duckdb", "pipeline/requests.duckdb", "warehouse/catalog.sqlite", "exhausts/user_profile_exhaust",
                  "exhausts/course_progress_exhaust"):
        assert data_dir / store in found
    assert home / "dagster.yaml" in found
    assert any(path.suffix == ".db" for path in found)  # Dagster's run storage
    assert found == {path: oct(0o700) if path.is_dir() else oct(0o600) for path in found}

    key = user_home / ".config" / "certpipeline" / "secret.key"
    assert (oct(stat.S_IMODE(key.stat().st_mode)), oct(stat.S_IMODE(key.parent.stat().st_mode))) == (
        oct(0o600), oct(0o700))
    assert not [p for p in data_dir.rglob("*.key")]


def test_a_key_left_in_the_data_directory_by_an_earlier_version_moves_out_and_still_opens(tmp_path):
    legacy = tmp_path / "data" / "pipeline" / "secret.key"
    legacy.parent.mkdir(parents=True)
    sealed = PasswordVault(legacy).seal("an old passphrase")
    vault = PasswordVault(tmp_path / "config" / "certpipeline" / "secret.key", legacy_key_file=legacy)
    assert vault.open(sealed) == "an old passphrase"
    assert not legacy.exists()
    assert oct(stat.S_IMODE(vault.key_file.stat().st_mode)) == oct(0o600)
