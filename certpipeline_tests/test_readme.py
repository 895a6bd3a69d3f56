"""Every shell and SQL example of README.md runs, as a newcomer would run it,
on the data the README's first command generates.

The examples are read from README.md itself, so this test follows the README
as it changes:

- every fenced ``bash`` block runs, in order, in one bash session (``set -eo
  pipefail``) from a scratch directory holding ``.venv`` (this environment) and
  ``data/`` (``CERTPIPELINE_DATA_DIR``), so ``data/...`` paths and shell
  variables work as in a clone;
- a block right after ``<!-- readme-test: skip, REASON -->`` is left out, and
  REASON must be one of SKIP_REASONS below (servers, the test suite itself,
  benchmarks): leaving an example out is explicit, in the README, and listed;
- the block after ``<!-- readme-test: setup -->`` is the first command: it runs
  first, without creating the environment (this is it) and at a smaller scale
  (SCALE), with the same commands;
- every SQL example of a table's last column (a backticked ``SELECT``,
  ``FROM`` or ``WITH``) runs on the warehouse as analysts open it and must
  return rows.

A failing example fails the test with its text. Slow: generating and running
the pipeline, then a dozen CLI commands.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "README.md"
MARKER = re.compile(r"^<!--\s*readme-test:\s*(.*?)\s*-->$")
SETUP = "setup"
SKIP_REASONS = ("runs the test suite", "starts a server", "needs a running server", "benchmark (minutes to hours)")
SQL_CELL = re.compile(r"`((?:SELECT|FROM|WITH)\b[^`]*)`\s*\|\s*$", re.IGNORECASE)
SCALE = {"learners": 1000, "days": 3}
TIMEOUT_SECONDS = 1500


@dataclass(frozen=True)
class Example:
    line: int  # 1-based line of the opening fence in README.md
    marker: str | None
    text: str

    def show(self) -> str:
        return f"README.md line {self.line}:\n{self.text}"


def bash_examples(readme: str) -> list[Example]:
    lines = readme.splitlines()
    examples, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before)
            examples.append(Example(i + 1, marker.group(1) if marker else None, "\n".join(lines[i + 1:end])))
            i = end
        i += 1
    return examples


def sql_examples(readme: str) -> list[str]:
    return [m.group(1) for line in readme.splitlines() if line.startswith("|") and (m := SQL_CELL.search(line))]


def scaled_setup(example: Example) -> str:
    """The first command without creating the environment, at SCALE."""
    command = next(line for line in example.text.splitlines() if "certpipeline generate" in line)
    start = command.index(".venv/bin/certpipeline generate")
    assert "venv" in command[:start], f"the setup command no longer creates the environment first:\n{command}"
    command = command[start:]
    days = re.search(r"--days (\d+)", command)
    assert days and re.search(r"--learners \d+", command), f"no --learners/--days to scale in:\n{command}"
    window = f"'{days.group(1)} days ago'"
    assert window in command, f"the run no longer covers the generated {days.group(1)} days:\n{command}"
    command = re.sub(r"--learners \d+", f"--learners {SCALE['learners']}", command)
    command = command.replace(f"--days {days.group(1)}", f"--days {SCALE['days']}")
    return command.replace(window, f"'{SCALE['days']} days ago'")


def run_bash(examples: list[tuple[Example, str]], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """One bash session running each example in turn; stderr says which one failed."""
    script = ["set -eo pipefail", 'trap \'echo "readme-test: example $README_EXAMPLE failed" >&2\' ERR']
    for index, (_, text) in enumerate(examples):
        script += [f"README_EXAMPLE={index}", text]
    return subprocess.run(["bash", "-c", "\n".join(script)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS)


def assert_ran(done: subprocess.CompletedProcess, examples: list[tuple[Example, str]]) -> None:
    if done.returncode == 0:
        return
    failed = re.findall(r"readme-test: example (\d+) failed", done.stderr)
    which = examples[int(failed[-1])][0].show() if failed else "(no example reported failing)"
    pytest.fail(f"a README example failed (exit {done.returncode}): {which}\n"
                f"--- stdout (end) ---\n{done.stdout[-3000:]}\n--- stderr (end) ---\n{done.stderr[-3000:]}")


def analyst_connection(cwd: Path, env: dict) -> duckdb.DuckDBPyConnection:
    """The warehouse as the README tells analysts to open it: the statements
    ``certpipeline warehouse-sql`` prints (contract section 7)."""
    printed = subprocess.run([".venv/bin/certpipeline", "warehouse-sql"], cwd=cwd, env=env, capture_output=True,
                             text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    con = duckdb.connect()
    con.execute(printed.stdout)
    return con


def test_readme_markers_are_known_and_every_other_block_runs():
    examples = bash_examples(README.read_text(encoding="utf-8"))
    markers = [e.marker for e in examples if e.marker is not None]
    assert markers.count(SETUP) == 1
    unknown = [m for m in markers if m != SETUP and m.removeprefix("skip, ") not in SKIP_REASONS]
    assert unknown == [], f"readme-test markers must be 'setup' or 'skip, ' + one of {SKIP_REASONS}"
    assert len([e for e in examples if e.marker is None]) >= 2  # the walk-through and the analysts' example


def test_every_readme_example_runs_on_the_data_of_its_first_command(tmp_path):
    readme = README.read_text(encoding="utf-8")
    examples = bash_examples(readme)
    [setup] = [e for e in examples if e.marker == SETUP]
    runnable = [(e, e.text) for e in examples if e.marker is None]
    queries = sql_examples(readme)
    assert len(queries) >= 10, "the analysts' table lost its examples"

    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "CERTPIPELINE_SECRET_KEY")}
    env["CERTPIPELINE_DATA_DIR"] = str(tmp_path / "data")

    # The first command, then the warehouse as it is before anyone files a request.
    first = [(setup, scaled_setup(setup))]
    assert_ran(run_bash(first, tmp_path, env), first)
    con = analyst_connection(tmp_path, env)
    try:
        assert con.sql("SELECT count(*) FROM ops.report_requests").fetchall() == [(0,)]
    finally:
        con.close()

    done = run_bash(runnable, tmp_path, env)
    assert_ran(done, runnable)
    assert "Failure" not in done.stdout, done.stdout

    # The walk-through shows data: every file it produced or opened has rows.
    produced = sorted((tmp_path / "data" / "exhausts").rglob("*.*")) + sorted(tmp_path.glob("opened/*.csv"))
    assert {p.suffix for p in produced} == {".csv", ".zip"}, produced
    for path in produced:
        if path.suffix == ".csv":
            assert path.read_bytes().count(b"\n") >= 2, f"{path.name} has no rows"

    con = analyst_connection(tmp_path, env)
    try:
        for sql in queries:
            try:
                rows = con.sql(sql).fetchall()
            except duckdb.Error as error:
                pytest.fail(f"README SQL example failed: {sql}\n{error}")
            assert rows, f"README SQL example returned no rows on the README's data: {sql}"
    finally:
        con.close()
