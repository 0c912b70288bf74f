"""The HTTP API as a Starlette app, over anything with the client's async
surface (actors.client.Gateway: `invoke_async`, `status_async`,
`unanswered_async`), so it is tested without Ray and served by Ray Serve
(actors/http/deployment.py).

    POST /v1/{capability}/{method}   the payload as JSON; Authorization: Bearer KEY;
                                     Idempotency-Key, X-Dry-Run, X-Deadline-S
    GET  /v1/status                  the status report (key required)
    GET  /healthz                    200 when every router answers (no key; says no more than that)
    GET  /openapi.json, /docs        the OpenAPI document and its page

Every call goes through the capability's router, with the client's resend
after a router crash. Failures are problem documents (problems.py); bad
headers or JSON get a 400 that names what is wrong and where.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import ErrorKind, GatewayError, NotDeployed
from actors.http.auth import SCOPE_CHARS, ApiKeys, scoped_key
from actors.http.openapi import docs_page, openapi_document
from actors.http.problems import Problem, for_result, problem
from actors.payloads import MAX_KEY_LENGTH
from actors.telemetry.context import format_traceparent, parse_traceparent

__all__ = ["HEALTH_KEPT_S", "MAX_BODY_BYTES", "MAX_HEADER_KEY_LENGTH", "build_app"]

log = logging.getLogger("aicmo.http")

MAX_BODY_BYTES = 10 * 1024 * 1024
# How long /healthz's answer is kept: a load balancer's checks, or anyone's,
# cost one round of router calls per this many seconds at most.
HEALTH_KEPT_S = 2.0
# The router's limit, less the caller's scope the key is prefixed with.
MAX_HEADER_KEY_LENGTH = MAX_KEY_LENGTH - SCOPE_CHARS
_JSON = "application/json"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}
_PRINTABLE = re.compile(r"[ -~]+")


class _BadRequest(GatewayError):
    """A header or the body cannot be read: a 400 naming what and where."""


def _problem_response(status: int, doc: Problem, headers: dict[str, str]) -> Response:
    return Response(_encode(doc), status_code=status, headers=headers, media_type="application/problem+json")


def _options(request: Request, max_deadline_s: float | None = None) -> dict[str, Any]:
    """Idempotency-Key, X-Dry-Run and X-Deadline-S as invoke's keywords;
    X-Deadline-S cut to `max_deadline_s` (the router cuts it too)."""
    options: dict[str, Any] = {}
    key = request.headers.get("idempotency-key")
    if key is not None:
        # The IETF draft makes it a structured-field string ("..."); a bare token is accepted too.
        key = key.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':
            key = key[1:-1]
        if not key:
            raise _BadRequest("header Idempotency-Key is empty")
        if len(key) > MAX_HEADER_KEY_LENGTH:
            raise _BadRequest(f"header Idempotency-Key is {len(key)} characters long; at most {MAX_HEADER_KEY_LENGTH}")
        if not _PRINTABLE.fullmatch(key):
            raise _BadRequest("header Idempotency-Key must be printable ASCII (letters, digits, punctuation, spaces)")
        options["idempotency_key"] = key
    dry = request.headers.get("x-dry-run")
    if dry is not None:
        word = dry.strip().lower()
        if word not in _TRUE | _FALSE:
            raise _BadRequest(f"header X-Dry-Run must be true or false, got {dry[:40]!r}")
        options["dry_run"] = word in _TRUE
    deadline = request.headers.get("x-deadline-s")
    if deadline is not None:
        try:
            seconds = float(deadline)
        except ValueError:
            seconds = math.nan
        if not (0 < seconds < math.inf):
            raise _BadRequest(f"header X-Deadline-S must be a positive number of seconds, got {deadline[:40]!r}")
        options["deadline_s"] = min(seconds, max_deadline_s) if max_deadline_s is not None else seconds
    parent = request.headers.get("traceparent")
    if parent is not None and parse_traceparent(parent) is not None:
        # W3C trace context: the request's trace continues the caller's; one to ignore starts a new one.
        options["traceparent"] = parent.strip()
    return options


def _trace_headers(result: Any) -> dict[str, str]:
    """The request's traceparent (the router's span of it), when it was traced (actors/telemetry)."""
    if result.trace_id is None or result.span_id is None:
        return {}
    return {"traceparent": format_traceparent(result.trace_id, result.span_id)}


async def _payload(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _BadRequest(f"the body is {int(declared)} bytes; at most {MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _BadRequest(f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise _BadRequest("the body is empty: send the method's payload as a JSON object")
    try:
        return _decode(body)
    except msgspec.DecodeError as exc:
        raise _BadRequest(f"the body is not valid JSON: {exc}") from None


class _Health:
    """The routers' answer to /healthz, asked at most once per HEALTH_KEPT_S
    whatever the request rate; concurrent requests share one round."""

    def __init__(self, gateway: Any, capabilities: list[str], clock: Clock):
        self._gateway = gateway
        self._capabilities = capabilities
        self._clock = clock
        self._known: tuple[float, int] | None = None       # (monotonic time asked, routers silent)
        self._asking: asyncio.Future[int] | None = None

    async def silent(self) -> int:
        now = self._clock.monotonic()
        if self._known is not None and now - self._known[0] < HEALTH_KEPT_S:
            return self._known[1]
        if self._asking is None or self._asking.done():
            self._asking = asyncio.ensure_future(self._ask(now))
        return await asyncio.shield(self._asking)

    async def _ask(self, now: float) -> int:
        silent = len(await self._gateway.unanswered_async(self._capabilities))
        self._known = (now, silent)
        return silent


def build_app(gateway: Any, *, capabilities: Sequence[str], key_digests: Sequence[str],
              max_deadline_s: Mapping[str, float] | None = None, clock: Clock = SYSTEM_CLOCK,
              events: Any = None) -> Starlette:
    """`events`: an actors.http.events.EventsEndpoint, for delivery events and request timelines."""
    keys = ApiKeys(key_digests)
    served = list(capabilities)
    health = _Health(gateway, served, clock)
    openapi = _encode(openapi_document(served))
    docs = docs_page()

    def denied(request: Request) -> Response | None:
        why = keys.check(request.headers.get("authorization"))
        if why is None:
            return None
        status, doc, headers = problem("unauthorized", why, instance=request.url.path)
        return _problem_response(status, doc, {**headers, "WWW-Authenticate": 'Bearer realm="aicmo-gateway"'})

    async def invoke(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        capability, method = request.path_params["capability"], request.path_params["method"]
        where = request.url.path
        if capability not in served:
            return _problem_response(*problem(ErrorKind.UNKNOWN_METHOD.value, (
                f"this gateway has no capability {capability[:80]!r}; it has: {', '.join(served)}"), instance=where))
        try:
            options = _options(request, (max_deadline_s or {}).get(capability))
            payload = await _payload(request)
        except _BadRequest as exc:
            return _problem_response(*problem("malformed_request", str(exc), instance=where))
        asked_key = options.get("idempotency_key")
        if asked_key is not None:
            caller = keys.caller(request.headers.get("authorization"))
            assert caller is not None  # `denied` let it through
            options["idempotency_key"] = scoped_key(caller, asked_key)
        try:
            result = await gateway.invoke_async(capability, method, payload, **options)
        except NotDeployed as exc:
            return _problem_response(*problem(ErrorKind.GATEWAY_UNAVAILABLE.value, str(exc), instance=where))
        if asked_key is not None:
            result = msgspec.structs.replace(result, idempotency_key=asked_key)  # the caller's own key back
        traced = _trace_headers(result)
        if result.ok:
            return Response(_encode(result), status_code=202 if result.queued else 200, media_type=_JSON,
                            headers=traced)
        status_code, doc, headers = for_result(result, instance=where)
        return _problem_response(status_code, doc, {**headers, **traced})

    async def status(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        try:
            report = await gateway.status_async()
        except NotDeployed as exc:
            return _problem_response(*problem(ErrorKind.GATEWAY_UNAVAILABLE.value, str(exc), instance=request.url.path))
        return Response(_encode(report), media_type=_JSON)

    async def healthz(request: Request) -> Response:
        # Anyone may ask, as often as they like: the answer is a cached one
        # (at most one round of router calls per HEALTH_KEPT_S), and says
        # neither which capabilities this gateway serves nor what failed
        # (the authenticated /v1/status does).
        silent = await health.silent()
        if silent:
            detail = f"{silent} of {len(served)} routers do not answer; GET /v1/status (with a key) says which"
            return _problem_response(*problem(ErrorKind.GATEWAY_UNAVAILABLE.value, detail, instance="/healthz"))
        return Response(_encode({"status": "ok"}), media_type=_JSON)

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type=_JSON)

    async def docs_html(request: Request) -> Response:
        return HTMLResponse(docs.html, headers={"Content-Security-Policy": docs.csp, "Referrer-Policy": "no-referrer",
                                                "X-Content-Type-Options": "nosniff"})

    async def request_trace(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        caller = keys.caller(request.headers.get("authorization"))
        assert caller is not None  # `denied` let it through
        return await events.request(request, [scoped_key(caller, request.path_params["id"])])

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            status, doc, headers = problem("method_not_allowed", f"{request.method} {request.url.path} is not "
                                           f"served; allowed: {allowed}", instance=request.url.path)
            return _problem_response(status, doc, {**headers, "Allow": allowed})
        return _problem_response(*problem("not_found", f"no endpoint {request.url.path[:200]}: the API is POST "
                                          "/v1/{capability}/{method}, GET /v1/status, /healthz, /openapi.json, /docs",
                                          instance=request.url.path))

    async def crashed(request: Request, exc: Exception) -> Response:
        # The payload and headers are not logged: they may hold personal data and the API key.
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, str(exc)[:500])
        return _problem_response(*problem("internal_error", f"the gateway failed to answer: {type(exc).__name__}",
                                          instance=request.url.path))

    routes = [
        Route("/v1/status", status, methods=["GET"]),
        *([Route("/v1/events/{capability}/{provider}", events.ingest, methods=["POST"]),
           Route("/v1/requests/{id}", request_trace, methods=["GET"])] if events is not None else []),
        Route("/v1/{capability}/{method}", invoke, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_html, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error, Exception: crashed})
