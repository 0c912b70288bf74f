"""Delivery events (issue 22): webhook ingestion against a bare echo, a
burst with nothing lost, and the time a provider that starts dropping
everything takes to be ejected.

- ingestion: Mailgun-format signed events (one per request, as Mailgun
  posts them) sent by 16 concurrent clients for DURATION_S to the events
  endpoint (actors/http/events.py: verify, store in SQLite, suppress) and,
  in the same run, to a bare Starlette echo; both served by uvicorn on a
  thread of this process (not Serve: the endpoint's own cost is measured,
  not Serve's proxy, which both would share). Events/s ÷ echo requests/s.
- burst: BURST requests at 10× the measured rate's concurrency (160
  clients), each retried on a 5xx or a refused connection as the providers
  retry; events stored == events sent, or some were lost.
- ejection: the pure policy (actors/policy/delivery_health.py) over a
  simulated stream at 10 messages/s whose outcomes arrive 1 s after the
  send, the provider delivering everything, then from t=T0 dropping
  everything; the router judges every interval_s. Time from T0 to the
  ejection, for the default window and a short one. With the drop fallback
  on, every drop is re-sent (the Ray test shows it live); off, the share
  lost is the drops over the messages of a run of T0 + 300 s.

`python -m bench delivery_events`. The machine is shared: figures are
indicative, the ratio more than the absolute rates.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DURATION_S = 4.0
CLIENTS = 16
BURST = 2000
MG_KEY = "bench-signing-key"
CAP = "email_sending"


def _mailgun_body(i: int) -> bytes:
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(MG_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": {"event": "delivered", "id": f"ev-{token}", "timestamp": time.time(),
                                      "recipient": f"r{i}@example.com",
                                      "user-variables": {"request_id": f"req-{i}"}}}).encode()


def _serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import uvicorn

    from tests.e2e.cluster import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, port


async def _load(url: str, duration_s: float, clients: int) -> int:
    import httpx

    done = 0
    stop = time.monotonic() + duration_s
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        async def one_client(c: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                answer = await http.post(url, content=_mailgun_body(c * 1_000_000 + i),
                                         headers={"Content-Type": "application/json"})
                assert answer.status_code < 300, answer.text
                done += 1
                i += 1
        await asyncio.gather(*(one_client(c) for c in range(clients)))
    return done


async def _burst(url: str, n: int, clients: int) -> tuple[int, int]:
    """(stored answers, retries) for n events sent by `clients` at once, each retried as providers do."""
    import httpx

    ok = retries = 0
    queue = list(range(n))
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        async def worker() -> None:
            nonlocal ok, retries
            while queue:
                i = queue.pop()
                for attempt in range(8):
                    try:
                        answer = await http.post(url, content=_mailgun_body(10_000_000 + i),
                                                 headers={"Content-Type": "application/json"})
                        if answer.status_code < 300:
                            ok += 1
                            break
                        await asyncio.sleep(float(answer.headers.get("Retry-After", 0.1 * 2 ** attempt)))
                    except httpx.TransportError:
                        await asyncio.sleep(0.1 * 2 ** attempt)
                    retries += 1
        await asyncio.gather(*(worker() for _ in range(clients)))
    return ok, retries


def ingestion() -> dict[str, Any]:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from actors.durable import open_store
    from actors.http.app import build_app
    from actors.http.events import EventsEndpoint, EventSource

    class NoGateway:
        async def unanswered_async(self, capabilities: list[str]) -> dict[str, str]:
            return {}

    async def echo(request: Any) -> Response:
        return Response(await request.body(), media_type="application/json")

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'state.db'}", "bench")
        endpoint = EventsEndpoint([EventSource(capability=CAP, provider="mg", adapter="mailgun",
                                               verification_key=MG_KEY)], store, capabilities=[CAP])
        results: dict[str, Any] = {}
        for name, app, path in (("echo", Starlette(routes=[Route("/echo", echo, methods=["POST"])]), "/echo"),
                                ("events", build_app(NoGateway(), capabilities=[CAP], key_digests=[],
                                                     events=endpoint), f"/v1/events/{CAP}/mg")):
            server, thread, port = _serve(app)
            try:
                url = f"http://127.0.0.1:{port}{path}"
                asyncio.run(_load(url, 0.5, CLIENTS))            # warm up
                n = asyncio.run(_load(url, DURATION_S, CLIENTS))
                results[name] = n / DURATION_S
                if name == "events":
                    before = asyncio.run(_count(tmp))
                    ok, retries = asyncio.run(_burst(url, BURST, CLIENTS * 10))
                    stored = asyncio.run(_count(tmp)) - before
                    results["burst"] = {"sent": BURST, "answered_2xx": ok, "retries": retries, "stored": stored,
                                        "lost": BURST - stored}
            finally:
                server.should_exit = True
                thread.join(10)
        return results


async def _count(tmp: str) -> int:
    from actors.durable import open_store

    store = open_store(f"sqlite:///{Path(tmp) / 'state.db'}", "bench")
    try:
        return sum(n for n, _ in (await store.events_counts()).values())
    finally:
        await store.close()


def ejection(window_s: float, rate_per_s: float = 10.0, t0: float = 300.0, delay_s: float = 1.0,
             interval_s: float = 2.0) -> dict[str, Any]:
    from actors.policy.delivery_health import DeliveryHealthPolicy, judge

    policy = DeliveryHealthPolicy(window_s=window_s, interval_s=interval_s)
    verdicts: dict[str, Any] = {}
    outcomes: list[tuple[float, str]] = []
    dropped = 0
    step = 1.0 / rate_per_s
    t = 0.0
    next_round = interval_s
    degraded_at = None
    while t < t0 + 3600:
        if verdicts.get("sg") is None or verdicts["sg"].verdict != "ejected":
            dropping = t >= t0
            dropped += 1 if dropping else 0
            outcomes.append((t + delay_s, "provider_failure" if dropping else "ok"))
        t += step
        if t >= next_round:
            next_round += interval_s
            arrived = [(at, o) for at, o in outcomes if at <= t]
            verdicts, _ = judge({"sg": arrived}, verdicts, t, policy)
            if verdicts["sg"].verdict == "degraded" and degraded_at is None and t >= t0:
                degraded_at = t
            if verdicts["sg"].verdict == "ejected":
                return {"window_s": window_s, "degraded_after_s": round((degraded_at or t) - t0, 1),
                        "ejected_after_s": round(t - t0, 1), "dropped": dropped,
                        # of a run of t0 + 300 s at the same rate (the rest served by the next provider)
                        "lost_share_fallback_off": round(dropped / (rate_per_s * (t0 + 300.0)), 3),
                        "lost_share_fallback_on": 0.0}
    return {"window_s": window_s, "ejected_after_s": None}


def main() -> Path:
    from bench.common import target, write_results

    ingest = ingestion()
    ratio = ingest["events"] / ingest["echo"]
    ejections = [ejection(120.0), ejection(600.0)]
    table = [["events endpoint (verify + store, SQLite)", f"{ingest['events']:.0f} events/s"],
             ["bare Starlette echo", f"{ingest['echo']:.0f} requests/s"],
             ["ratio", f"{ratio:.2f}"],
             [f"burst of {BURST} at {CLIENTS * 10} clients", f"{ingest['burst']['stored']} stored, "
              f"{ingest['burst']['retries']} retries, {ingest['burst']['lost']} lost"]]
    for e in ejections:
        table.append([f"drop-everything to ejection at 10 msg/s, window {e['window_s']:.0f} s",
                      f"degraded after {e['degraded_after_s']} s, ejected after {e['ejected_after_s']} s; "
                      f"{e['dropped']} dropped meanwhile: {e['lost_share_fallback_off']:.1%} of a 10-minute run "
                      "lost with the drop fallback off, 0% with it on"])
    return write_results("delivery_events", {"ingestion": ingest, "ejections": ejections}, table,
                         ["what", "measured"], title="Delivery events (issue 22)",
                         notes=["uvicorn on a thread of the bench process, clients in the same process; the "
                                "machine is shared (2 cores): indicative figures.",
                                "Ejection times come from the pure policy over a simulated stream, not a live run."],
                         targets=[target("events/s ÷ echo requests/s", ratio, None, True, "{:.2f}"),
                                  target("events lost in the burst", ingest["burst"]["lost"], 0, False, "{:.0f}")])


if __name__ == "__main__":
    print(main().read_text())
