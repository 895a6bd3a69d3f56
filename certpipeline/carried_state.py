"""The report state one run leaves for the next: the large frames
(``state.CARRIED_FRAMES``: users, enrollments, awards) of the last report day
a run computed, so that the next night computes again only the keys that
changed instead of every key (at a million learners a night's state took
2.2 s; carried, 0.4 s, plus 0.5 s to save and read it).

The frames are Arrow IPC files in ``carried_state/<token>/`` beside the
working database. They may be used only while ``carried.saved`` names their
token, as of their day and computed by the same state code (its
fingerprint). From the moment a token is saved, the history refresh notes in
``carried.changed_keys`` the key of every history row it deletes or inserts
(a re-ingested day can remove an event, and with it the only row of a key):
those keys are computed again, with the keys that have events between the
saved day and the report day.

Saving writes the files under a new token first, then names it in one
transaction that also clears the changed keys; a crash in between leaves
the previous token named, its files and its changed keys intact. Any doubt
(no token, a later day saved, other state code, a file missing or
unreadable) means the state is loaded whole, as without a saved state.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import uuid

import duckdb
import polars as pl

from certpipeline import state
from certpipeline.atomic_files import fsync_directory, replace_atomically
from certpipeline.faults import crash_point
from certpipeline.transactions import transaction
from certpipeline.warehouse import database_folder, private_directory

FOLDER_NAME = "carried_state"
# lz4: a third of the uncompressed size for 0.1 s more at a million learners.
COMPRESSION = "lz4"


def save(con: duckdb.DuckDBPyConnection, as_of: state.State, attributes: dict[str, tuple[str, ...]]) -> None:
    """Keep ``as_of``'s carried frames (loaded narrowed to ``attributes``) for
    the next run, unless a later day's are kept. Call it with the work lock
    held and the history unchanged since ``as_of`` was computed."""
    saved = con.execute(f"SELECT as_of FROM {state.CARRIED_SAVED}").fetchall()
    if saved and saved[0][0] > as_of.as_of:
        return
    folder = database_folder(con) / FOLDER_NAME
    private_directory(folder)
    token = uuid.uuid4().hex
    writing = folder / f".{token}.tmp"
    private_directory(writing)
    for name in state.CARRIED_FRAMES:
        frame = getattr(as_of, name)
        replace_atomically(writing / f"{name}.arrow",
                           lambda handle, _, frame=frame: frame.write_ipc(handle, compression=COMPRESSION))
    os.replace(writing, folder / token)
    fsync_directory(folder)
    crash_point("carried.files_written")
    with transaction(con):
        con.execute(f"DELETE FROM {state.CARRIED_SAVED}")
        con.execute(f"INSERT INTO {state.CARRIED_SAVED} VALUES (?, ?, ?)", [token, as_of.as_of, state.carried_fingerprint(attributes)])
        con.execute(f"DELETE FROM {state.CARRIED_CHANGED_KEYS}")
    for other in folder.iterdir():
        if other.name != token:
            shutil.rmtree(other, ignore_errors=True)


def load(con: duckdb.DuckDBPyConnection, day: dt.date, attributes: dict[str, tuple[str, ...]]) -> state.State | None:
    """The saved state (narrowed to ``attributes``), usable to carry forward
    to ``day`` with ``state.advance_state(..., changed_since=state.CARRIED_CHANGED_KEYS)``,
    or None when there is none that can be: its frames are the carried ones,
    the others are empty."""
    saved = con.execute(f"SELECT token, as_of, fingerprint FROM {state.CARRIED_SAVED}").fetchall()
    if not saved:
        return None
    token, as_of, saved_print = saved[0]
    if as_of >= day or saved_print != state.carried_fingerprint(attributes):
        return None
    saved_folder = database_folder(con) / FOLDER_NAME / token
    try:
        frames = {name: pl.read_ipc(saved_folder / f"{name}.arrow") for name in state.CARRIED_FRAMES}
    except (OSError, pl.exceptions.PolarsError):
        return None
    empty = pl.DataFrame()
    return state.State(as_of=as_of, **{name: frames.get(name, empty) for name in state.STATE_FRAMES})
