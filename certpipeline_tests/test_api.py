"""The HTTP API (contract section 8) end to end: ``certpipeline serve`` started
with uvicorn as a subprocess on 127.0.0.1, called with a real HTTP client
(httpx); tokens made and revoked with the real ``certpipeline tokens``
commands; requests produced by the real Dagster sensor and asset; the
encrypted file opened with the real 7z.

The world is ``test_requests``'s, built with the plain pipeline steps and
published. The server and its data directory are shared by the module: each
test uses report types and scopes of its own, and checks counts relative to
what it found.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest

from certpipeline import lake
from certpipeline import report_requests as rq
from certpipeline.defs.resources import WarehouseResource
from certpipeline.pipeline import Warehouse
from certpipeline.request_service import RequestService
from certpipeline_tests.conftest import Landing
from certpipeline_tests.servers import free_port
from certpipeline_tests.test_load import BATCHES, write_batches
from certpipeline_tests.test_load import REPORT_TYPES as LOAD_TYPES
from certpipeline_tests.test_request_service import build
from certpipeline_tests.test_requests import (
    ADMIN,
    CERT_PATH,
    CREATOR,
    DAY,
    EXPIRED,
    L2,
    LIVE,
    MENTOR,
    PASSWORD,
    REFUSALS,
    evaluate_sensor,
    files_containing,
    read_csv,
    run_claimed,
    unzip,
    write_world,
)

REPOSITORY = Path(__file__).resolve().parent.parent


def cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certpipeline.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPOSITORY, timeout=300, stdin=subprocess.DEVNULL)


@dataclass
class Server:
    url: str
    env: dict
    data_dir: Path
    log_path: Path
    process: subprocess.Popen

    def client(self, token: str | None, acting_user: str | None = None) -> httpx.Client:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if acting_user is not None:
            headers["X-Acting-User"] = acting_user
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.data_dir.resolve())


def start_server(data_dir: Path, dagster_home: Path, log_path: Path) -> Server:
    """``certpipeline serve`` on a free port of 127.0.0.1 (its default host), its
    output in ``log_path``; returns once it answers."""
    env = {**os.environ, "CERTPIPELINE_DATA_DIR": str(data_dir), "DAGSTER_HOME": str(dagster_home)}
    env.pop("CERTPIPELINE_SECRET_KEY", None)
    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen([sys.executable, "-m", "certpipeline.cli", "serve", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPOSITORY)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log_path.read_text()
        try:
            if httpx.get(f"{url}/openapi.json", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not answer within 120 s: " + log_path.read_text()
        time.sleep(0.2)  # polling for readiness, not synchronizing on timing
    return Server(url, env, data_dir, log_path, process)


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("api")
    data_dir = root / "data"
    data_dir.mkdir()
    write_world(Landing(data_dir))
    build(Warehouse(data_dir.resolve()), DAY)
    (root / "dagster_home").mkdir()
    server = start_server(data_dir, root / "dagster_home", root / "server.log")
    yield server
    stop(server)


@pytest.fixture(scope="module")
def token(server) -> str:
    created = cli(server.env, "tokens", "create", "lms")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def queue_count(server: Server) -> int:
    with server.warehouse.requests() as queue:
        return queue.execute("SELECT count(*) FROM ops.report_requests").fetchone()[0]


def body_of(report_type: str, scope: dict, password: str | None) -> dict:
    """The JSON body for a case written for the CLI: scope ids and filter pairs."""
    scope = dict(scope)
    filters = dict(scope.pop("filters", ()))
    body = {"report_type": report_type, "scope": scope, "filters": filters}
    if password is not None:
        body["password"] = password
    return body


def produce_with_the_sensor(server: Server) -> None:
    """One evaluation of the real sensor, then the run it asks for, in a
    persistent Dagster home (grepped for the password later)."""
    resource = WarehouseResource(data_dir=str(server.data_dir))
    with dg.DagsterInstance.local_temp(server.env["DAGSTER_HOME"]) as instance:
        run_request = evaluate_sensor(resource, instance)
        assert run_request is not None
        assert run_claimed(resource, instance, run_request).success


# -- tokens -----------------------------------------------------------------------


def test_openapi_is_served_without_a_token(server):
    described = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    assert sorted(described["paths"]) == ["/v1/requests", "/v1/requests/{request_id}",
                                          "/v1/requests/{request_id}/file"]
    assert sorted(described["paths"]["/v1/requests"]) == ["get", "post"]
    assert "Uvicorn running on http://127.0.0.1:" in server.log_path.read_text()  # the default host


def test_tokens_are_printed_once_and_stored_only_as_a_keyed_hash(server, token):
    assert token.startswith("cpt_") and len(token) > 40
    store = server.data_dir / "pipeline" / "api_tokens.json"
    key = server.data_dir / "pipeline" / "api_token.key"
    for path in (store, key):
        assert path.stat().st_mode & 0o777 == 0o600
    assert token.encode() not in store.read_bytes()
    assert files_containing(server.data_dir, token.encode()) == []
    listed = cli(server.env, "tokens", "list")
    assert listed.returncode == 0 and token not in listed.stdout
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ["lms"]
    assert listed.stdout.split()[-1] == "active"
    again = cli(server.env, "tokens", "create", "lms")
    assert (again.returncode, again.stdout, again.stderr.strip()) == (
        1, "", "certpipeline tokens create: a token named 'lms' is active; revoke it first")


def test_no_token_a_wrong_token_or_a_revoked_one_is_401_and_nothing_is_read_or_written(server, token):
    body = body_of("question_set_report", {"batch": EXPIRED}, None)
    before = queue_count(server)
    attempts = [
        {},
        {"Authorization": "Basic " + token},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer cpt_not-a-token"},
        {"Authorization": f"Bearer {token}x"},
    ]
    for headers in attempts:
        with httpx.Client(base_url=server.url, headers={**headers, "X-Acting-User": MENTOR}, timeout=60) as client:
            for answer in (client.post("/v1/requests", json=body), client.post("/v1/requests", content=b"{not json"),
                           client.get("/v1/requests", params={"batch": EXPIRED}),
                           client.get("/v1/requests/req-x"), client.get("/v1/requests/req-x/file")):
                assert answer.status_code == 401, (headers, answer.text)
                assert answer.json() == {"error": "a valid bearer token is required"}
    for path in ("/", "/v1", "/nowhere", "//v1/requests"):
        assert httpx.get(server.url + path, timeout=60).status_code == 401
    assert queue_count(server) == before

    # A second client's token, revoked while the server runs.
    created = cli(server.env, "tokens", "create", "old-lms")
    assert created.returncode == 0, created.stderr
    old = created.stdout.strip()
    with server.client(old, MENTOR) as client:
        assert client.get("/v1/requests", params={"batch": EXPIRED}).status_code == 200
        revoked = cli(server.env, "tokens", "revoke", "old-lms")
        assert (revoked.returncode, revoked.stdout.strip()) == (0, "revoked the token of old-lms")
        answer = client.post("/v1/requests", json=body)
        assert (answer.status_code, answer.json()) == (401, {"error": "a valid bearer token is required"})
        assert client.get("/v1/requests", params={"batch": EXPIRED}).status_code == 401
    assert queue_count(server) == before
    with server.client(token, MENTOR) as client:  # the other client's token still works
        assert client.get("/v1/requests", params={"batch": EXPIRED}).status_code == 200
    listed = cli(server.env, "tokens", "list").stdout
    assert "old-lms" in listed and "revoked" in listed
    assert cli(server.env, "tokens", "revoke", "old-lms").stderr.strip() == (
        "certpipeline tokens revoke: no active token named 'old-lms'")


# -- filing: the CLI's refusals, over HTTP -------------------------------------------


def test_every_refusal_of_the_cli_is_a_4xx_with_the_same_message_and_no_row(server, token):
    before = queue_count(server)
    answers = {}
    for case_id, report_type, by, password, scope, refusal in REFUSALS:
        with server.client(token, by) as client:
            answer = client.post("/v1/requests", json=body_of(report_type, scope, password))
        answers[case_id] = (answer.status_code, answer.json())
        assert answer.json() == {"error": f"refused: {refusal}"}, case_id
    assert queue_count(server) == before
    statuses = {case_id: status for case_id, (status, _) in answers.items()}
    # Rights (who asks) are 403; what is asked for is 422.
    assert {case_id for case_id, status in statuses.items() if status == 403} == {
        case_id for case_id, *_, refusal in REFUSALS
        if " may not " in refusal or refusal.startswith(("unknown requester", "requester "))}
    assert set(statuses.values()) == {403, 422}


def test_identical_request_is_409_while_waiting(server, token):
    body = body_of("path_certificate_learners", {"certificate": CERT_PATH}, None) | {
        "filters": {"user_status": "all", "group": "g-sub"}}
    with server.client(token, ADMIN) as client:
        first = client.post("/v1/requests", json=body)
        assert first.status_code == 201, first.text
        request_id = first.json()["request_id"]
        # Same type, scope and filters (in another order), by someone else.
        with server.client(token, "u-coach") as coach:
            again = coach.post("/v1/requests", json={**body, "filters": {"group": "g-sub", "user_status": "all"}})
        assert (again.status_code, again.json()) == (409, {"error": (
            f"refused: an identical request {request_id} is still Submitted; "
            "it can be requested again once it is processed")})


def test_malformed_bodies_and_headers_are_described_never_echoed(server, token):
    with server.client(token, CREATOR) as client:
        cases = [
            (client.post("/v1/requests", content=b'{"report_type": ', headers={"Content-Type": "application/json"}),
             422),
            (client.post("/v1/requests", json={"report_type": "user_profile_exhaust", "scope": {"batch": LIVE},
                                               "pasword": PASSWORD}), 422),
            (client.post("/v1/requests", json={"report_type": "user_profile_exhaust", "scope": {"batch": LIVE},
                                               "password": [PASSWORD]}), 422),
            (client.post("/v1/requests", json={"report_type": "user_profile_exhaust", "scope": {"batch": [PASSWORD]},
                                               "password": PASSWORD}), 422),
            (client.post("/v1/requests", json={"report_type": "question_set_report", "scope": {"group": "g"}}), 422),
        ]
        for answer, status in cases:
            assert answer.status_code == status, answer.text
            assert set(answer.json()) == {"error"}
            assert PASSWORD not in answer.text
        assert cases[1][0].json() == {"error": "invalid request: pasword: Extra inputs are not permitted"}
        assert cases[4][0].json() == {"error": "unknown scope 'group': use batch, course, certificate (and learner)"}
        listing = client.get("/v1/requests", params={"batch": LIVE, "course": "c"})
        assert (listing.status_code, listing.json()) == (
            400, {"error": "give exactly one of batch, course or certificate"})
    with server.client(token) as anonymous:  # a token, but no acting user
        answer = anonymous.get("/v1/requests", params={"batch": LIVE})
        assert (answer.status_code, answer.json()) == (400, {"error": "invalid request: header.X-Acting-User: Field required"})


# -- reading across requesters --------------------------------------------------------


def test_another_requesters_request_and_file_are_404_platform_admins_read_all(server, token):
    with server.client(token, MENTOR) as mentor, server.client(token, CREATOR) as creator, \
            server.client(token, ADMIN) as admin:
        filed = mentor.post("/v1/requests", json=body_of("course_progress_exhaust", {"batch": EXPIRED}, None))
        assert filed.status_code == 201, filed.text
        request_id = filed.json()["request_id"]
        produce_with_the_sensor(server)
        assert mentor.get(f"/v1/requests/{request_id}").json()["status"] == rq.SUCCESS
        assert mentor.get(f"/v1/requests/{request_id}/file").status_code == 200
        missing = {"error": f"no request '{request_id}'"}
        for path in (f"/v1/requests/{request_id}", f"/v1/requests/{request_id}/file"):
            answer = creator.get(path)
            assert (answer.status_code, answer.json()) == (404, missing)
        assert creator.get("/v1/requests/req-nope").json() == {"error": "no request 'req-nope'"}
        assert request_id not in [r["request_id"] for r in creator.get("/v1/requests", params={"batch": EXPIRED}).json()]
        assert admin.get(f"/v1/requests/{request_id}").json()["requested_by"] == MENTOR
        assert admin.get(f"/v1/requests/{request_id}/file").status_code == 200
        assert request_id in [r["request_id"] for r in admin.get("/v1/requests", params={"batch": EXPIRED}).json()]


# -- the whole lifecycle, expiry and the password ----------------------------------------


def test_post_produce_download_expire_and_the_password_is_nowhere(server, token, tmp_path):
    with server.client(token, CREATOR) as client:
        filed = client.post("/v1/requests", json=body_of("user_profile_exhaust", {"batch": LIVE}, PASSWORD))
        assert filed.status_code == 201, filed.text
        answer = filed.json()
        request_id = answer["request_id"]
        assert PASSWORD not in filed.text
        assert {k: answer[k] for k in ("report_type", "scope", "filters", "requested_by", "status", "file_path",
                                       "row_count", "completed_at", "encrypted", "expires_at", "file_url")} == {
            "report_type": "user_profile_exhaust", "scope": f"batch={LIVE}", "filters": {}, "requested_by": CREATOR,
            "status": rq.SUBMITTED, "file_path": None, "row_count": None, "completed_at": None, "encrypted": True,
            "expires_at": None, "file_url": None}
        assert "password" not in answer and "password_ciphertext" not in answer
        not_yet = client.get(f"/v1/requests/{request_id}/file")
        assert (not_yet.status_code, not_yet.json()) == (
            409, {"error": f"{request_id} is Submitted: no file to download"})

        with server.warehouse.requests() as queue:  # sealed at once: only a ciphertext while it waits
            [(ciphertext,)] = queue.execute("SELECT password_ciphertext FROM ops.report_requests "
                                            "WHERE request_id = ?", [request_id]).fetchall()
        assert ciphertext is not None and PASSWORD.encode() not in ciphertext
        produce_with_the_sensor(server)
        with server.warehouse.requests() as queue:  # and wiped when the request ends
            assert queue.execute("SELECT password_ciphertext FROM ops.report_requests WHERE request_id = ?",
                                 [request_id]).fetchall() == [(None,)]
        done = client.get(f"/v1/requests/{request_id}").json()
        assert (done["status"], done["row_count"], done["file_url"]) == (
            rq.SUCCESS, 3, f"/v1/requests/{request_id}/file")
        completed = dt.datetime.fromisoformat(done["completed_at"])
        assert dt.datetime.fromisoformat(done["expires_at"]) == completed + dt.timedelta(days=30)
        listed = client.get("/v1/requests", params={"batch": LIVE}).json()
        assert listed[0]["request_id"] == request_id
        download = client.get(f"/v1/requests/{request_id}/file")
        assert download.status_code == 200
        assert download.headers["content-type"] == "application/zip"
        zip_path = tmp_path / "download.zip"
        zip_path.write_bytes(download.content)
        assert zip_path.read_bytes() == Path(done["file_path"]).read_bytes()
        header, rows = read_csv(unzip(zip_path, PASSWORD, tmp_path / "out"))
        assert header[4:9] == ["User UUID", "User Name", "Email ID", "Registration Date", "User Status"]
        assert [r["User UUID"] for r in rows] == ["u-gone", "u-l1", L2]
        # The published warehouse shows it, as after the CLI's process-requests.
        with lake.reader(server.warehouse.lake) as analyst:
            assert analyst.execute("SELECT status FROM ops.report_requests WHERE request_id = ?",
                                   [request_id]).fetchone() == (rq.SUCCESS,)

        # 31 days later, the retention pass (the service under an injected clock) deletes the file.
        later = dataclasses.replace(server.warehouse, clock=lambda: completed + dt.timedelta(days=31))
        assert request_id in RequestService(later).expire_files()
        assert not Path(done["file_path"]).exists()
        expired = client.get(f"/v1/requests/{request_id}").json()
        assert (expired["status"], expired["file_path"], expired["file_url"], expired["row_count"]) == (
            rq.EXPIRED, None, None, 3)
        gone = client.get(f"/v1/requests/{request_id}/file")
        assert (gone.status_code, gone.json()) == (
            410, {"error": f"the file of {request_id} expired after 30 days; file the request again"})

    # The password is in no file of the data directory, the Dagster home, or the server's log.
    dagster_home = Path(server.env["DAGSTER_HOME"])
    assert any(p.suffix == ".db" for p in dagster_home.rglob("*"))
    needle = PASSWORD.encode()
    assert files_containing(server.data_dir, needle) == []
    assert files_containing(dagster_home, needle) == []
    log = server.log_path.read_bytes()
    assert b"POST /v1/requests HTTP/1.1" in log and needle not in log


def test_the_retention_asset_expires_files(server, token):
    with server.client(token, MENTOR) as client:
        filed = client.post("/v1/requests", json=body_of("question_set_report", {"batch": EXPIRED}, None))
        request_id = filed.json()["request_id"]
        produce_with_the_sensor(server)
        assert client.get(f"/v1/requests/{request_id}/file").status_code == 200
        from certpipeline.defs.requests import report_retention

        # Retention of 0 days: every file made so far is due.
        result = dg.materialize([report_retention],
                                resources={"warehouse": WarehouseResource(data_dir=str(server.data_dir),
                                                                          retention_days=0)})
        assert result.success
        assert client.get(f"/v1/requests/{request_id}").json()["status"] == rq.EXPIRED
        assert client.get(f"/v1/requests/{request_id}/file").status_code == 410


# -- load -----------------------------------------------------------------------------

CLIENTS = 8


@pytest.mark.slow
def test_a_thousand_requests_filed_over_http_by_eight_clients_are_each_produced_once(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_batches(Landing(data_dir), DAY)
    build(Warehouse(data_dir.resolve()), DAY)
    (tmp_path / "dagster_home").mkdir()
    server = start_server(data_dir, tmp_path / "dagster_home", tmp_path / "server.log")
    try:
        created = cli(server.env, "tokens", "create", "load")
        token = created.stdout.strip()
        bodies = [{"report_type": report_type, "scope": {"batch": f"batch-{number}"}}
                  for number in range(BATCHES) for report_type in LOAD_TYPES]

        def file_all(chunk: list[dict]) -> list[str]:
            with server.client(token, "admin") as client:
                answers = [client.post("/v1/requests", json=body) for body in chunk]
            assert all(a.status_code == 201 for a in answers), [a.text for a in answers if a.status_code != 201][:3]
            return [a.json()["request_id"] for a in answers]

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            filed = [rid for ids in pool.map(file_all, [bodies[i::CLIENTS] for i in range(CLIENTS)]) for rid in ids]
        filing_seconds = time.monotonic() - started
    finally:
        stop(server)
    assert len(set(filed)) == 1000

    started = time.monotonic()
    produce_with_the_sensor(server)
    producing_seconds = time.monotonic() - started
    print(f"\nfiled 1,000 requests over HTTP from {CLIENTS} clients in {filing_seconds:.1f}s "
          f"({1000 / filing_seconds:.0f}/s); produced them in one run in {producing_seconds:.1f}s")

    with server.warehouse.requests() as queue:
        statuses = queue.execute(
            "SELECT status, attempts, count(*), count(DISTINCT file_path) FROM ops.report_requests GROUP BY ALL"
        ).fetchall()
    assert statuses == [("Success", 1, 1000, 1000)]
    files = [p for p in (data_dir / "exhausts").rglob("*") if p.is_file()]
    assert sorted(f.name.rsplit("-req-", 1)[1].removesuffix(".csv") for f in files) == sorted(
        request_id.removeprefix("req-") for request_id in filed)
    with dg.DagsterInstance.local_temp(server.env["DAGSTER_HOME"]) as instance:
        assert evaluate_sensor(WarehouseResource(data_dir=str(data_dir)), instance) is None
