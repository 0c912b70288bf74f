"""What the fault suite checks every request against: the simulated
providers' ledger (one JSON line per delivery) and the outbox.

A request is *accounted for* when

- a send (`send_email`, `publish_post`, `dispatch`: not idempotent) is in
  the ledger at most once, and exactly once if the caller was told it was
  delivered; one the gateway queued is in the outbox (pending) or, once
  drained, in the ledger exactly once; one parked with an unknown outcome
  is in the outbox (parked) and in the ledger at most once;
- an idempotent request (upsert, verify, enrich) told ok is in the ledger
  at least once (it may be sent again after an unknown outcome: by design).

`CarefulCaller` is the client the guarantees are written for: every request
carries an idempotency key, and a request the router could not answer (it
was killed) or that failed without being queued is sent again with the
same key. With `batch` > 1 it sends up to that many requests of one
capability in each `invoke_many`.
"""

from __future__ import annotations

import heapq
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.names import router_name
from actors.payloads import METHODS

IDEMPOTENT = {m.name for caps in METHODS.values() for m in caps.values() if m.idempotent}

# Every field of a result that names the delivery, per method: what the
# caller was told must be what the ledger holds.
_DELIVERY_ID = {
    "send_email": lambda v: v["message_id"].strip("<>").split("@")[0],
    "publish_post": lambda v: v["post_id"],
    "dispatch": lambda v: v["delivery_id"],
}


def sim(ledger: Path, **settings: Any) -> dict[str, Any]:
    """Settings of a simulated provider writing to `ledger`."""
    return {"latency_ms": 3, "latency_jitter_ms": 2, "ledger": str(ledger), **settings}


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Request:
    capability: str
    method: str
    payload: dict[str, Any]
    key: str


def request_for(capability: str, i: int, tag: str = "r") -> Request:
    """A valid request of `capability`, keyed `<tag>-<capability>-<i>`."""
    key = f"{tag}-{capability}-{i}"
    address = f"lead{i}@example.com"
    method, payload = {
        "email_sending": ("send_email", {"to": [address], "subject": f"Welcome {i}", "text": "Hello"}),
        "social_posting": ("publish_post", {"text": f"Announcement {i}", "network": "linkedin"}),
        "webhook_dispatch": ("dispatch", {"event": "lead.created", "data": {"i": i}}),
        "crm_sync": ("upsert_contact", {"email": address, "first_name": "Lead", "fields": {"i": i}}),
        "email_verification": ("verify_email", {"email": address}),
        "lead_enrichment": ("enrich_person", {"email": address}),
        "reply_fetching": ("fetch_replies", {"limit": 10}),
    }[capability]
    return Request(capability, method, payload, key)


def mixed_requests(counts: dict[str, int], tag: str = "r", seed: int = 0) -> list[Request]:
    """`counts[capability]` requests of each capability, interleaved at random."""
    requests = [request_for(cap, i, tag) for cap, n in counts.items() for i in range(n)]
    random.Random(seed).shuffle(requests)
    return requests


@dataclass
class CallerStats:
    sent: int = 0
    resent_after_router_loss: int = 0
    resent_after_failure: int = 0
    gave_up: int = 0
    errors: Counter = field(default_factory=Counter)


class CarefulCaller:
    """Sends keyed requests through the routers of `namespace`, at most
    `window` at a time, and resends one with its key whenever the router
    could not answer or it failed without being queued (up to `max_tries`)."""

    def __init__(self, ray: Any, namespace: str, *, window: int = 64, max_tries: int = 40,
                 retry_delay_s: float = 0.2, deadline_s: float | None = None, batch: int = 1):
        self.ray = ray
        self.namespace = namespace
        self.window = window
        self.max_tries = max_tries
        self.retry_delay_s = retry_delay_s
        self.deadline_s = deadline_s
        self.batch = batch
        self.stats = CallerStats()
        self.results: dict[str, Any] = {}
        self.latencies_ms: list[tuple[float, float]] = []   # (finished at, ms from first send)
        self._routers: dict[str, Any] = {}

    def _router(self, capability: str) -> Any:
        if capability not in self._routers:
            self._routers[capability] = self.ray.get_actor(router_name(capability), namespace=self.namespace)
        return self._routers[capability]

    def _send(self, reqs: list[Request]) -> Any:
        """One `invoke` (batch 1) or `invoke_many` for requests of one capability."""
        self.stats.sent += len(reqs)
        options: dict[str, Any] = {}
        if self.deadline_s is not None:
            options["deadline_s"] = self.deadline_s
        try:
            router = self._router(reqs[0].capability)
            if self.batch == 1:
                return router.invoke.remote(reqs[0].method, reqs[0].payload, idempotency_key=reqs[0].key, **options)
            return router.invoke_many.remote([(r.method, r.payload, {"idempotency_key": r.key, **options}) for r in reqs])
        except ValueError:  # the router's name is not registered right now
            self._routers.pop(reqs[0].capability, None)
            return None

    def _take(self, source: list[Request]) -> list[Request]:
        """The first request of `source` and the ones after it of the same capability, up to `batch`."""
        taken = [source.pop(0)]
        while source and len(taken) < self.batch and source[0].capability == taken[0].capability:
            taken.append(source.pop(0))
        return taken

    def run(self, requests: list[Request], pace_s: float = 0.0, timeout_s: float = 180.0) -> dict[str, Any]:
        ray = self.ray
        lost_router = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError)
        todo = list(requests)
        first_sent: dict[str, float] = {}
        tries: Counter = Counter()
        inflight: dict[Any, list[Request]] = {}
        retry_at: list[tuple[float, int, Request]] = []   # heap of (when, seq, request)
        seq = 0
        deadline = time.monotonic() + timeout_s
        next_send = time.monotonic()

        def in_flight() -> int:
            return sum(len(reqs) for reqs in inflight.values())

        def launch(reqs: list[Request]) -> None:
            nonlocal seq
            for req in reqs:
                tries[req.key] += 1
                first_sent.setdefault(req.key, time.monotonic())
            ref = self._send(reqs)
            if ref is None:
                for req in reqs:
                    seq += 1
                    heapq.heappush(retry_at, (time.monotonic() + self.retry_delay_s, seq, req))
            else:
                inflight[ref] = reqs

        def again(req: Request, why: str) -> None:
            nonlocal seq
            self.stats.errors[why] += 1
            if tries[req.key] >= self.max_tries:
                self.stats.gave_up += 1
                return
            seq += 1
            heapq.heappush(retry_at, (time.monotonic() + self.retry_delay_s, seq, req))

        while (todo or inflight or retry_at) and time.monotonic() < deadline:
            now = time.monotonic()
            while retry_at and retry_at[0][0] <= now and in_flight() < self.window:
                ready = [heapq.heappop(retry_at)[2]]
                while retry_at and retry_at[0][0] <= now and len(ready) < self.batch:
                    ready.append(heapq.heappop(retry_at)[2])
                while ready:
                    launch(self._take(ready))
            while todo and in_flight() < self.window and time.monotonic() >= next_send:
                launch(self._take(todo))
                next_send = time.monotonic() + pace_s
            if not inflight:
                time.sleep(0.01)
                continue
            ready_refs, _ = ray.wait(list(inflight), num_returns=len(inflight), timeout=0.02)
            for ref in ready_refs:
                reqs = inflight.pop(ref)
                try:
                    answer = ray.get(ref, timeout=0)
                except lost_router as exc:
                    self.stats.resent_after_router_loss += len(reqs)
                    self._routers.pop(reqs[0].capability, None)
                    for req in reqs:
                        again(req, type(exc).__name__)
                    continue
                for req, result in zip(reqs, answer if isinstance(answer, list) else [answer], strict=True):
                    if result.ok or result.outbox_id is not None:
                        self.results[req.key] = result
                        self.latencies_ms.append((time.monotonic(), (time.monotonic() - first_sent[req.key]) * 1000))
                    else:
                        self.results[req.key] = result  # the last failure, if it never succeeds
                        self.stats.resent_after_failure += 1
                        again(req, str(result.error.kind) if result.error else "failed")
        return self.results


@dataclass
class Verdict:
    requests: int = 0
    delivered: int = 0            # told ok, in the ledger
    queued_then_delivered: int = 0
    still_queued: int = 0
    parked: int = 0
    resent_idempotent: int = 0    # extra deliveries of idempotent requests (allowed)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.requests} requests: {self.delivered} delivered, {self.queued_then_delivered} queued then "
                f"delivered, {self.still_queued} still queued, {self.parked} parked, "
                f"{self.resent_idempotent} idempotent resends; {len(self.problems)} problems")


def account(requests: list[Request], results: dict[str, Any], ledger: list[dict[str, Any]],
            outbox: list[Any]) -> Verdict:
    """Check every request against the ledger and the outbox (see the module doc)."""
    verdict = Verdict(requests=len(requests))
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for line in ledger:
        by_key.setdefault((line["capability"], line["idempotency_key"]), []).append(line)
    items = {(i.capability, i.idempotency_key): i for i in sorted(outbox, key=lambda i: i.id)}
    known = {(r.capability, r.key) for r in requests}
    for (cap, key), lines in by_key.items():
        if (cap, key) not in known:
            verdict.problems.append(f"{cap} {key}: delivered {len(lines)}x but never requested")
    for req in requests:
        lines = by_key.get((req.capability, req.key), [])
        n = len(lines)
        res = results.get(req.key)
        item = items.get((req.capability, req.key))
        where = f"{req.capability} {req.key}"
        if req.method in IDEMPOTENT:
            if res is None or not res.ok:
                verdict.problems.append(f"{where}: never answered ok ({_why(res)})")
            elif n == 0:
                verdict.problems.append(f"{where}: told ok by {res.provider} but never delivered")
            else:
                verdict.delivered += 1
                verdict.resent_idempotent += n - 1
            continue
        if n > 1:
            verdict.problems.append(f"{where}: delivered {n} times, by {[line['provider'] for line in lines]}")
            continue
        if res is None:
            verdict.problems.append(f"{where}: never answered (delivered {n}x)")
        elif res.ok and res.outbox_id is None:
            if n == 0:
                verdict.problems.append(f"{where}: told ok by {res.provider} but never delivered")
            elif req.method in _DELIVERY_ID and _DELIVERY_ID[req.method](res.value) != lines[0]["delivery_id"]:
                verdict.problems.append(f"{where}: told {res.value} but the delivery was {lines[0]['delivery_id']}")
            else:
                verdict.delivered += 1
        elif res.outbox_id is not None:
            if item is None:
                verdict.problems.append(f"{where}: told outbox item {res.outbox_id}, which does not exist")
            elif item.state == "delivered":
                if n != 1:
                    verdict.problems.append(f"{where}: outbox item {item.id} says delivered, the ledger has it {n}x")
                else:
                    verdict.queued_then_delivered += 1
            elif item.state == "pending":
                if n != 0:
                    verdict.problems.append(f"{where}: still queued as item {item.id} but already delivered")
                else:
                    verdict.still_queued += 1
            elif item.state == "parked":
                verdict.parked += 1  # outcome unknown: in the ledger at most once (checked above)
            else:
                verdict.problems.append(f"{where}: outbox item {item.id} is {item.state}")
        else:
            verdict.problems.append(f"{where}: failed without being queued ({_why(res)}), delivered {n}x")
    return verdict


def _why(res: Any) -> str:
    if res is None:
        return "no answer"
    return f"{res.error.kind}: {res.error.message[:200]}" if res.error else "not ok"


class Chaos(threading.Thread):
    """Kills actors of a namespace one after another, at random intervals,
    and lets Ray restart them. `victims` is a list of actor names, killed in
    the order given (repeat or shuffle it to taste)."""

    def __init__(self, ray: Any, namespace: str, victims: list[str], interval_s: tuple[float, float] = (0.3, 0.8),
                 seed: int = 0, start_after_s: float = 0.3):
        super().__init__(daemon=True)
        self.ray = ray
        self.namespace = namespace
        self.victims = list(victims)
        self.interval_s = interval_s
        self.random = random.Random(seed)
        self.start_after_s = start_after_s
        self.killed: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        if self._halt.wait(self.start_after_s):
            return
        for name in self.victims:
            try:
                self.ray.kill(self.ray.get_actor(name, namespace=self.namespace), no_restart=False)
                self.killed.append((round(time.monotonic() - started, 2), name))
            except Exception as exc:  # noqa: BLE001 - recorded; the test decides
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            if self._halt.wait(self.random.uniform(*self.interval_s)):
                return

    def stop(self) -> None:
        self._halt.set()


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
