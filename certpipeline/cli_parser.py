"""The arguments of the ``certpipeline`` command line (contract section 7):
every command, its options and how each value is checked (the password read
from standard input or its file too); a bad argument is
one line (``CliError``), never argparse's usage dump."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path


class CliError(Exception):
    """A one-line error for the user."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage too
        raise CliError(f"{self.prog}: {message} (see --help)")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return value


def _filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"filters are KEY=VALUE, not {text!r}")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="certpipeline", description="Certificate reports from learning platform events.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    generate = commands.add_parser("generate", help="write synthetic landing files to run on")
    generate.add_argument("--learners", type=_positive, default=1000)
    generate.add_argument("--days", type=_positive, default=30)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--end-date", type=_date, default=None, help="last landing day (default: yesterday, UTC)")

    run = commands.add_parser("run", help="ingest and build every report for a day or a range of days")
    when = run.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", type=_date)
    when.add_argument("--from", dest="from_date", type=_date)
    run.add_argument("--to", dest="to_date", type=_date)

    request = commands.add_parser("request", help="file a report request and print its id")
    request.add_argument("report_type", metavar="REPORT_TYPE")
    request.add_argument("--by", required=True, metavar="USER_ID", help="the requesting user")
    scope = request.add_mutually_exclusive_group()
    scope.add_argument("--course", metavar="ID")
    scope.add_argument("--batch", metavar="ID")
    scope.add_argument("--certificate", metavar="ID")
    request.add_argument("--learner", metavar="USER_ID", help="with --certificate")
    request.add_argument("--filter", dest="filters", type=_filter, action="append", default=[], metavar="KEY=VALUE")
    password = request.add_mutually_exclusive_group()
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    password.add_argument("--password-file", type=Path, metavar="PATH")

    listing = commands.add_parser("requests", help="the last ten requests of a scope, newest first")
    listed = listing.add_mutually_exclusive_group(required=True)
    listed.add_argument("--course", metavar="ID")
    listed.add_argument("--batch", metavar="ID")
    listed.add_argument("--certificate", metavar="ID")

    commands.add_parser("process-requests", help="produce every waiting request now")

    serve = commands.add_parser("serve", help="answer the HTTP API for the learning platform (contract section 8)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=_port, default=8000)

    tokens = commands.add_parser("tokens", help="bearer tokens of the HTTP API's platform clients")
    token_commands = tokens.add_subparsers(dest="token_command", required=True, parser_class=OneLineParser)
    token_commands.add_parser("create", help="create a token for client NAME and print it, once").add_argument("name", metavar="NAME")
    token_commands.add_parser("revoke", help="end client NAME's token").add_argument("name", metavar="NAME")
    token_commands.add_parser("list", help="every token's client, creation and revocation")
    commands.add_parser("doctor", help="check every store and say what to do about each problem")
    commands.add_parser(
        "warehouse-sql",
        help="print the SQL that opens the warehouse read-only in DuckDB (CLI or Python)",
        description="Prints LOAD, ATTACH (read-only) and USE statements; run them as printed, from any "
        "directory, in the DuckDB CLI (duckdb -cmd \"$(certpipeline warehouse-sql)\") or Python's duckdb.",
    )

    dev = commands.add_parser("dev", help="the Dagster UI, schedules and sensors in one process (dg dev) on the "
                              "CLI's instance; stops on SIGTERM and SIGINT even when started in the background")
    dev.add_argument("--host", default="127.0.0.1", help="address the UI listens on (default: 127.0.0.1, this machine only)")
    dev.add_argument("--port", type=_port, default=3000)
    return parser


def read_password(args) -> str | None:
    """The first line of standard input or of the password file, as UTF-8."""
    if args.password_stdin:
        raw = sys.stdin.buffer.readline()
    elif args.password_file:
        try:
            with open(args.password_file, "rb") as handle:
                raw = handle.readline()
        except OSError as error:
            raise CliError(f"certpipeline request: cannot read the password file: {error.strerror}") from None
    else:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError("certpipeline request: the password is not valid UTF-8") from None
    password = text.rstrip("\r\n")
    if not password:
        raise CliError("certpipeline request: the password is empty")
    return password
