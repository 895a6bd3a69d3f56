"""The ``certpipeline`` command line (contract section 7).

Every command runs through the same Dagster definitions the UI loads. A
refusal or a bad argument prints one line to standard error and exits 1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

from certpipeline.cli_instance import (
    QUIET_RUN_CONFIG,
    dagster_instance,
    progress as _progress,
    runs_quietly as _runs_quietly,
)
from certpipeline.cli_parser import CliError, build_parser, read_password
from certpipeline.error_text import one_line
from certpipeline.settings import REPOSITORY_ROOT, Settings, SettingError

EXIT_REFUSED = 1
EXIT_FAILED = 2


def _warehouse(settings: Settings):
    """The warehouse resource with the command's settings as values: outside a
    run, the code location's resource holds the names of its variables."""
    from certpipeline.defs.resources import WarehouseResource

    return WarehouseResource.from_settings(settings)


# -- commands --------------------------------------------------------------------


def cmd_generate(args) -> int:
    from certpipeline.generate import generate_landing

    started = time.monotonic()
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1 or done == total:
            last[0] = now
            _progress(f"generate: {stage} {done:,}/{total:,}")

    summary = generate_landing(
        args.settings.data_dir, learners=args.learners, days=args.days, seed=args.seed, end_date=args.end_date,
        progress=progress,
    )
    print(
        f"wrote {summary.lines:,} lines in {summary.files} files for {summary.days[0]}..{summary.days[-1]} "
        f"({summary.malformed_lines:,} malformed, {summary.duplicate_lines:,} duplicates) "
        f"in {time.monotonic() - started:.1f}s"
    )
    return 0


def _days(args) -> list[dt.date]:
    if args.date:
        if args.to_date:
            raise CliError("certpipeline run: --to goes with --from, not --date")
        return [args.date]
    if not args.to_date:
        raise CliError("certpipeline run: --from needs --to")
    if args.to_date < args.from_date:
        raise CliError(f"certpipeline run: --to {args.to_date} is before --from {args.from_date}")
    return [args.from_date + dt.timedelta(days=i) for i in range((args.to_date - args.from_date).days + 1)]


def cmd_run(args) -> int:
    from certpipeline.definitions import defs
    from certpipeline.defs.partitions import daily_partitions
    from certpipeline.defs.requests import RANGE_END_TAG, RANGE_START_TAG
    from certpipeline.ingestion import file_accounts
    from certpipeline.landing_files import missing_landing_message
    from certpipeline.run_recovery import creator_tags

    days = _days(args)
    warehouse = _warehouse(args.settings)
    missing = missing_landing_message(warehouse.paths, days)
    if missing:
        raise CliError(f"certpipeline run: {missing}")
    keys = set(daily_partitions.get_partition_keys())
    outside = [d for d in days if d.isoformat() not in keys]
    if outside:
        raise CliError(
            f"certpipeline run: {outside[0]} is outside the daily partitions "
            f"({daily_partitions.start:%Y-%m-%d} to yesterday; set CERTPIPELINE_FIRST_DAY for older days)"
        )
    instance = dagster_instance(args.settings)
    job = defs.resolve_job_def("nightly_job")
    started = time.monotonic()
    # One run over the range, as a UI backfill makes (the assets' single-run
    # backfill policy): every landing day of the range is ingested before the
    # reports of each day are computed, and the run's fixed cost is paid once.
    span = f"{days[0]}..{days[-1]}" if len(days) > 1 else f"{days[0]}"
    _progress(f"run: [{len(days)} day(s)] {span} ...")
    try:
        with _runs_quietly():
            result = job.execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG,
                tags={RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat(), **creator_tags()},
            )
    except Exception as error:  # noqa: BLE001 - Dagster's own storage failed, not a step
        raise CliError(f"certpipeline run: {span} failed: {_dagster_failure(error, args.settings.dagster_home)}") from None
    if not result.success:
        reason = _failure_reason(result)
        raise CliError(f"certpipeline run: {span} failed (run {result.run_id}): {reason}{_hint(reason)}")
    _progress(f"run: [{len(days)} day(s)] {span} done in {time.monotonic() - started:.1f}s (run {result.run_id})")
    with warehouse.work() as con:
        accounts = [account for day in days for account in file_accounts(con, day)]
    print(f"{'day':<12}{'files':>6}{'read':>12}{'accepted':>12}{'duplicates':>12}{'rejected':>10}{'unreadable':>12}")
    for day in days:
        mine = [a for a in accounts if a.landing_date == day]
        print(
            f"{day.isoformat():<12}{len(mine):>6}{sum(a.lines_read for a in mine):>12,}"
            f"{sum(a.accepted for a in mine):>12,}{sum(a.duplicates for a in mine):>12,}{sum(a.rejected for a in mine):>10,}"
            f"{sum(a.file_rejection is not None for a in mine):>12,}"
        )
    for account in accounts:
        if account.file_rejection:
            _progress(f"run: {account.file} rejected: {account.file_rejection}")
    print(f"{len(days)} day(s) in {time.monotonic() - started:.1f}s; warehouse: {warehouse.lake.catalog} "
          "(open it with `certpipeline warehouse-sql`)")
    return 0


def _hint(reason: str) -> str:
    if "No space left on device" in reason:
        return "; free space on the data directory's disk and run the same command again"
    return "; see `certpipeline doctor`"


def _dagster_failure(error: BaseException, home: Path) -> str:
    if not home.is_dir():
        return (f"Dagster's home {home} is gone ({one_line(error)}); "
                "run the same command again to recreate it (run history before it is lost)")
    reason = one_line(error)
    return f"Dagster could not record the run ({reason}){_hint(reason)}"


def _failure_reason(result) -> str:
    """The innermost error of the first failed step, on one line."""
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return "see the run in the Dagster UI"
    error = failure.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    return " ".join(error.message.split())


def _service(settings: Settings):
    from certpipeline.request_service import RequestService

    return RequestService(_warehouse(settings).get_warehouse())


def cmd_request(args) -> int:
    from certpipeline import request_rules
    from certpipeline.request_service import NoWarehouseYet

    if args.learner and not args.certificate:
        raise CliError("certpipeline request: --learner goes with --certificate")
    spec = request_rules.RequestSpec(
        report_type=args.report_type, requested_by=args.by, course=args.course, batch=args.batch,
        certificate=args.certificate, learner=args.learner, filters=tuple(sorted(args.filters)),
    )
    try:
        request_id = _service(args.settings).file(spec, read_password(args))
    except NoWarehouseYet as error:
        raise CliError(f"certpipeline request: {error}") from None
    except request_rules.RequestRefused as refusal:
        raise CliError(f"certpipeline request: refused: {refusal}") from None
    print(request_id)
    return 0


def cmd_requests(args) -> int:
    kind, scope_id = next((k, v) for k, v in (("course", args.course), ("batch", args.batch), ("certificate", args.certificate)) if v)
    listed = _service(args.settings).list_scope(kind, scope_id)
    if not listed:
        print(f"no requests for {kind} {scope_id}")
        return 0
    for row in listed:
        when = row["requested_at"].strftime("%Y-%m-%d %H:%M:%SZ")
        detail = row["file_path"] or row["status_reason"] or ""
        print(f"{row['request_id']}  {row['status']:<9}  {row['report_type']:<28}  {row['scope']}  "
              f"{_filters_text(row['filters'])}  by {row['requested_by']}  {when}  {detail}")
    return 0


def _publication_failed(warehouse, reason: str) -> str:
    return (f"certpipeline process-requests: the requests are done but publishing the warehouse {warehouse.lake.catalog} "
            f"failed ({reason}){_hint(reason)}; the next pass publishes it again")


def _publish_request_statuses(warehouse) -> None:
    """What the last pass could not publish (a full disk), under the work lock."""
    import duckdb

    from certpipeline import pipeline

    try:
        with warehouse.work() as con:
            pipeline.publish_warehouse(con, warehouse)
    except (OSError, duckdb.Error) as error:
        raise CliError(_publication_failed(warehouse, one_line(error))) from None


def _filters_text(filters_json: str) -> str:
    """``no filters``, or ``filters custom.country=Japan, user_status=all``: two
    requests of one scope differ by their filters, so the listing shows them."""
    filters = json.loads(filters_json)
    return "filters " + ", ".join(f"{key}={value}" for key, value in filters.items()) if filters else "no filters"


def cmd_process_requests(args) -> int:
    """Claims like the sensor (and requests still on lease), then runs the same
    job in process; the asset produces through the request service and
    publishes the statuses, as the sensor's runs do."""
    from certpipeline.definitions import defs
    from certpipeline.defs.partitions import request_partitions
    from certpipeline.defs.requests import claim_batch
    from certpipeline.run_recovery import creator_tags

    warehouse = _warehouse(args.settings)
    instance = dagster_instance(args.settings)
    batch = claim_batch(warehouse, instance.get_dynamic_partitions(request_partitions.name), include_leased=True)
    if batch.run_request is None:
        if warehouse.paths.publication_pending.exists():
            _publish_request_statuses(warehouse)
            print("no waiting requests; published the warehouse the last pass could not")
        else:
            print("no waiting requests")
        return 0
    instance.add_dynamic_partitions(request_partitions.name, batch.new_partitions)
    _progress(f"process-requests: producing {len(batch.claimed)} request(s)")
    try:
        with _runs_quietly():
            result = defs.resolve_job_def("report_request_job").execute_in_process(
                instance=instance, raise_on_error=False, run_config=QUIET_RUN_CONFIG,
                tags={**batch.run_request.tags, **creator_tags()},
            )
    except Exception as error:  # noqa: BLE001 - Dagster's own storage failed, not a step
        raise CliError(f"certpipeline process-requests: {_dagster_failure(error, args.settings.dagster_home)}") from None
    service = _service(args.settings)
    for request_id in batch.claimed:
        row = service.get(request_id)
        print(f"{request_id}  {row['status']:<8}  {row['file_path'] or row['status_reason'] or ''}")
    if warehouse.paths.publication_pending.exists():
        reason = _failure_reason(result)
        raise CliError(_publication_failed(warehouse, reason))
    if not result.success:
        _progress(f"process-requests: some requests failed and will be retried: {_failure_reason(result)}")
    return 0


def _token_store(settings: Settings):
    from certpipeline.api_tokens import TokenStore

    return TokenStore(_warehouse(settings).paths.pipeline)


def cmd_tokens(args) -> int:
    from certpipeline.api_tokens import TokenError

    store = _token_store(args.settings)
    try:
        if args.token_command == "create":
            print(store.create(args.name))
            _progress(f"tokens: created the token of {args.name}; it is shown only this once")
        elif args.token_command == "revoke":
            store.revoke(args.name)
            print(f"revoked the token of {args.name}")
        else:
            entries = store.entries()
            if not entries:
                print("no tokens")
            for entry in entries:
                print(f"{entry.name}  created {entry.created_at}  " + (
                    f"revoked {entry.revoked_at}" if entry.revoked_at else "active"))
    except TokenError as error:
        raise CliError(f"certpipeline tokens {args.token_command}: {error}") from None
    return 0


def cmd_serve(args) -> int:
    """The HTTP API in this process. Uvicorn's access log shows method, path and
    status only: no body, so never a password."""
    import uvicorn

    from certpipeline.api import create_app

    app = create_app(_service(args.settings), _token_store(args.settings))
    _progress(f"serve: listening on http://{args.host}:{args.port} (OpenAPI at /docs and /openapi.json)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
def cmd_warehouse_sql(args) -> int:
    lake = _warehouse(args.settings).lake
    if not lake.exists():
        raise CliError(f"certpipeline warehouse-sql: no warehouse at {lake.catalog} yet; run `certpipeline run` first")
    print("\n".join(lake.statements(read_only=True)))
    return 0


def cmd_doctor(args) -> int:
    from certpipeline.doctor import diagnose

    warehouse = _warehouse(args.settings)
    findings = diagnose(warehouse.paths, warehouse.lake, warehouse.get_warehouse().vault, args.settings.dagster_home)
    for finding in findings:
        print(finding.line())
    problems = [f for f in findings if not f.ok]
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return EXIT_REFUSED
    return 0


def cmd_dev(args) -> int:
    """Become ``dg dev`` on the CLI's Dagster home, from the repository root.

    A shell starts a background job (``&``, a script, ``nohup``) with SIGINT
    ignored; Python then leaves it ignored and Dagster's dev command answers
    SIGTERM with the SIGINT handler, so ``dg dev &`` ignores both and can only
    be killed. Both signals get their default back before the exec, so the
    new process installs its usual handlers and stops cleanly on either."""
    import signal
    import shutil


    dg = shutil.which("dg", path=str(Path(sys.executable).parent)) or shutil.which("dg")
    if dg is None:
        raise CliError("certpipeline dev: dg is not installed here (it comes with pip install -e .)")
    dagster_instance(args.settings)  # sets DAGSTER_HOME and writes the instance's dagster.yaml the first time
    if (REPOSITORY_ROOT / "pyproject.toml").is_file():
        os.chdir(REPOSITORY_ROOT)  # where [tool.dg] names the code location
    sys.stdout.flush()
    sys.stderr.flush()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    os.execv(dg, [dg, "dev", "--host", args.host, "--port", str(args.port)])


COMMANDS = {
    "generate": cmd_generate,
    "run": cmd_run,
    "request": cmd_request,
    "requests": cmd_requests,
    "process-requests": cmd_process_requests,
    "serve": cmd_serve,
    "tokens": cmd_tokens,
    "doctor": cmd_doctor,
    "warehouse-sql": cmd_warehouse_sql,
    "dev": cmd_dev,
}


def main(argv: list[str] | None = None) -> int:
    from certpipeline.warehouse import owner_only_from_now_on

    # Stores hold names and emails; Dagster's run storage, DuckDB's WAL and
    # spill files, exhausts and landing files written by `generate` included.
    owner_only_from_now_on()
    try:
        args = build_parser().parse_args(argv)
        # Read once; the commands receive it (the code location reads the same environment when it loads).
        args.settings = Settings.from_environment()
        return COMMANDS[args.command](args)
    except CliError as error:
        print(str(error), file=sys.stderr)
        return EXIT_REFUSED
    except SettingError as error:
        print(f"certpipeline: {error}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("certpipeline: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - contract section 7: one line, never a traceback
        print(f"certpipeline: unexpected error: {one_line(error, 500)}; "
              "run `certpipeline doctor` to check the stores", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
