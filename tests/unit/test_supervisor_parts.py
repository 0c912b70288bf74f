"""The supervisor's collaborators (actors/supervisor/), without Ray: other
actors are objects behind a lookup by name, whose methods answer
`.remote(...)` with an awaitable, as Ray handles do; time is a Clock the
test moves, and sleeping never waits."""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from actors.clock import Clock
from actors.config import parse_config
from actors.durable.sqlite import SqliteStore
from actors.durable.store import StoreHealth, StoreUnavailable
from actors.errors import ErrorKind
from actors.messages import CapabilityStatus, ProbeResult, ProviderStatus
from actors.ops.metrics import HeldGauges, MemoryRecorder
from actors.ops.reach import NodeInfo, NodeProbes
from actors.ops.shared_store import SharedStoreReport
from actors.specs import build_spec
from actors.supervisor.gauges import SupervisorGauges
from actors.supervisor.jobs import Job, PeriodicJobs
from actors.supervisor.outbox import OutboxDesk, outbox_capabilities
from actors.supervisor.self_check import SelfCheck
from actors.supervisor.state import SupervisorState
from actors.supervisor.status import StatusBoard

CAP = "email_sending"
SPEC = build_spec(parse_config({"capabilities": {
    CAP: {"providers": [{"name": "p", "adapter": "mailgun", "settings": {"api_key": "k", "domain": "mg.example.com"}},
                        {"name": "q", "adapter": "simulated"},
                        {"name": "outbox", "adapter": "outbox"}]},
    "crm_sync": {"providers": [{"name": "airtable", "adapter": "simulated"}]},
}}, env={}))


class _Remote:
    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            result = self.fn(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return call()


class Actors:
    """`actor(name)` over handles the test registers; a name not registered
    is an actor that is not there (Ray's lookup raises ValueError)."""

    def __init__(self) -> None:
        self.handles: dict[str, Any] = {}

    def add(self, name: str, **methods: Callable[..., Any]) -> None:
        self.handles[name] = SimpleNamespace(**{m: _Remote(fn) for m, fn in methods.items()})

    def __call__(self, name: str) -> Any:
        if name not in self.handles:
            raise ValueError(f"Failed to look up actor with name '{name}'")
        return self.handles[name]


class Time:
    """A Clock whose wall time the test sets and whose sleep only yields."""

    def __init__(self, now: float = 1000.0):
        self.now = now
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.sleep(0)

    @property
    def clock(self) -> Clock:
        return Clock(time=lambda: self.now, monotonic=lambda: self.now, sleep=self.sleep)


def status(name: str, cap: str = CAP, **kw: Any) -> ProviderStatus:
    return ProviderStatus(name=name, capability=cap, adapter="simulated", **kw)


def provider(cap: str, name: str) -> str:
    return f"provider:{cap}:{name}"


# --- jobs ------------------------------------------------------------------------------------
def test_jobs_sleep_on_the_clock_with_their_jitter_and_outlive_a_failing_round(
        caplog: pytest.LogCaptureFixture) -> None:
    time = Time()
    rounds: list[int] = []
    off: list[int] = []

    async def scenario() -> None:
        done = asyncio.Event()

        def step() -> None:
            rounds.append(len(rounds))
            if len(rounds) == 1:
                raise RuntimeError("the first round fails")
            if len(rounds) == 3:
                done.set()

        jobs = PeriodicJobs(time.clock, random.Random(7))
        assert not jobs.started
        jobs.start([Job(10.0, step, "a job", jitter_s=5.0), Job(0, lambda: off.append(1), "a job that is off")])
        assert jobs.started
        await asyncio.wait_for(done.wait(), 10)

    with caplog.at_level(logging.ERROR, logger="aicmo.supervisor"):
        asyncio.run(scenario())
    expected = random.Random(7)
    assert time.slept[:3] == [10.0 + expected.uniform(0, 5.0) for _ in range(3)]
    assert len(rounds) >= 3 and off == []
    assert [r.getMessage() for r in caplog.records] == ["a job failed"]


def test_a_coroutine_step_is_awaited() -> None:
    time = Time()
    awaited: list[str] = []

    async def scenario() -> None:
        done = asyncio.Event()

        async def step() -> None:
            awaited.append("round")
            done.set()

        PeriodicJobs(time.clock, random.Random()).start([Job(2.0, step, "draining")])
        await asyncio.wait_for(done.wait(), 10)

    asyncio.run(scenario())
    assert awaited and set(time.slept) == {2.0}  # no jitter asked, none added


# --- status ------------------------------------------------------------------------------------
def test_status_falls_back_to_what_providers_pushed_when_a_router_does_not_answer() -> None:
    actors = Actors()
    crm = CapabilityStatus(capability="crm_sync", providers=[status("airtable", "crm_sync")])
    actors.add("router:crm_sync", status=lambda: crm)
    board = StatusBoard(SPEC, actors, Time().clock)
    board.push(status("p", health="unhealthy"))

    [email, crm_found] = asyncio.run(board.capabilities(timeout_s=1.0))
    assert crm_found == crm
    assert email.skipped == {"router": "router did not answer: ValueError"}
    assert [(s.name, s.health, s.reachable) for s in email.providers] == [
        ("p", "unhealthy", True), ("q", "unknown", False), ("outbox", "unknown", False)]


def test_a_sample_keeps_who_answered_and_dates_it_on_the_clock() -> None:
    actors = Actors()
    actors.add(provider(CAP, "p"), status=lambda: status("p", total_calls=3))
    actors.add(provider("crm_sync", "airtable"), status=lambda: status("airtable", "crm_sync"))
    time = Time(now=5000.0)
    board = StatusBoard(SPEC, actors, time.clock)

    assert asyncio.run(board.sample()) == 2  # q and the outbox are not there
    assert {(s.capability, s.name) for s in board.pushed()} == {(CAP, "p"), ("crm_sync", "airtable")}
    assert set(board.trends()) == {CAP, "crm_sync"}
    assert board.registry() == {
        "namespace": SPEC.namespace, "source": SPEC.source,
        "routers": ["router:email_sending", "router:crm_sync"],
        "providers": [provider(CAP, "p"), provider(CAP, "q"), provider(CAP, "outbox"),
                      provider("crm_sync", "airtable")]}


# --- the outbox ----------------------------------------------------------------------------------
class CountingStore:
    def __init__(self, counts: dict[tuple[str, str], int]):
        self.counts = counts

    async def outbox_counts(self) -> dict[tuple[str, str], int]:
        return self.counts


def test_a_drain_round_delivers_where_a_real_provider_can_and_settles_parked_when_asked() -> None:
    actors = Actors()
    calls: list[Any] = []
    actors.add("router:email_sending",
               settle_parked=lambda: calls.append("settle") or {"settled": 1},
               real_provider_available=lambda: True,
               drain_outbox=lambda limit, rate_per_s: calls.append(("drain", limit)) or {
                   "delivered": [1, 2], "failed": [], "left": 0})
    store = CountingStore({(CAP, "pending"): 2, (CAP, "parked"): 1})
    desk = OutboxDesk(SPEC, lambda: store, actors, Time().clock)
    assert outbox_capabilities(SPEC) == {CAP}

    assert asyncio.run(desk.drain_once(settle_parked=False)) == [{"delivered": [1, 2], "failed": [], "left": 0}]
    assert calls == [("drain", 500)]
    assert len(asyncio.run(desk.drain_once(settle_parked=True))) == 2
    assert calls[1:] == ["settle", ("drain", 500)] and len(desk.drain_log) == 3


def test_nothing_queued_asks_no_router() -> None:
    desk = OutboxDesk(SPEC, lambda: CountingStore({}), Actors(), Time().clock)  # any router lookup would raise
    assert asyncio.run(desk.drain_once()) == []


def test_an_operator_drops_only_a_live_item_stamped_on_the_clock() -> None:
    store = SqliteStore(":memory:")
    time = Time(now=2000.0)
    desk = OutboxDesk(SPEC, lambda: store, Actors(), time.clock)

    async def scenario() -> None:
        item = await store.outbox_add(capability=CAP, method="send_email", payload={"to": "a@example.com"},
                                      idempotency_key="k", request_id="r", reason="queued", now=1.0)
        dropped = await desk.drop(item.id)
        assert (dropped.state, dropped.error, dropped.updated_at) == ("dropped", "dropped by an operator", 2000.0)
        time.now = 3000.0
        assert await desk.drop(item.id) == dropped  # already ended: left as it is
        assert await desk.drop(item.id + 1) is None
        assert await desk.list() == [] and [i.id for i in await desk.list(include_done=True)] == [item.id]
        await store.close()

    asyncio.run(scenario())


# --- the store --------------------------------------------------------------------------------------
class RecordingStore:
    def __init__(self) -> None:
        self.pruned: list[tuple[float, float]] = []

    async def ping(self) -> None:
        raise StoreUnavailable("sqlite:///x", "database is locked")

    def health(self) -> StoreHealth:
        return StoreHealth(url="sqlite:///x", kind="sqlite", ok=False, last_error="database is locked")

    async def prune(self, *, journal_before: float, outbox_before: float) -> dict[str, int]:
        self.pruned.append((journal_before, outbox_before))
        return {"journal": 0, "outbox": 0, "spend": 0}


def test_the_store_is_opened_on_first_use_and_pruned_on_the_clock() -> None:
    opened: list[Any] = []
    store = RecordingStore()
    state = SupervisorState(SPEC.state, Time(now=10_000.0).clock, open_store=lambda s: opened.append(s) or store)
    assert opened == []  # an idle supervisor has not touched the store

    health = asyncio.run(state.health())  # a store that does not answer: its health says why
    assert not health.ok and health.last_error == "database is locked"
    asyncio.run(state.prune())
    before = 10_000.0 - SPEC.state.retention_s
    assert store.pruned == [(before, before)] and opened == [SPEC.state]


# --- gauges -------------------------------------------------------------------------------------------
def test_gauges_count_the_outbox_only_with_metrics_on() -> None:
    asked: list[str] = []

    async def counts() -> dict[tuple[str, str], int]:
        asked.append("counts")
        return {(CAP, "pending"): 4}

    asyncio.run(SupervisorGauges(None, {CAP}, counts).record_outbox())
    assert asked == []  # metrics off: the store is not asked
    recorder = MemoryRecorder()
    asyncio.run(SupervisorGauges(HeldGauges(recorder), {CAP}, counts).record_outbox())
    assert recorder.gauges == {
        ("aicmo_outbox_depth", (("capability", CAP), ("state", "pending"))): 4,
        ("aicmo_outbox_depth", (("capability", CAP), ("state", "parked"))): 0}


# --- self-checks ---------------------------------------------------------------------------------------
class Evidence:
    """What tasks pinned to each node would find."""

    def __init__(self, node_probes: list[NodeProbes], shared: SharedStoreReport | Exception):
        self.node_probes = node_probes
        self.shared = shared

    async def probe_from_every_node(self, providers: Any, probe_timeout_s: float,
                                    task_timeout_s: float) -> list[NodeProbes]:
        return self.node_probes

    async def shared_store(self, spec: Any, timeout_s: float) -> SharedStoreReport:
        if isinstance(self.shared, Exception):
            raise self.shared
        return self.shared


def _ok(name: str, cap: str = CAP) -> ProbeResult:
    return ProbeResult(provider=name, capability=cap, ok=True)


def test_a_full_check_gathers_probes_statuses_nodes_and_the_store() -> None:
    actors = Actors()
    for cap, name in [(CAP, "p"), (CAP, "outbox"), ("crm_sync", "airtable")]:
        actors.add(provider(cap, name), probe=lambda timeout_s, n=name, c=cap: _ok(n, c),
                   status=lambda n=name, c=cap: status(n, c), node_id=lambda: "node-a")
    actors.add("router:email_sending", ops_report=lambda: {"audit": {"last_error": "disk full"}})
    node = NodeInfo(node_id="node-a", address="10.0.0.1", is_head=True)
    # The shared-store check failing is logged; the check goes on without it.
    evidence = Evidence([NodeProbes(node=node, results=[_ok("p")])], RuntimeError("no Ray here"))
    time = Time(now=7000.0)
    board = StatusBoard(SPEC, actors, time.clock)
    recorder = MemoryRecorder()
    gauges = SupervisorGauges(HeldGauges(recorder), set(), CountingStore({}).outbox_counts)

    async def store_health() -> StoreHealth:
        return StoreHealth(url="sqlite:///x", kind="sqlite")

    check = SelfCheck(SPEC, actors, board, store_health, gauges, time.clock, nodes=evidence)
    report = asyncio.run(check.run())

    email = next(c for c in report.capabilities if c.capability == CAP)
    q = next(p for p in email.probes if p.provider == "q")  # its actor is not there
    assert (q.ok, q.error_kind, q.error) == (False, ErrorKind.UNAVAILABLE, "provider actor did not answer: ValueError")
    assert email.served and set(email.usable_providers) == {"p", "outbox"}
    assert report.generated_at == 7000.0 and report.store == StoreHealth(url="sqlite:///x", kind="sqlite")
    assert check.last is report
    assert any(r.capability == CAP and "audit" in r.problem for r in report.recommendations)  # the router's ops report
    assert check.reach is not None and check.reach.actor_nodes == {
        f"{CAP}/p": "node-a", f"{CAP}/outbox": "node-a", "crm_sync/airtable": "node-a"}
    assert {(s.capability, s.name) for s in board.pushed()} == {(CAP, "p"), (CAP, "outbox"), ("crm_sync", "airtable")}
    assert recorder.gauges[("aicmo_capability_served", (("capability", CAP),))] == 1.0
    assert recorder.gauges[("aicmo_reachable", (("capability", CAP), ("node", "10.0.0.1:node-a"),
                                                ("provider", "p")))] == 1.0
