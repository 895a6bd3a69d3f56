"""The Dagster processes stop cleanly when asked, also when a script started
them in the background (where the shell hands them SIGINT ignored):
``certpipeline dev`` (the README's way to run ``dg dev``), ``dagster-webserver``
and ``dagster-daemon run`` (the systemd units' commands; systemd stops them
with SIGTERM). Each is started by ``bash -c 'COMMAND &'``, signalled once it
serves, and must exit 0 with every process of its group gone."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from certpipeline_tests.servers import free_port

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Generous: starting means loading the definitions in a code server, on a
# machine that may be busy with other suites.
START_DEADLINE_SECONDS = 180
STOP_DEADLINE_SECONDS = 60


def _serves_http(port: int):
    def ready(log: Path) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=5).status_code == 200
        except httpx.TransportError:
            return False
    return ready


def _daemon_running(log: Path) -> bool:
    return log.exists() and "Instance is configured with the following daemons" in log.read_text()


def _commands(port: int):
    return {
        "certpipeline dev": ([str(BIN / "certpipeline"), "dev", "--port", str(port)], _serves_http(port)),
        "dagster-webserver": ([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port)], _serves_http(port)),
        "dagster-daemon run": ([str(BIN / "dagster-daemon"), "run"], _daemon_running),
    }


def _live_group_members(group: int, since: float) -> list[psutil.Process]:
    """The processes of the shell's group, the shell gone: started after it
    and not led by a newer process that took the group's number."""
    members = []
    for process in psutil.process_iter():
        try:
            if (os.getpgid(process.pid) == group and process.pid != group and process.create_time() >= since
                    and process.status() != psutil.STATUS_ZOMBIE):
                members.append(process)
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    return members


def _wait_for(condition, what: str, deadline_seconds: float, log: Path):
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{_tail(log)}"
        time.sleep(0.3)


def _tail(log: Path) -> str:
    return log.read_text()[-4000:] if log.exists() else "(no output)"


@pytest.mark.parametrize(("name", "signal_number"), [
    ("certpipeline dev", signal.SIGTERM),
    ("certpipeline dev", signal.SIGINT),
    ("dagster-webserver", signal.SIGTERM),
    ("dagster-webserver", signal.SIGINT),
    ("dagster-daemon run", signal.SIGTERM),
    ("dagster-daemon run", signal.SIGINT),
], ids=lambda value: value.name if isinstance(value, signal.Signals) else value.replace(" ", "-"))
def test_started_in_the_background_it_stops_cleanly_on_the_signal(tmp_path, name, signal_number):
    home, data_dir, log = tmp_path / "dagster_home", tmp_path / "data", tmp_path / "service.log"
    home.mkdir()
    data_dir.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CERTPIPELINE_DATA_DIR": str(data_dir)}
    command, ready = _commands(free_port())[name]
    # What a start-up script does: the job's pid, then its exit status.
    script = f"{shlex.join(command)} > {shlex.quote(str(log))} 2>&1 &\necho $!\nwait $!\necho \"exit $?\"\n"
    shell = subprocess.Popen(["bash", "-c", script], cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    group, since = shell.pid, psutil.Process(shell.pid).create_time()
    try:
        pid = int(shell.stdout.readline())
        _wait_for(lambda: shell.poll() is None and ready(log), f"{name} to start", START_DEADLINE_SECONDS, log)
        assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE

        os.kill(pid, signal_number)
        try:
            reported = shell.communicate(timeout=STOP_DEADLINE_SECONDS)[0]
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} ignored {signal_number.name}:\n{_tail(log)}") from None
        assert reported == "exit 0\n", _tail(log)
        _wait_for(lambda: not _live_group_members(group, since), f"every process of {name} to end", STOP_DEADLINE_SECONDS,
                  log)
        assert "Traceback" not in log.read_text(), _tail(log)
    finally:
        for process in _live_group_members(group, since):
            process.kill()
        if shell.poll() is None:
            shell.kill()
        shell.wait()
