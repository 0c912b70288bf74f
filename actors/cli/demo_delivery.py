"""The demo's delivery events (issue 22): a provider that starts silently
dropping mid-campaign, seen through its signed events and routed around.

- `with_events`: the demo's config gains, for email_sending, the stand-ins'
  event keys on SendGrid and Mailgun (`events.verification_key`), the drop
  fallback, and a router that reads the events every half second (the
  thresholds stay the defaults: degraded at 10% of outcomes dropped by the
  provider, ejected at 30%);
- `EventsServer`: the gateway's own events endpoint (actors/http/events.py,
  in the HTTP API's app) over the gateway's store, served by uvicorn on a
  thread of the demo: the stand-ins post their signed events to it. Not
  Ray Serve, whose proxy and replica would cost the demo seconds to start;
  the code that verifies and stores is the same;
- `start_dropping`: from then on the SendGrid stand-in answers 202 as ever
  and drops every message (its events say `dropped`);
- `wait_for_resends`: what the email stand-ins received (sandbox/received.py:
  a message dropped and re-sent through another provider is not a
  duplicate), once the drop fallback has re-sent every drop;
- `report`: what the gateway saw and did, from the router's audit log.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:   # the stand-ins' modules stay out of a production install's imports (test_production_install)
    from actors.sandbox.received import CopyCheck

__all__ = ["EventsServer", "load_demo_config", "report", "start_dropping", "transitions", "wait_for_resends",
           "with_events"]

CAP = "email_sending"
DROPPER = "sendgrid"
# How often the demo's router reads the events (the default, 2 s, is for real traffic).
HEALTH_INTERVAL_S = 0.5


def with_events(raw: dict[str, Any]) -> dict[str, Any]:
    """The config (as read from YAML) with delivery events on for email_sending's
    SendGrid and Mailgun providers, keys read from the sandbox's variables."""
    cap = (raw.get("capabilities") or {}).get(CAP)
    if not isinstance(cap, dict):
        return raw
    keys = {"sendgrid": "${AICMO_SANDBOX_SENDGRID_EVENT_KEY}", "mailgun": "${AICMO_SANDBOX_MAILGUN_SIGNING_KEY}"}
    providers = [{**p, "events": {"verification_key": keys[p["adapter"]]}}
                 if isinstance(p, dict) and p.get("adapter") in keys and not p.get("events") else p
                 for p in cap.get("providers") or []]
    delivery = dict(cap.get("delivery") or {})
    delivery["drop_fallback"] = {**(delivery.get("drop_fallback") or {}), "enabled": True}
    delivery["health"] = {"interval_s": HEALTH_INTERVAL_S, **(delivery.get("health") or {})}
    return {**raw, "capabilities": {**raw["capabilities"], CAP: {**cap, "providers": providers,
                                                                  "delivery": delivery}}}


def load_demo_config(path: str | Path, env: dict[str, str]) -> Any:
    """`path` as load_config reads it, with `with_events` applied (validated as any config)."""
    from actors.config import load_config, parse_config
    from actors.errors import ConfigError

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return load_config(path, env)     # its own error, with the place
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", "expected a mapping at the top level")])
    return parse_config(with_events(raw), str(path), env)


class EventsServer:
    """The gateway's events endpoint on loopback, for the stand-ins to post to."""

    def __init__(self, cfg: Any, spec: Any, gateway: Any):
        import uvicorn

        from actors.http.app import build_app
        from actors.http.events import EventsEndpoint, EventSource
        from actors.specs import open_spec_store

        sources = [EventSource(capability=cap, provider=p.name, adapter=p.adapter,
                               verification_key=p.events.verification_key.get_secret_value(),
                               suppress=c.delivery.suppress_hard_bounces)
                   for cap, c in cfg.capabilities.items() for p in c.providers if p.events]
        capabilities = list(cfg.capabilities)
        self.endpoint = EventsEndpoint(sources, open_spec_store(spec.state), capabilities=capabilities)
        # No API key: only the signed events endpoint (and /healthz) answer.
        app = build_app(gateway, capabilities=capabilities, key_digests=[], events=self.endpoint)
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True,
                                        name="demo-events")

    def url(self, provider: str) -> str:
        return f"http://127.0.0.1:{self.port}/v1/events/{CAP}/{provider}"

    def start(self, timeout_s: float = 30.0) -> "EventsServer":
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the demo's events endpoint did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


def start_dropping(stack: Any) -> None:
    stack.http[DROPPER].events.settings.update({"mix": {"dropped": 1.0}})


def wait_for_resends(stack: Any, timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep) -> CopyCheck:
    """Until every dropped message has a copy that was not (the drop fallback
    re-sends within a round of its events), or `timeout_s`."""
    from actors.sandbox.received import check, copies
    deadline = time.monotonic() + timeout_s
    while True:
        pending = sum(p.events.stats()["pending"] for p in (stack.http["sendgrid"], stack.http["mailgun"]))
        result = check(copies(stack.http["sendgrid"], stack.http["mailgun"], stack.smtp))
        if (not result.lost and not pending) or time.monotonic() > deadline:
            return result
        sleep(0.2)


# --- the report ----------------------------------------------------------------------------------

def transitions(ray: Any, router: Any) -> list[dict[str, Any]]:
    """The router's delivery verdicts that changed, from its audit log."""
    records = ray.get(router.audit_tail.remote(500), timeout=30)["records"]
    return [r for r in records if r.get("type") == "delivery_health"]


def report(out: Any, result: CopyCheck, seen: Sequence[dict[str, Any]], since: float | None,
           routed_around: int) -> None:
    if since is None:
        return
    dropped = result.dropped_by.get(DROPPER, 0)
    out.print(f"\n[bold]delivery events[/]: {DROPPER} answered 202 to every send and silently dropped {dropped} "
              "welcome email(s); its signed events said so")
    for t in seen:
        if t.get("provider") == DROPPER:
            out.print(f"  {DROPPER}: {t['before']} -> {t['after']} {float(t['at']) - since:.1f}s after it started "
                      f"dropping ({t['evidence']})")
    if not any(t.get("provider") == DROPPER and t.get("after") == "ejected" for t in seen):
        out.print(f"  [yellow]{DROPPER} was not ejected[/]")
    out.print(f"  routed around: {routed_around} welcome email(s) sent after it started dropping were served by "
              "another provider")
    via = ", ".join(f"{p} {n}" for p, n in sorted(result.resent_via.items())) or "none"
    out.print(f"  drop fallback: {len(result.resent)} dropped message(s) re-sent once, with the same Message-ID "
              f"(via {via}); {len(result.lost)} lost" + (f": {result.lost[:5]}" if result.lost else ""))
