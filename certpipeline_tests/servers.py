"""What the tests that start a server share: a free port on 127.0.0.1 and
Dagster's GraphQL endpoint."""

from __future__ import annotations

import socket

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
