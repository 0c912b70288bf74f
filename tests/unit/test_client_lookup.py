"""Looking actors up within a deadline (actors/client/lookup.py) and joining
a cluster whose head does not answer (actors/client/cluster.py): no Ray
cluster, a stand-in `get_actor` that blocks as Ray's does while the GCS is down."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest

from actors.client import cluster
from actors.client.calls import GaveUp, RouterCall, Sleep, router_call
from actors.client.lookup import NameLookup
from actors.client.resend import ResendPolicy
from actors.errors import ClusterUnreachable, GcsUnavailable, NotDeployed


class BlockingRay:
    """get_actor blocks until `gcs_back` is set (the head's outage), then answers."""

    def __init__(self, names: dict[str, Any]):
        self.names = names
        self.gcs_back = threading.Event()
        self.calls = 0

    def get_actor(self, name: str, namespace: str) -> Any:
        self.calls += 1
        self.gcs_back.wait(30)
        if name not in self.names:
            raise ValueError(f"Failed to look up actor with name {name!r}")
        return self.names[name]


def test_a_lookup_the_gcs_does_not_answer_fails_typed_within_its_deadline() -> None:
    ray = BlockingRay({"router:email_sending": "handle"})
    lookup = NameLookup(ray, "ns")
    with pytest.raises(GcsUnavailable, match="GCS gave no answer within 0.1s"):
        lookup.find("router:email_sending", 0.1)
    # Trying again joins the lookup still waiting on the GCS: no second thread.
    with pytest.raises(GcsUnavailable):
        lookup.find("router:email_sending", 0.05)
    assert ray.calls == 1
    ray.gcs_back.set()  # the head is back
    assert lookup.find("router:email_sending", 5) == "handle"


def test_an_unknown_name_is_not_deployed() -> None:
    ray = BlockingRay({})
    ray.gcs_back.set()
    with pytest.raises(NotDeployed, match="no actor 'router:x' in namespace 'ns'"):
        NameLookup(ray, "ns").find("router:x", 5)


def test_a_call_whose_router_lookup_outlasts_the_deadline_gives_up_naming_the_gcs() -> None:
    now = [0.0]
    call = RouterCall("email_sending", "send_email", "k1", None, 1.0, lambda: now[0])

    def send(c: RouterCall) -> Any:
        raise GcsUnavailable("the cluster's GCS gave no answer")

    steps = router_call(call, send, ResendPolicy())
    step, answer = next(steps), None
    while True:
        try:
            if isinstance(step, Sleep):
                now[0] += step.delay_s
                step = steps.send(None)
            else:
                try:
                    step.submit()
                except GcsUnavailable as exc:
                    now[0] += 0.2
                    step = steps.throw(exc)
        except StopIteration as done:
            answer = done.value
            break
    assert isinstance(answer, GaveUp) and "GCS" in answer.why and call.resends >= 1


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_auto_is_resolved_and_checked_like_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` reads the address the last `ray start` wrote; a head that is down there fails fast."""
    port = _dead_port()
    monkeypatch.setattr(cluster, "_bootstrap_address", lambda target: f"127.0.0.1:{port}" if target == "auto"
                        else target)
    with pytest.raises(ClusterUnreachable) as raised:
        cluster._check_reachable("auto", timeout_s=1)
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message and "'auto' resolves to it" in message and "GCS" in message


def test_an_address_nothing_listens_at_names_the_gcs() -> None:
    with pytest.raises(ClusterUnreachable, match="cannot reach a Ray cluster at .*GCS does not answer"):
        cluster._check_reachable(f"127.0.0.1:{_dead_port()}", timeout_s=1)


def test_auto_without_a_recorded_address_is_left_to_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "_bootstrap_address", lambda target: None)
    cluster._check_reachable("auto")  # no exception: Ray searches for a local cluster itself
