"""The common frame of every HTTP stand-in: fault knobs, a request log and a runner.

A stand-in subclasses `StandIn`, lists its routes and says how its provider
formats errors and 429s. Faults are set at run time, from a test through the
Python object or from another process over HTTP:

    POST /_sandbox/faults {"down": true, "status": 503}
    POST /_sandbox/faults {"throttle_for_s": 5, "retry_after_s": 5}
    GET  /_sandbox/requests          what the stand-in received (for assertions)
    POST /_sandbox/reset             clear faults, log and stored data
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from aiohttp import web


@dataclass
class Faults:
    down: bool = False               # every request fails with `status`
    status: int = 503
    failure_rate: float = 0.0        # this share of requests fails with `status`
    latency_ms: float = 0.0          # added to every request
    throttle_until: float = 0.0      # epoch seconds; until then every request gets a 429
    retry_after_s: float | None = None  # what the 429 says, where the provider says anything
    reject_auth: bool = False        # every request fails authentication

    def update(self, changes: dict[str, Any]) -> None:
        if "throttle_for_s" in changes:
            changes = dict(changes)
            self.throttle_until = time.time() + float(changes.pop("throttle_for_s"))
        for key, value in changes.items():
            if not hasattr(self, key):
                raise KeyError(f"unknown fault knob {key!r}; known: {', '.join(asdict(self))}")
            setattr(self, key, value)


@dataclass
class Received:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    status: int = 0

    def json(self) -> Any:
        import json

        return json.loads(self.body or b"null")


class StandIn:
    """Base of the HTTP stand-ins. Subclasses override `routes`, `authorized`,
    and the response formats where their provider differs."""

    name: ClassVar[str] = ""

    def __init__(self, *, api_key: str = "test-key", seed: int = 0):
        self.api_key = api_key
        self.faults = Faults()
        self.received: list[Received] = []
        self.random = random.Random(seed)
        self.base_url = ""

    # --- to override -------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return []

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"errors": [{"message": message}]}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else {}
        return web.json_response({"errors": [{"message": "too many requests"}]}, status=429, headers=headers)

    def reset(self) -> None:
        """Forget stored data; subclasses with data extend this."""

    # --- machinery ---------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.post("/_sandbox/faults", self._set_faults),
                web.get("/_sandbox/faults", self._get_faults),
                web.get("/_sandbox/requests", self._get_requests),
                web.post("/_sandbox/reset", self._reset),
            ]
        )
        app.add_routes(self.routes())
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        body = await request.read()
        record = Received(time.time(), request.method, request.path, dict(request.query), dict(request.headers), body)
        self.received.append(record)
        response = await self._faulted(request)
        if response is None:
            response = await handler(request)
        record.status = response.status
        return response

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        f = self.faults
        if f.latency_ms:
            await asyncio.sleep(f.latency_ms / 1000)
        if f.throttle_until > time.time():
            return self.rate_limited(f.retry_after_s)
        if f.down or (f.failure_rate and self.random.random() < f.failure_rate):
            return self.error(f.status, "injected failure")
        if f.reject_auth or not self.authorized(request):
            return self.error(401, "invalid credentials")
        return None

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.update(await request.json())
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.faults))

    async def _get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.faults))

    async def _get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"at": r.at, "method": r.method, "path": r.path, "status": r.status} for r in self.received]
        )

    async def _reset(self, request: web.Request) -> web.Response:
        self.faults = Faults()
        self.received.clear()
        self.reset()
        return web.json_response({"reset": True})


class SandboxRunner:
    """Runs stand-ins on loopback in a background thread with its own event loop.

    >>> runner = SandboxRunner([SendGridStandIn()]).start()
    >>> runner.url("sendgrid")            # http://127.0.0.1:<port>
    >>> runner.stop()
    """

    def __init__(self, stand_ins: list[StandIn], host: str = "127.0.0.1"):
        self.stand_ins = {s.name: s for s in stand_ins}
        self.host = host
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, ports: dict[str, int] | None = None) -> "SandboxRunner":
        ports = ports or {}

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(self._start_all(ports))
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="sandbox", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"sandbox failed to start: {self._error}") from self._error
        return self

    async def _start_all(self, ports: dict[str, int]) -> None:
        for name, stand_in in self.stand_ins.items():
            runner = web.AppRunner(stand_in.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.host, ports.get(name, 0))
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # the ephemeral port actually bound
            stand_in.base_url = f"http://{self.host}:{port}"
            self._runners.append(runner)

    def url(self, name: str) -> str:
        return self.stand_ins[name].base_url

    def __getitem__(self, name: str) -> StandIn:
        return self.stand_ins[name]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "SandboxRunner":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class SlidingWindow:
    """At most `limit` events in any `window_s`; `limit` None means no limit."""

    def __init__(self, limit: int | None, window_s: float, clock: Any = time.time):
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.events: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.events and self.events[0] <= now - self.window_s:
            self.events.popleft()

    def allow(self) -> bool:
        """Count one event if the window has room; False (and nothing counted) if it has none."""
        if self.limit is None:
            return True
        now = self.clock()
        self._trim(now)
        if len(self.events) >= self.limit:
            return False
        self.events.append(now)
        return True

    def remaining(self) -> int | None:
        if self.limit is None:
            return None
        self._trim(self.clock())
        return max(0, self.limit - len(self.events))

    def reset(self) -> None:
        self.events.clear()
