"""Router replicas without Ray: how many `up` runs, which one a client
sends to (the power of two choices on its calls in flight), and what a
client does when one dies or is removed."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from actors.client.replicas import DOWN_S, PING_SHARED_S, RouterReplicas
from actors.config.schema import RoutingConfig
from actors.deploy.replicas import replica_count
from actors.errors import NotDeployed
from actors.names import router_capability, router_replica_name


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Names:
    """Stands in for Ray's registry of named actors."""

    def __init__(self, *names: str):
        self.names = set(names)
        self.lookups: list[str] = []

    def __call__(self, name: str, timeout_s: float | None = None) -> str:
        self.lookups.append(name)
        if name not in self.names:
            raise ValueError(f"Failed to look up actor {name}")
        return f"handle of {name}"


def replicas(count: int, clock: Clock, seed: int = 0) -> tuple[RouterReplicas, Names]:
    names = Names(*(router_replica_name("email_sending", i) for i in range(count)))
    return RouterReplicas("email_sending", names, clock, random.Random(seed)), names


def test_replica_0_keeps_the_contracts_name() -> None:
    assert router_replica_name("email_sending", 0) == "router:email_sending"
    assert router_replica_name("email_sending", 2) == "router:email_sending#2"
    assert router_capability("router:email_sending") == "email_sending"
    assert router_capability("router:email_sending#1") is None and router_capability("supervisor") is None


@pytest.mark.parametrize("setting, nodes, expected", [
    ("auto", 1, 1),     # make demo: one machine, the lean set-up
    ("auto", 2, 2),     # several nodes: availability
    ("auto", 9, 2),
    (3, 1, 3),          # a count is a count
    (1, 4, 1),
])
def test_how_many_replicas_up_runs(setting: int | str, nodes: int, expected: int) -> None:
    assert replica_count(setting, nodes) == expected


@pytest.mark.parametrize("bad", [0, 17, "two", -1])
def test_a_bad_replica_count_says_what_is_allowed(bad: object) -> None:
    with pytest.raises(ValidationError, match="replicas"):
        RoutingConfig(replicas=bad)


def test_every_replica_is_found_by_name_and_the_count_by_the_first_missing_name() -> None:
    clock = Clock()
    r, names = replicas(3, clock)
    r.discover()
    assert [x.name for x in r.replicas] == ["router:email_sending", "router:email_sending#1", "router:email_sending#2"]
    assert names.lookups[-1] == "router:email_sending#3"


def test_no_first_replica_is_not_deployed() -> None:
    r, _ = replicas(0, Clock())
    with pytest.raises(NotDeployed):
        r.pick()


def test_calls_go_to_the_less_busy_of_two() -> None:
    clock = Clock()
    r, _ = replicas(2, clock)
    busy, idle = r.pick(), None
    busy.in_flight = 5
    for _ in range(20):
        idle = r.pick()
        assert idle is not busy


def back_in_rotation(r: Any, replica: Any) -> bool:
    """Whether `replica` takes the next call when its sibling is the busier."""
    for other in r.replicas:
        other.in_flight = 0 if other is replica else 1
    return r.pick() is replica


def test_a_tie_goes_to_the_replica_of_the_last_call() -> None:
    # One call at a time: the same warm process takes them all, none waits for the other to wake.
    clock = Clock()
    r, _ = replicas(2, clock, seed=3)
    first = r.pick()
    assert all(r.pick() is first for _ in range(50))
    first.in_flight = 1
    assert r.pick() is not first                       # busier: the other one


def test_spread_over_three_replicas_follows_the_load() -> None:
    clock = Clock()
    r, _ = replicas(3, clock, seed=7)
    picked = Counter()
    for _ in range(300):          # each call stays in flight: the load evens out
        chosen = r.pick()
        chosen.in_flight += 1
        picked[chosen.index] += 1
    assert max(picked.values()) - min(picked.values()) <= 2


def test_a_replica_that_dropped_a_call_is_left_out_while_a_sibling_is_live() -> None:
    clock = Clock()
    r, _ = replicas(2, clock)
    first = r.pick()
    assert r.dropped(first) is True          # a sibling takes the resend at once
    assert all(r.pick().index != first.index for _ in range(20))
    clock.now += DOWN_S
    assert back_in_rotation(r, first)


class Pingable:
    def __init__(self) -> None:
        self.pings = 0
        pingable = self

        class Ping:
            @staticmethod
            def remote() -> str:
                pingable.pings += 1
                return f"ping {pingable.pings}"

        self.ping = Ping()


def test_the_silent_calls_of_a_replica_share_one_ping_and_none_without_a_live_sibling() -> None:
    clock = Clock()
    r, _ = replicas(2, clock)
    first = r.pick()
    first.handle = handle = Pingable()
    assert r.ping(first) == r.ping(first) == "ping 1" and handle.pings == 1
    clock.now += PING_SHARED_S + 0.01
    assert r.ping(first) == "ping 2"                 # an old ping says nothing of now
    r.dropped(next(x for x in r.replicas if x is not first), keep_handle=True)
    assert r.ping(first) is None                     # no sibling to turn to: nothing to decide


def test_a_replica_left_out_is_back_as_soon_as_it_answers_a_call() -> None:
    # Left out because it was late with a ping under load: busy, not gone.
    clock = Clock()
    r, _ = replicas(2, clock)
    first = r.pick()
    r.dropped(first, keep_handle=True)
    assert all(r.pick().index != first.index for _ in range(20))
    clock.now += 0.01
    first.answered_at = clock.now          # one of its calls answered
    assert back_in_rotation(r, first)


def test_the_last_replica_dropping_leaves_no_sibling() -> None:
    clock = Clock()
    r, _ = replicas(1, clock)
    only = r.pick()
    assert r.dropped(only) is False
    assert r.pick().index == 0                # the one back soonest: Ray is restarting it


def test_a_replica_removed_by_a_redeploy_is_dropped_from_the_set() -> None:
    clock = Clock()
    r, names = replicas(2, clock)
    r.discover()
    names.names.discard("router:email_sending#1")
    r.replicas[1].handle = None               # it dropped a call: looked up again when picked
    for _ in range(20):
        assert r.pick().index == 0
    assert [x.index for x in r.replicas] == [0]


def test_self_check_warns_when_a_capability_is_down_to_one_replica() -> None:
    from actors.ops.recommend import for_replicas

    both = [{"index": 0, "name": "router:email_sending", "alive": True},
            {"index": 1, "name": "router:email_sending#1", "alive": True}]
    assert for_replicas("email_sending", both) == []
    assert for_replicas("email_sending", both[:1]) == []          # one configured: nothing lost
    one_down = [both[0], {**both[1], "alive": False, "error": "ActorDiedError"}]
    [finding] = for_replicas("email_sending", one_down)
    assert finding.severity == "warning" and "1 of 2" in finding.problem
    assert "router:email_sending#1 (ActorDiedError)" in finding.evidence


def test_status_shows_the_replicas_in_one_line() -> None:
    from actors.cli.render import replica_line
    from actors.messages import ReplicaStatus

    assert replica_line([ReplicaStatus(index=0, name="router:x")]) == ""
    line = replica_line([ReplicaStatus(index=0, name="router:x", node_id="3f2a1c99", in_flight=4),
                         ReplicaStatus(index=1, name="router:x#1", alive=False, error="GetTimeoutError")])
    assert "1 of 2 alive" in line and "#0 node 3f2a1c in flight 4" in line and "#1" in line
    assert "GetTimeoutError" in line


def test_a_replica_answering_slowly_is_given_longer_to_answer_its_ping() -> None:
    from actors.client.replicas import TIMEOUT_CAP_S, Replica

    replica = Replica(0, "router:crm_sync")
    assert replica.timeout_s(0.05) == 0.05               # nothing known: the floor
    for _ in range(20):
        replica.answered(0.01)
    assert replica.timeout_s(0.05) == 0.05               # quick answers: a death is found at once
    for latency in (0.3, 0.6, 0.4, 0.9):                  # overload: its calls take long, so may its pings
        replica.answered(latency)
    assert 0.5 < replica.timeout_s(0.05) <= TIMEOUT_CAP_S
    for _ in range(50):
        replica.answered(5.0)
    assert replica.timeout_s(0.05) == TIMEOUT_CAP_S      # never longer than Ray takes to drop a dead one's calls


def test_self_check_flags_an_overloaded_router_single_or_replica() -> None:
    from actors.ops.recommend import for_replicas

    busy = {"index": 0, "name": "router:email_sending", "alive": True, "overloaded": True, "in_flight": 240,
            "refused": 57}
    [finding] = for_replicas("email_sending", [busy])                # a single router too
    assert finding.severity == "critical" and "router:email_sending is overloaded" in finding.problem
    assert "240 requests in flight" in finding.evidence and "57 refused" in finding.evidence
    assert "policy.routing.replicas" in finding.fix
    calm = {**busy, "overloaded": False}
    assert for_replicas("email_sending", [calm]) == []
    assert len(for_replicas("email_sending", [calm, {**busy, "index": 1, "name": "router:email_sending#1"}])) == 1


def test_status_shows_an_overloaded_router() -> None:
    from actors.cli.render import replica_line
    from actors.messages import ReplicaStatus

    line = replica_line([ReplicaStatus(index=0, name="router:x", in_flight=300, overloaded=True, refused=12)])
    assert "overloaded, refusing new requests" in line and "in flight 300" in line and "12 refused" in line
    line = replica_line([ReplicaStatus(index=0, name="router:x", node_id="3f2a1c99", in_flight=4),
                         ReplicaStatus(index=1, name="router:x#1", node_id="9b7e0011", overloaded=True, refused=3)])
    assert "#1 node 9b7e00 in flight 0 [bold red]overloaded[/] (3 refused)" in line and line.count("overloaded") == 1
