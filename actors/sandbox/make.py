"""A Make custom-webhook stand-in: `POST /<token>` runs "the scenario".

    POST /<token>   any body; 200 text `Accepted` while the scenario is on;
                    410 text `There is no scenario listening for this
                    webhook.` when it is off (`scenario_on = False`, or
                    `POST /_sandbox/make {"scenario_on": false}`); another
                    token: 404. With `hook_api_key` set, the request needs it
                    in `x-make-apikey` (else 401).
    429             text `Too many requests.` (Make: over 300 requests per 10 s).

`deliveries` keeps each accepted request's parsed JSON body (or its text).
The URL is the credential: `url` is `<base_url>/<token>`.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["MakeStandIn"]


class MakeStandIn(StandIn):
    name = "make"

    def __init__(self, *, token: str = "x7hook3token9abc", hook_api_key: str | None = None, seed: int = 0):
        super().__init__(api_key=token, seed=seed)
        self.hook_api_key = hook_api_key
        self.scenario_on = True
        self.deliveries: list[Any] = []

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.api_key}"

    def adapter_settings(self, **over: Any) -> dict[str, Any]:
        """Settings for the `make` adapter that talk to this stand-in."""
        settings: dict[str, Any] = {"url": self.url}
        if self.hook_api_key:
            settings["api_key"] = self.hook_api_key
        return {**settings, **over}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/_sandbox/make", self._knobs), web.post("/{token}", self._hook)]

    def reset(self) -> None:
        self.deliveries.clear()
        self.scenario_on = True

    def authorized(self, request: web.Request) -> bool:
        return self.hook_api_key is None or request.headers.get("x-make-apikey") == self.hook_api_key

    def error(self, status: int, message: str) -> web.Response:
        text = "Unauthorized" if status == 401 else message
        return web.Response(status=status, text=text)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else {}
        return web.Response(status=429, text="Too many requests.", headers=headers)

    async def _knobs(self, request: web.Request) -> web.Response:
        changes = await request.json()
        if "scenario_on" in changes:
            self.scenario_on = bool(changes["scenario_on"])
        return web.json_response({"scenario_on": self.scenario_on})

    async def _hook(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.api_key:
            return web.Response(status=404, text="Not Found")
        if not self.scenario_on:
            return web.Response(status=410, text="There is no scenario listening for this webhook.")
        raw = await request.read()
        try:
            self.deliveries.append(json.loads(raw))
        except ValueError:
            self.deliveries.append(raw.decode(errors="replace"))
        return web.Response(status=200, text="Accepted")
