"""The HTTP API for the learning platform (contract section 8), served by
``certpipeline serve``.

FastAPI (on uvicorn) because it is well kept, validates JSON bodies with
pydantic and serves its OpenAPI description at ``/openapi.json`` (and
``/docs``) with no extra code. Every route is a few lines over
``RequestService``, the code path of the CLI, so refusals carry the CLI's
messages.

- Every call but the OpenAPI description and its pages needs ``Authorization: Bearer TOKEN`` (``api_tokens``),
  checked by a middleware before routing or reading the body: without a valid
  token the answer is 401 and nothing is read or written.
- ``X-Acting-User`` names the user whose rights apply. Another requester's
  request or file answers 404, as one that does not exist (platform admins read all).
- Errors are ``{"error": "..."}``. A body that does not validate is described by
  field and problem, never echoed; the password is a ``SecretStr``, sealed by
  the service at once, and appears in no answer or log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException

from certpipeline import report_requests as rq
from certpipeline import request_rules
from certpipeline.api_tokens import TokenStore
from certpipeline.reports.catalog import BATCH, CERTIFICATE, COURSE, LEARNER
from certpipeline.request_service import FileUnavailable, NotFound, NoWarehouseYet, RequestService

log = logging.getLogger("certpipeline.api")

UNAUTHENTICATED_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
SCOPE_KINDS = (BATCH, COURSE, CERTIFICATE, LEARNER)
LISTED_BY = (BATCH, COURSE, CERTIFICATE)


class NewRequest(BaseModel):
    """A report request, as the CLI's ``request`` takes it."""

    model_config = ConfigDict(extra="forbid")

    report_type: str = Field(examples=["user_profile_exhaust"])
    scope: dict[str, str] = Field(
        default_factory=dict,
        description='{"batch": ID}, {"course": ID}, {"certificate": ID} or {"certificate": ID, "learner": USER_ID}; '
        "{} for path_certificate_stats", examples=[{"batch": "b-1"}])
    filters: dict[str, str] = Field(
        default_factory=dict, description="user_status, group, registered_from, registered_to, custom.KEY",
        examples=[{"user_status": "all", "custom.country": "Japan"}])
    password: SecretStr | None = Field(default=None, description="encrypts the file (AES-256 zip); never returned")


class ErrorAnswer(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorAnswer} for status in (400, 401, 403, 404, 409, 410, 422, 503)}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refusal_status(refusal: request_rules.RequestRefused) -> int:
    if isinstance(refusal, request_rules.RequestForbidden):
        return 403
    if isinstance(refusal, request_rules.RequestConflict):
        return 409
    return 422


def _answer(service: RequestService, row: dict) -> dict:
    """A request as ``ops.report_requests`` shows it, JSON-ready, with when its
    file expires and where to download it."""
    answer = {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}
    answer["filters"] = json.loads(row["filters"])
    expires_at = service.expires_at(row)
    answer["expires_at"] = expires_at.isoformat() if expires_at else None
    answer["file_url"] = f"/v1/requests/{row['request_id']}/file" if row["status"] == rq.SUCCESS else None
    return answer


def _validation_message(error: RequestValidationError) -> str:
    """Where and what, never the input itself (it may hold the password)."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(service: RequestService, tokens: TokenStore) -> FastAPI:
    app = FastAPI(
        title="certpipeline",
        version="1",
        description="Report requests for the learning platform (contract section 8). Every /v1 call carries "
        "`Authorization: Bearer TOKEN` and `X-Acting-User: USER_ID`.",
    )
    app.state.service = service
    _require_a_token(app, tokens)
    _answer_errors_in_one_shape(app)
    app.include_router(router)
    return app


def _require_a_token(app: FastAPI, tokens: TokenStore) -> None:
    @app.middleware("http")
    async def require_token(request: Request, call_next):
        # Every path but the API's description needs a token: a path that routes
        # nowhere answers 401 too, rather than telling what exists.
        if request.url.path not in UNAUTHENTICATED_PATHS:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            client = tokens.client_of(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
            if client is None:
                return JSONResponse({"error": "a valid bearer token is required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            request.state.client = client
        return await call_next(request)


def _answer_errors_in_one_shape(app: FastAPI) -> None:
    """``{"error": "..."}`` with the status of each refusal of the service."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        return _error(422 if any(p.get("loc", ("",))[0] == "body" for p in error.errors()) else 400,
                      _validation_message(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(request_rules.RequestRefused)
    async def refused(request: Request, refusal: request_rules.RequestRefused):
        return _error(_refusal_status(refusal), f"refused: {refusal}")

    @app.exception_handler(NotFound)
    async def not_found(request: Request, error: NotFound):
        return _error(404, str(error))

    @app.exception_handler(FileUnavailable)
    async def file_unavailable(request: Request, error: FileUnavailable):
        return _error(410 if error.expired else 409, str(error))

    @app.exception_handler(NoWarehouseYet)
    async def no_warehouse_yet(request: Request, error: NoWarehouseYet):
        return _error(503, str(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        # The type only: a message could quote what the client sent.
        log.error("%s %s failed: %s", request.method, request.url.path, type(error).__name__)
        return _error(500, "internal error; see the server log")


# -- the routes: each a few lines over the request service; its refusals become
# answers in the handlers above ----------------------------------------------------

router = APIRouter()


def _service(request: Request) -> RequestService:
    return request.app.state.service


Service = Annotated[RequestService, Depends(_service)]
ActingUser = Annotated[str, Header(alias="X-Acting-User", description="the user whose rights apply", min_length=1)]


@router.post("/v1/requests", status_code=201, responses=ERRORS, summary="File a request")
def file_request(body: NewRequest, acting_user: ActingUser, service: Service):
    unknown = sorted(set(body.scope) - set(SCOPE_KINDS))
    if unknown:
        return _error(422, f"unknown scope {unknown[0]!r}: use batch, course, certificate (and learner)")
    spec = request_rules.RequestSpec(body.report_type, acting_user, filters=tuple(sorted(body.filters.items())),
                                     **body.scope)
    password = body.password.get_secret_value() if body.password is not None else None
    body.password = None
    try:
        filed = service.file_and_show(spec, password)
    finally:
        del password
    return JSONResponse(_answer(service, filed), status_code=201)


@router.get("/v1/requests", responses=ERRORS, summary="The last ten requests of a scope, newest first")
def list_requests(acting_user: ActingUser, service: Service, batch: str | None = Query(None),
                  course: str | None = Query(None), certificate: str | None = Query(None)):
    given = [(kind, value) for kind, value in zip(LISTED_BY, (batch, course, certificate), strict=True)
             if value is not None]
    if len(given) != 1:
        return _error(400, "give exactly one of batch, course or certificate")
    [(kind, scope_id)] = given
    return [_answer(service, row) for row in service.list_scope(kind, scope_id, acting_user)]


@router.get("/v1/requests/{request_id}", responses=ERRORS, summary="One request and its status")
def get_request(request_id: str, acting_user: ActingUser, service: Service):
    return _answer(service, service.get(request_id, acting_user))


@router.get("/v1/requests/{request_id}/file", responses=ERRORS, response_class=FileResponse,
            summary="The request's file, once Success and until it expires")
def download(request_id: str, acting_user: ActingUser, service: Service):
    path = service.download(request_id, acting_user)
    media_type = "application/zip" if path.suffix == ".zip" else "text/csv; charset=utf-8"
    return FileResponse(path, media_type=media_type, filename=path.name)
