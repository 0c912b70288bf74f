"""Delivery truth end to end on the shared local Ray cluster: the SendGrid
and Mailgun stand-ins post signed delivery events to the gateway's events
endpoint (the HTTP API's Starlette app over the gateway's store, served by
uvicorn in this process: Serve carries one gateway's API per cluster, and
the e2e suite has it), the routers read them from the store.

One deployment for the module: SendGrid ranked first (configured order)
drops half of what it accepts; Mailgun delivers. SendGrid is ejected on
its outcomes and Mailgun serves; a hard bounce suppresses its address; the
timeline shows the attempts and the events."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.ray

CAP = "email_sending"


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 60.0,
             seen: Callable[[], Any] = lambda: None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}; seen: {seen()}"
        time.sleep(0.2)


class _NoGateway:
    async def unanswered_async(self, capabilities: list[str]) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def world(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import uvicorn

    from actors.config import parse_config
    from actors.deploy.gateway import deploy, teardown
    from actors.http.app import build_app
    from actors.http.events import EventsEndpoint, EventSource
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.delivery_events import EventsSettings
    from actors.sandbox.mailgun import MailgunStandIn
    from actors.sandbox.sendgrid import SendGridStandIn
    from actors.specs import build_spec, open_spec_store
    from tests.e2e.cluster import free_port
    from tests.conftest import Gateway

    sg = SendGridStandIn(seed=7, events=EventsSettings(mix={"delivered": 1, "dropped": 1}))
    mg = MailgunStandIn(seed=7, events=EventsSettings(mix={"delivered": 1}))
    runner = SandboxRunner([sg, mg]).start()
    namespace = f"t-events-{secrets.token_hex(4)}"
    config = {
        "namespace": namespace, "state": {"url": str(tmp_path_factory.mktemp("state"))},
        "supervisor": {"check_interval_s": 0, "drain_interval_s": 0},
        "capabilities": {CAP: {
            "policy": {"routing": {"ranking": "actors.policy.ranking:configured_order"}},
            "delivery": {"health": {"interval_s": 0.3, "min_outcomes": 8, "degrade_ratio": 0.2, "eject_ratio": 0.35},
                         "drop_fallback": {"enabled": True}},
            "providers": [
                {"name": "sendgrid", "adapter": "sendgrid", "events": {"verification_key": sg.event_public_key},
                 "settings": {"base_url": sg.base_url, "api_key": "SG.test-key", "from_addr": "bot@example.com"}},
                {"name": "mailgun", "adapter": "mailgun",
                 "events": {"verification_key": mg.webhook_signing_key},
                 "settings": {"base_url": mg.base_url, "api_key": "key-test", "domain": "mg.example.com",
                              "from_addr": "bot@mg.example.com"}}]}},
    }
    spec = build_spec(parse_config(config, "<test>"))
    deploy(spec, detached=False)
    endpoint = EventsEndpoint([EventSource(capability=CAP, provider="sendgrid", adapter="sendgrid",
                                           verification_key=sg.event_public_key),
                               EventSource(capability=CAP, provider="mailgun", adapter="mailgun",
                                           verification_key=mg.webhook_signing_key)],
                              open_spec_store(spec.state), capabilities=[CAP])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(_NoGateway(), capabilities=[CAP], key_digests=[],
                                                     events=endpoint), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the events endpoint")
    sg.events.settings.url = f"http://127.0.0.1:{port}/v1/events/{CAP}/sendgrid"
    mg.events.settings.url = f"http://127.0.0.1:{port}/v1/events/{CAP}/mailgun"
    try:
        yield {"gw": Gateway(ray_cluster, namespace, spec.state), "sg": sg, "mg": mg, "endpoint": endpoint}
    finally:
        server.should_exit = True
        thread.join(10)
        runner.stop()
        teardown(namespace)


def email(to: str = "ann@example.com") -> dict[str, Any]:
    return {"to": [to], "subject": "Hi", "text": "Hello"}


def test_a_provider_dropping_half_is_ejected_mail_routes_around_it_and_trace_shows_it(world: dict[str, Any],
                                                                                        ray_cluster: Any) -> None:
    gw, sg = world["gw"], world["sg"]
    router = gw.router(CAP)
    first = [gw.invoke(CAP, "send_email", email(f"lead{i}@example.com")) for i in range(24)]
    # A 202 each: SendGrid looks healthy to every synchronous measure (it may be ejected before the
    # last of these, as its events come in: the rest then go to Mailgun).
    assert all(r.ok for r in first) and first[0].provider == "sendgrid"

    def sendgrid_status() -> Any:
        return next(p for p in ray_cluster.get(router.status.remote(), timeout=30).providers if p.name == "sendgrid")

    ejected = wait_for(lambda: (lambda s: s if s.ejection_reason == "delivery_drops" else None)(sendgrid_status()),
                       "SendGrid ejected on its drops", seen=lambda: (sendgrid_status(), sg.events.stats(),
                                                                      world["endpoint"].received))
    assert ejected.delivery.startswith("ejected: ") and "dropped or blocked by the provider" in ejected.delivery
    records = [r for r in ray_cluster.get(router.audit_tail.remote(200), timeout=30)["records"]
               if r.get("type") == "delivery_health"]
    assert records and records[-1]["provider"] == "sendgrid" and records[-1]["after"] == "ejected"
    assert sg.events.outcomes["dropped"] >= 4
    # self-check names it, with the evidence and a fix.
    check = ray_cluster.get(gw.supervisor.run_full_check.remote(), timeout=120)
    assert any(r.provider == "sendgrid" and "drops mail" in r.problem and "accepted messages" in r.evidence
               for r in check.recommendations), check.recommendations
    # The drop fallback: each message SendGrid dropped is sent again once, by Mailgun, with its Message-ID.
    def dropped_ids() -> set[str]:
        return {(r.value or {}).get("rfc_message_id") for r in first if r.provider == "sendgrid"
            and (t := gw.client.delivery(r.idempotency_key)) is not None and any(e.state == "dropped" for e in t.events)}

    def resent_ids() -> list[str]:
        return [m["form"].get("h:Message-Id") for m in world["mg"].sent]

    wait_for(lambda: sg.events.outcomes["dropped"] == len(dropped_ids()) and dropped_ids() <= set(resent_ids()),
             "every dropped message re-sent", seen=lambda: (dropped_ids(), resent_ids()))
    resent = [i for i in resent_ids() if i in dropped_ids()]
    assert len(resent) == len(set(resent)) == sg.events.outcomes["dropped"] >= 4       # each once

    # Routed around: Mailgun serves now.
    after = gw.invoke(CAP, "send_email", email("next@example.com"))
    assert after.ok and after.provider == "mailgun" and [a.provider for a in after.attempts] == ["mailgun"]

    # A hard bounce through Mailgun: the address is suppressed, a later send refused.
    bounced = gw.invoke(CAP, "send_email", email("bounce-me@example.com"))
    assert bounced.ok and bounced.provider == "mailgun"
    sup = gw.supervisor
    wait_for(lambda: ray_cluster.get(sup.suppression_list.remote(CAP), timeout=30), "the suppression list")
    refused = gw.invoke(CAP, "send_email", email("bounce-me@example.com"))
    assert not refused.ok and refused.error.kind.value == "suppressed" and refused.attempts == []

    # The timeline by the key the result names (the client's own, here): attempts, then events.
    trace = wait_for(lambda: (lambda t: t if t and t.delivery_state == "bounced" else None)(
        gw.client.delivery(bounced.idempotency_key)), "the bounce in the timeline")
    assert trace.provider == "mailgun" and [a.provider for a in trace.attempts] == ["mailgun"]
    assert [e.state for e in trace.events] == ["accepted", "bounced"]
    # By request id: the events that name it.
    assert [e.state for e in gw.client.delivery(bounced.request_id).events] == ["accepted", "bounced"]
    # A dropped message's timeline: SendGrid's drop, then Mailgun delivering the re-send (same Message-ID).
    dropped = gw.client.delivery(next(r.idempotency_key for r in first if (r.value or {}).get("rfc_message_id")
                                      in set(resent)))
    assert [(e.provider, e.state) for e in dropped.events][0] == ("sendgrid", "dropped")
    assert ("mailgun", "delivered") in [(e.provider, e.state) for e in dropped.events]
    assert dropped.delivery_state == "delivered"
    assert gw.client.delivery("no-such-request") is None
