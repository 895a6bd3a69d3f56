"""The report request lifecycle (contract sections 6 and 8) over a ``Warehouse``.

One code path for every way in: ``certpipeline request`` / ``requests`` /
``process-requests``, the HTTP API, and the Dagster asset, sensor and
schedules each call a method or two of ``RequestService``; the rules and the
SQL are in ``report_requests``. Nothing here knows about Dagster or HTTP.

- ``file`` seals the password at once, checks the request against the
  published warehouse, and stores it ``Submitted``.
- ``claim`` marks waiting requests ``Pending``; an attempt counts when its
  production ends (a file or an error), so a killed pass spends none.
- ``produce_batch`` produces claimed requests under the work lock, records
  each outcome, then publishes the request statuses to the warehouse lake,
  whichever of the sensor's run or ``process-requests`` did it.
- ``get``, ``list_scope`` and ``download`` read for one acting user: their
  own requests, or everyone's for a platform admin (or the operator's CLI).
- ``expire_files`` deletes files past the retention period; rows stay ``Expired``.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from certpipeline import lake, pipeline
from certpipeline import report_requests as rq
from certpipeline import request_rules
from certpipeline.error_text import one_line
from certpipeline.faults import crash_point
from certpipeline.pipeline import Warehouse
from certpipeline.state import CATALOG_ENTITIES, State, load_state

OPERATOR = None  # the acting user of the CLI on the pipeline's own machine: may read every request


class NoWarehouseYet(RuntimeError):
    """Filing needs a published warehouse to check rights against."""


class NotFound(LookupError):
    """No such request for this acting user (another requester's reads the same)."""


class FileUnavailable(LookupError):
    """The request exists and is visible, but has no file to download (yet, or any more)."""

    def __init__(self, message: str, expired: bool):
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class Outcome:
    """What one pass did with one request."""

    request_id: str
    status: str  # the request's status after the pass
    detail: str = ""  # the file's path, or the reason
    rows: int | None = None
    skipped: bool = False  # no longer Pending (another pass finished it) or unknown: not touched
    production_error: bool = False  # an error other than a refusal: Pending again until the third attempt


class RequestService:
    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self._published: tuple[tuple, State] | None = None
        # A read-only session on the lake kept open with the catalog identity
        # it was opened on: attaching costs 0.3-1 s (two extensions loaded,
        # the catalog opened), asking for the newest snapshot a few ms.
        self._lake_session: tuple[tuple, duckdb.DuckDBPyConnection] | None = None
        self._published_lock = threading.Lock()
        # The server's threads queue here rather than poll the queue's file lock.
        self._queue_lock = threading.Lock()

    @contextmanager
    def _queue(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._queue_lock, self.warehouse.requests() as queue:
            yield queue

    # -- filing --------------------------------------------------------------------

    def file(self, spec: request_rules.RequestSpec, password: str | None) -> str:
        """Check and store a request as Submitted; returns its id. Raises
        ``RequestRefused`` (nothing stored) or ``NoWarehouseYet``."""
        return self.file_and_show(spec, password)["request_id"]

    def file_and_show(self, spec: request_rules.RequestSpec, password: str | None) -> dict:
        """``file``, answering with the stored row (as ``get`` would), read in the
        same connection."""
        if password == "":
            raise request_rules.RequestRefused("the password is empty")
        # Sealed before anything else can fail, so only the ciphertext travels further.
        ciphertext = self.warehouse.vault.seal(password) if password is not None else None
        del password
        state = self.published_state()
        with self._queue() as queue:
            request_id = rq.file_request(queue, state, spec, ciphertext, now=self.warehouse.now())
            return rq.public_request(queue, request_id)

    def published_state(self) -> State:
        """The users and catalog of the published warehouse as of today, the
        state filing checks rights against. Kept while the lake's latest
        snapshot is the same, so a busy API does not reload it for every request."""
        settings = self.warehouse.lake
        if not settings.exists():
            raise NoWarehouseYet(f"no warehouse at {settings.catalog} yet; run `certpipeline run` first")
        today = self.warehouse.today()
        with self._published_lock:
            try:
                con = self._lake_reader(settings)
                # One transaction: the state is that of the snapshot the key names.
                con.execute("BEGIN TRANSACTION")
                try:
                    snapshot = con.execute(f"SELECT max(snapshot_id) FROM ducklake_snapshots('{lake.ALIAS}')").fetchone()[0]
                    key = (settings, snapshot, today)
                    if self._published is None or self._published[0] != key:
                        self._published = (key, load_state(con, today, entities=CATALOG_ENTITIES))
                finally:
                    con.execute("ROLLBACK")
            except duckdb.Error as error:  # a corrupt or foreign catalog, or missing data files
                self._close_lake_reader()
                raise NoWarehouseYet(
                    f"the published warehouse {settings.catalog} cannot be read ({one_line(error, 200)}); "
                    "publish it again with `certpipeline run --date <last day>` (see `certpipeline doctor`)"
                ) from None
            return self._published[1]

    def _lake_reader(self, settings: lake.LakeSettings) -> duckdb.DuckDBPyConnection:
        """The kept session, opened again when the catalog changed identity (a
        lake moved aside and published anew, another setting)."""
        catalog_file = settings.sqlite_file
        identity = (settings, catalog_file.stat().st_ino if catalog_file else None)
        if self._lake_session is None or self._lake_session[0] != identity:
            self._close_lake_reader()
            self._lake_session = (identity, lake.open_reader(settings))
        return self._lake_session[1]

    def _close_lake_reader(self) -> None:
        if self._lake_session is not None:
            self._lake_session[1].close()
            self._lake_session = None

    def is_platform_admin(self, user_id: str) -> bool:
        users = self.published_state().users
        return not users.filter(
            (pl.col("user_id") == user_id) & (pl.col("status") == "active") & (pl.col("platform_role") == "admin")
        ).is_empty()

    # -- claiming and producing ----------------------------------------------------

    def claim(self, include_leased: bool = False) -> list[tuple[str, int]]:
        """Mark every waiting request Pending; returns (request id, attempts so far), oldest first.
        ``include_leased`` also takes requests another pass holds (``process-requests``)."""
        with self._queue() as queue:
            return rq.claim_waiting(queue, now=self.warehouse.now(), include_leased=include_leased)

    def produce_batch(self, request_ids: list[str]) -> list[Outcome]:
        """Produce every request of ``request_ids`` still Pending; one outcome each.

        Holds the work lock throughout, so productions never overlap and a
        request no longer Pending (finished by another pass) is skipped. One
        request's failure does not stop the others. Ends by publishing the
        request statuses, so analysts see the same whoever ran the pass."""
        outcomes = []
        with self.warehouse.work() as con:
            with self._queue() as queue:
                pending = [rq.get_request(queue, request_id) for request_id in rq.pending_among(queue, request_ids)]
            state = self._state_for(con, [stored.spec for stored in pending]) if pending else None
            by_id = {stored.request_id: stored for stored in pending}
            for request_id in request_ids:
                stored = by_id.get(request_id)
                if stored is None:
                    outcomes.append(Outcome(request_id, "not pending", skipped=True))
                else:
                    outcomes.append(self._produce_one(state, stored))
            if pending:
                pipeline.publish_warehouse(con, self.warehouse)
        return outcomes

    def _state_for(self, con: duckdb.DuckDBPyConnection, specs: list[request_rules.RequestSpec]) -> State:
        """The state the batch needs: when every request is about batches, only
        those batches' rows (a batch exhaust is a small slice of the platform)."""
        today = self.warehouse.today()
        if all(spec.batch is not None for spec in specs):
            return load_state(con, today, batches=sorted({spec.batch for spec in specs}),
                              also_users=sorted({spec.requested_by for spec in specs}))
        return load_state(con, today)

    def _produce_one(self, state: State, stored: rq.StoredRequest) -> Outcome:
        request_id = stored.request_id
        try:
            try:
                password = self.warehouse.vault.open(stored.password_ciphertext) if stored.password_ciphertext else None
            except ValueError as error:
                # A key that cannot open the password now never will: no retry.
                raise request_rules.RequestRefused(f"{error}; file the request again") from None
            report_file = request_rules.produce(state, self.warehouse.paths.exhausts, request_id, stored.spec, password)
        except request_rules.RequestRefused as refusal:
            with self._queue() as queue:
                status = rq.mark_failed_attempt(queue, request_id, str(refusal), permanent=True,
                                                now=self.warehouse.now())
            return Outcome(request_id, status, str(refusal))
        except Exception as error:  # noqa: BLE001 - recorded on the request, retried on the next pass
            reason = f"{type(error).__name__}: {error}"
            with self._queue() as queue:
                status = rq.mark_failed_attempt(queue, request_id, reason, permanent=False, now=self.warehouse.now())
            return Outcome(request_id, status, reason, production_error=True)
        crash_point("request.file_written")
        with self._queue() as queue:
            rq.mark_success(queue, request_id, report_file, now=self.warehouse.now())
        return Outcome(request_id, rq.SUCCESS, str(report_file.path), report_file.row_count)

    # -- reading, for one acting user ------------------------------------------------

    def _reads_everything(self, acting_user: str | None) -> bool:
        return acting_user is OPERATOR or self.is_platform_admin(acting_user)

    def get(self, request_id: str, acting_user: str | None = OPERATOR) -> dict:
        """One request as ``ops.report_requests`` shows it. Raises ``NotFound``
        when there is none, or it is another requester's and the acting user is
        not a platform admin."""
        with self._queue() as queue:
            row = rq.public_request(queue, request_id)
        if row is None or (row["requested_by"] != acting_user and not self._reads_everything(acting_user)):
            raise NotFound(f"no request {request_id!r}")
        return row

    def list_scope(self, kind: str, scope_id: str, acting_user: str | None = OPERATOR) -> list[dict]:
        """The scope's last ten requests the acting user may read, newest first:
        their own, or everyone's for a platform admin."""
        requested_by = None if self._reads_everything(acting_user) else acting_user
        with self._queue() as queue:
            return rq.list_requests(queue, kind, scope_id, requested_by).to_dicts()

    def expires_at(self, row: dict) -> dt.datetime | None:
        if row["completed_at"] is None or row["status"] not in (rq.SUCCESS, rq.EXPIRED):
            return None
        return row["completed_at"] + dt.timedelta(days=self.warehouse.retention_days)

    def download(self, request_id: str, acting_user: str | None = OPERATOR) -> Path:
        """The request's file, while it is there: Success and not past retention
        (even if ``expire_files`` has not run yet)."""
        row = self.get(request_id, acting_user)
        if row["status"] == rq.EXPIRED or (
                row["status"] == rq.SUCCESS and self.warehouse.now() >= self.expires_at(row)):
            raise FileUnavailable(
                f"the file of {request_id} expired after {self.warehouse.retention_days} days; file the request again",
                expired=True)
        if row["status"] != rq.SUCCESS:
            raise FileUnavailable(f"{request_id} is {row['status']}: no file to download", expired=False)
        path = Path(row["file_path"])
        if not path.is_file():
            raise FileUnavailable(f"the file of {request_id} is no longer there", expired=True)
        return path

    # -- retention -----------------------------------------------------------------

    def expire_files(self) -> list[str]:
        """Delete every file older than the retention period; its request stays,
        ``Expired`` without a file path. Returns the expired request ids.

        The file goes first: a crash in between leaves a Success whose file is
        missing, which the next call expires (and downloads refuse meanwhile)."""
        cutoff = self.warehouse.now() - dt.timedelta(days=self.warehouse.retention_days)
        with self.warehouse.work() as con:
            with self._queue() as queue:
                due = rq.files_completed_before(queue, cutoff)
            exhausts = self.warehouse.paths.exhausts.resolve()
            for _, file_path in due:
                if Path(file_path).resolve().is_relative_to(exhausts):  # never anything outside exhausts/
                    Path(file_path).unlink(missing_ok=True)
            if due:
                with self._queue() as queue:
                    rq.mark_expired(queue, [request_id for request_id, _ in due], self.warehouse.retention_days)
                pipeline.publish_warehouse(con, self.warehouse)
        return [request_id for request_id, _ in due]
