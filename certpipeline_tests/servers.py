"""What the tests that start a server share: a free port on 127.0.0.1,
Dagster's GraphQL endpoint, and stopping the server."""

from __future__ import annotations

import signal
import socket
import subprocess

import httpx


def free_port() -> int:
    """A port nothing listens on now, on 127.0.0.1 only (bound to port 0 first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(url: str, query: str, **variables) -> dict:
    """The ``data`` of a Dagster GraphQL answer; an answer with errors fails the test."""
    answer = httpx.post(url, json={"query": query, "variables": variables}, timeout=60).json()
    assert "errors" not in answer, answer
    return answer["data"]


def stop(process: subprocess.Popen, how: signal.Signals, timeout: float) -> None:
    """Send ``how`` and wait up to ``timeout`` seconds; then SIGKILL."""
    if process.poll() is None:
        process.send_signal(how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
