"""Delivery events (issue 22), live on a local Ray with the HTTP API on Ray Serve.

One Ray cluster, one Serve instance, and in it:

- two gateways, `on` and `off` (drop fallback on / off), each with the
  SendGrid stand-in ranked first and the Mailgun stand-in second (default
  delivery-health settings: a 2-minute window, degraded at 10% of
  outcomes dropped by the provider, ejected at 30%, read every 2 s); each
  gateway's HTTP API is its own Serve application (under /on and /off),
  and its stand-ins post their signed events there;
- a third ingress over a store of its own (/ingest) and a bare Serve echo
  deployment (/echo), for ingestion.

Ingestion: Mailgun-format signed events (one per request, as Mailgun posts
them) from CLIENTS concurrent clients for INGEST_S, against the echo, in
alternating rounds; events/s ÷ echo requests/s per round, median. Then a
burst: BURST_S seconds of events offered at 10× the measured events/s
(open loop), each retried as the providers retry (honouring Retry-After on
a 503); every answer counted (2xx, 503 with Retry-After, anything else)
and the store counted after: sent − stored is what was lost.

Ejection: both gateways take RATE_PER_S welcome emails a second; after
WARMUP_S (the default window full of delivered outcomes) both SendGrid
stand-ins start dropping everything they accept, at the same moment.
Each router's status is polled for the verdict: time from the first drop to
`degraded` and to `ejected`. Sending goes on for TAIL_S after both are
ejected; then what the stand-ins received is checked (sandbox/received.py):
with the fallback on, every dropped message should have been re-sent once
through Mailgun; off, each is lost. Shares are of the messages sent.

`python -m bench delivery_events` (about 5 minutes). The machine is shared:
ratios are taken within one run, the load average is reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

CAP = "email_sending"
CLIENTS = 16
INGEST_S = 3.0
ROUNDS = 3
BURST_S = 2.0
RATE_PER_S = 10.0
WARMUP_S = float(os.environ.get("BENCH_DELIVERY_WARMUP_S", 120.0))
TAIL_S = 10.0
MG_KEY = "bench-signing-key"
API_KEY = "bench-api-key-0123456789"


def _mailgun_body(i: int) -> bytes:
    stamp, token = str(int(time.time())), secrets.token_hex(25)
    signature = hmac.new(MG_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": {"event": "delivered", "id": f"ev-{token}", "timestamp": time.time(),
                                      "recipient": f"r{i}@example.com",
                                      "user-variables": {"request_id": f"req-{i}"}}}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(mode: str, port: int, state_dir: str, sg: Any, mg: Any, fallback: bool, mg_key: str) -> dict[str, Any]:
    return {
        "namespace": f"aicmo-bench-{mode}", "state": {"url": state_dir},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0},
        "http": {"enabled": True, "host": "127.0.0.1", "port": port, "api_keys": [API_KEY]},
        "capabilities": {CAP: {
            # SendGrid first until its events say otherwise; outlier ejection (latency, synchronous failures)
            # off, so that only the delivery events move it (they do without it: policy/planning.py).
            "policy": {"routing": {"ranking": "actors.policy.ranking:configured_order"}, "outlier": {"enabled": False}},
            "delivery": {"drop_fallback": {"enabled": fallback}},
            "providers": [
                {"name": "sendgrid", "adapter": "sendgrid", "events": {"verification_key": sg.event_public_key},
                 "settings": {"base_url": sg.base_url, "api_key": "SG.test-key", "from_addr": "bot@example.com"}},
                {"name": "mailgun", "adapter": "mailgun", "events": {"verification_key": mg_key},
                 "settings": {"base_url": mg.base_url, "api_key": "key-test", "domain": "mg.example.com",
                              "from_addr": "bot@mg.example.com"}}]}},
    }


def _wait_ok(url: str, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout_s:.0f}s")
        time.sleep(0.5)


# --- ingestion -----------------------------------------------------------------------------------

async def _closed_loop(url: str, duration_s: float, clients: int, body: Any) -> float:
    import httpx

    done = 0
    stop = time.monotonic() + duration_s
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=clients)) as http:
        async def one_client(c: int) -> None:
            nonlocal done
            i = 0
            while time.monotonic() < stop:
                answer = await http.post(url, content=body(c * 1_000_000 + i), headers={"Content-Type": "application/json"})
                assert answer.status_code < 300, answer.text
                done += 1
                i += 1
        started = time.monotonic()
        await asyncio.gather(*(one_client(c) for c in range(clients)))
        return done / (time.monotonic() - started)


async def _burst(url: str, rate_per_s: float, duration_s: float, connections: int) -> dict[str, Any]:
    """Events offered at `rate_per_s` (open loop) for `duration_s`, each retried as the providers retry."""
    import httpx

    n = int(rate_per_s * duration_s)
    counts = {"answered_2xx": 0, "answered_503_retry_after": 0, "answered_other": 0, "transport_errors": 0,
              "given_up": 0}
    # At most `connections` in flight, as a provider's webhook senders are: a request
    # due while all are busy waits for one (httpx's own queue is quadratic in its length).
    slots = asyncio.Semaphore(connections)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=connections)) as http:
        async def one(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            async with slots:
                await attempts(i)

        async def attempts(i: int) -> None:
            for attempt in range(10):
                try:
                    answer = await http.post(url, content=_mailgun_body(10_000_000 + i),
                                             headers={"Content-Type": "application/json"})
                except httpx.TransportError:
                    counts["transport_errors"] += 1
                    await asyncio.sleep(0.1 * 2 ** attempt)
                    continue
                if answer.status_code < 300:
                    counts["answered_2xx"] += 1
                    return
                if answer.status_code == 503 and answer.headers.get("Retry-After"):
                    counts["answered_503_retry_after"] += 1
                    await asyncio.sleep(float(answer.headers["Retry-After"]))
                else:
                    counts["answered_other"] += 1
                    await asyncio.sleep(0.1 * 2 ** attempt)
            counts["given_up"] += 1

        start = time.monotonic() + 0.2
        await asyncio.gather(*(one(i, start + i / rate_per_s) for i in range(n)))
        elapsed = time.monotonic() - start
    return {"sent": n, "asked_rate_per_s": rate_per_s, "all_answered_in_s": round(elapsed, 2),
            "achieved_rate_per_s": round(n / elapsed, 1), **counts}


def ingestion(base: str, store: Any) -> dict[str, Any]:
    events_url, echo_url = f"{base}/ingest/v1/events/{CAP}/mailgun", f"{base}/echo"
    asyncio.run(_closed_loop(events_url, 0.5, CLIENTS, _mailgun_body))          # warm up
    asyncio.run(_closed_loop(echo_url, 0.5, CLIENTS, _mailgun_body))
    rounds: list[dict[str, float]] = []
    for r in range(ROUNDS):
        order = [("echo", echo_url), ("events", events_url)][:: 1 if r % 2 == 0 else -1]
        rounds.append({name: asyncio.run(_closed_loop(url, INGEST_S, CLIENTS, _mailgun_body)) for name, url in order})
    from bench.common import median

    events = median([r["events"] for r in rounds])
    print(f"ingestion rounds: {rounds}", flush=True)
    echo = median([r["echo"] for r in rounds])
    ratio = median([r["events"] / r["echo"] for r in rounds])
    before = asyncio.run(_stored(store))
    burst = asyncio.run(_burst(events_url, 10 * events, BURST_S, CLIENTS * 10))
    stored = asyncio.run(_stored(store)) - before
    burst.update(stored=stored, lost=burst["sent"] - stored)
    print(f"burst: {burst}", flush=True)
    return {"events_per_s": events, "echo_per_s": echo, "ratio": ratio, "rounds": rounds, "burst": burst}


async def _stored(store: Any) -> int:
    return sum(n for n, _ in (await store.events_counts()).values())


# --- ejection -------------------------------------------------------------------------------------

async def ejection(worlds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from actors.sandbox.received import check, copies

    results: dict[str, Any] = {m: {"sent": 0, "failed": 0, "degraded_after_s": None, "ejected_after_s": None}
                               for m in worlds}
    t0: float | None = None
    stop = asyncio.Event()

    async def send(mode: str) -> None:
        gw, i, tasks = worlds[mode]["gw"], 0, set()
        began = time.monotonic()
        while not stop.is_set():
            payload = {"to": [f"lead{i}@example.com"], "subject": "Welcome", "text": "Hello"}
            task = asyncio.ensure_future(gw.invoke_async(CAP, "send_email", payload, idempotency_key=f"{mode}-{i}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda t, m=mode: _count(results[m], t))
            i += 1
            await asyncio.sleep(max(0.0, began + i / RATE_PER_S - time.monotonic()))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def watch(mode: str) -> None:
        router = worlds[mode]["gw"].router(CAP)
        shown = 0.0
        while results[mode]["ejected_after_s"] is None:
            status = await router.status.remote()
            sg = next(p for p in status.providers if p.name == "sendgrid")
            if time.monotonic() - shown > 10:
                shown = time.monotonic()
                print(f"{mode}: sendgrid {sg.health} calls {sg.total_calls} delivery {sg.delivery!r} "
                      f"ejection {sg.ejection_reason!r}; order {[p.name for p in status.providers]}", flush=True)
            if t0 is not None:
                now = time.monotonic()
                if sg.delivery and sg.delivery.startswith("degraded") and results[mode]["degraded_after_s"] is None:
                    results[mode]["degraded_after_s"] = round(now - t0, 2)
                if sg.ejection_reason == "delivery_drops":
                    results[mode]["ejected_after_s"] = round(now - t0, 2)
                    results[mode]["evidence"] = sg.delivery
            await asyncio.sleep(0.25)

    senders = [asyncio.ensure_future(send(m)) for m in worlds]
    await asyncio.sleep(WARMUP_S)
    for w in worlds.values():
        w["sg"].events.settings.update({"mix": {"dropped": 1.0}})
    t0 = time.monotonic()
    print(f"t0: both SendGrid stand-ins drop everything from now; sent so far {[r['sent'] for r in results.values()]}",
          flush=True)
    try:
        await asyncio.wait_for(asyncio.gather(*(watch(m) for m in worlds)), timeout=300)
    except asyncio.TimeoutError:
        pass
    print(f"ejections: {results}", flush=True)
    await asyncio.sleep(TAIL_S)
    stop.set()
    await asyncio.gather(*senders)
    # Let the last events arrive and the last re-sends go (a round of the routers, then some).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pending = sum(w[k].events.stats()["pending"] for w in worlds.values() for k in ("sg", "mg"))
        if not pending and not check(copies(worlds["on"]["sg"], worlds["on"]["mg"])).lost:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(5.0)     # the "off" gateway: nothing should come, give it the same time
    for mode, w in worlds.items():
        got = check(copies(w["sg"], w["mg"]))
        r = results[mode]
        r.update(dropped=got.dropped_by.get("sendgrid", 0), resent=len(got.resent), lost=len(got.lost),
                 duplicates=len(got.duplicates), lost_share=len(got.lost) / max(1, r["sent"]),
                 dropped_share=got.dropped_by.get("sendgrid", 0) / max(1, r["sent"]))
    return results


def _count(r: dict[str, Any], task: Any) -> None:
    r["sent"] += 1
    if task.cancelled() or task.exception() is not None or not task.result().ok:
        r["failed"] += 1


# --- the run --------------------------------------------------------------------------------------

def main() -> Path:
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import Response

    from actors.client import Gateway
    from actors.config import parse_config
    from actors.deploy.gateway import deploy, teardown
    from actors.http.deployment import ingress_app
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.delivery_events import EventsSettings
    from actors.sandbox.mailgun import MailgunStandIn
    from actors.sandbox.sendgrid import SendGridStandIn
    from actors.specs import build_spec, open_spec_store
    from actors.specs.http import build_http_spec
    from bench.common import local_ray

    @serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=256)
    class Echo:
        async def __call__(self, request: Request) -> Response:
            return Response(await request.body(), media_type="application/json")

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    dirs = [tempfile.mkdtemp(prefix="aicmo-bench-events-") for _ in range(3)]
    # SendGrid's own rate limit (600/min by default in the stand-in) is not what is measured here.
    standins = {m: (SendGridStandIn(seed=i, rate_limit=1_000_000, events=EventsSettings(mix={"delivered": 1.0})),
                    MailgunStandIn(seed=i, events=EventsSettings(mix={"delivered": 1.0})))
                for i, m in enumerate(("on", "off"))}
    # One runner per world: a runner keys its stand-ins by name.
    runners = [SandboxRunner(list(pair)).start() for pair in standins.values()]
    deployed: list[str] = []
    try:
        with local_ray():
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            worlds: dict[str, dict[str, Any]] = {}
            for (mode, (sg, mg)), state in zip(standins.items(), dirs, strict=False):
                cfg = parse_config(_config(mode, port, state, sg, mg, mode == "on", mg.webhook_signing_key),
                                   "<bench>", env={})
                spec = build_spec(cfg)
                deploy(spec, detached=False)
                deployed.append(spec.namespace)
                serve.run(ingress_app(build_http_spec(cfg)), name=f"bench-{mode}", route_prefix=f"/{mode}",
                          blocking=False)
                for s, name in ((sg, "sendgrid"), (mg, "mailgun")):
                    s.events.settings.update({"url": f"{base}/{mode}/v1/events/{CAP}/{name}"})
                worlds[mode] = {"sg": sg, "mg": mg, "gw": Gateway(spec.namespace)}
            # The ingestion endpoint: the `on` gateway's API over a store of its own, Mailgun's key MG_KEY.
            sg, mg = standins["on"]
            ingest = parse_config(_config("on", port, dirs[2], sg, mg, True, MG_KEY), "<bench>", env={})
            serve.run(ingress_app(build_http_spec(ingest)), name="bench-ingest", route_prefix="/ingest",
                      blocking=False)
            serve.run(Echo.bind(), name="bench-echo", route_prefix="/echo", blocking=False)
            for path in ("/on/healthz", "/off/healthz", "/ingest/healthz"):
                _wait_ok(base + path)
            store = open_spec_store(build_spec(ingest).state)
            ingest_result = ingestion(base, store)
            ejection_result = asyncio.run(ejection(worlds))
            for name in ("bench-on", "bench-off", "bench-ingest", "bench-echo"):
                serve.delete(name)
            serve.shutdown()
            for ns in deployed:
                teardown(ns)
    finally:
        for runner in runners:
            runner.stop()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
    return report(ingest_result, ejection_result, [round(x, 2) for x in os.getloadavg()])


def report(ingest: dict[str, Any], eject: dict[str, Any], load: list[float]) -> Path:
    from bench.common import target, write_results

    b = ingest["burst"]
    on, off = eject["on"], eject["off"]
    table = [
        ["events endpoint through Serve (verify + store, SQLite)", f"{ingest['events_per_s']:.0f} events/s"],
        ["bare Serve echo", f"{ingest['echo_per_s']:.0f} requests/s"],
        ["events/s ÷ echo requests/s (median of paired rounds)", f"{ingest['ratio']:.2f}"],
        [f"burst: {b['sent']} events asked at {b['asked_rate_per_s']:.0f}/s (10×), "
         f"{CLIENTS * 10} connections at most in flight",
         f"offered and answered at {b['achieved_rate_per_s']:.0f}/s (Serve queued, refused nothing): 2xx {b['answered_2xx']}, 503 + Retry-After {b['answered_503_retry_after']}, other "
         f"{b['answered_other']}, connection errors {b['transport_errors']}; stored {b['stored']}, lost {b['lost']} "
         f"(all answered in {b['all_answered_in_s']} s)"],
    ]
    for mode, r in (("on", on), ("off", off)):
        table.append([f"drop fallback {mode}: SendGrid drops everything from t0, {RATE_PER_S:.0f} messages/s",
                      f"degraded after {r['degraded_after_s']} s, ejected after {r['ejected_after_s']} s; "
                      f"{r['sent']} sent, {r['dropped']} dropped ({r['dropped_share']:.1%}), {r['resent']} re-sent, "
                      f"{r['lost']} lost ({r['lost_share']:.1%}), {r['duplicates']} duplicates"])
    notes = [f"One local Ray (2 CPUs), one Serve instance; clients in the bench process (httpx). Warm-up "
             f"{WARMUP_S:.0f} s of delivered mail before t0, so the default 2-minute window is full.",
             f"Load average at the end: {load} (a shared machine: other engineers' tests ran meanwhile).",
             "Ejection times are of the live routers (status polled every 0.25 s), default delivery.health "
             "(window 120 s, min 10 outcomes, degraded at 10%, ejected at 30%, read every 2 s)."]
    return write_results(
        "delivery_events",
        {"ingestion": ingest, "ejection": eject, "warmup_s": WARMUP_S, "rate_per_s": RATE_PER_S, "load_avg": load},
        table, ["what", "measured"], title="Delivery events (issue 22), live on Ray", notes=notes,
        targets=[target("events/s ÷ bare Serve echo requests/s", ingest["ratio"], None, True, "{:.2f}"),
                 target("events lost in a 10× burst", b["lost"], 0, False, "{:.0f}"),
                 target("drop-everything to ejection at 10 msg/s, live (s)", on["ejected_after_s"] or float("nan"),
                        None, False, "{:.1f}"),
                 target("messages lost with the drop fallback on", on["lost_share"], 0.0, False, "{:.1%}"),
                 target("messages lost with the drop fallback off", off["lost_share"], None, False, "{:.1%}")])


if __name__ == "__main__":
    print(main().read_text())
