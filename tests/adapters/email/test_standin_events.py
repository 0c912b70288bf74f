"""The SendGrid and Mailgun stand-ins post delivery events as their
providers do: signed so that the gateway's own verification (actors/events)
accepts them, each outcome of the mix in its provider's words, a test's
`bounce…` address bouncing hard. No Ray: the stand-ins and a receiver run
on loopback, the receiver verifying with EventIntake."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web

from actors.events.intake import EventIntake
from actors.events.model import DeliveryEvent
from actors.sandbox.base import SandboxRunner, StandIn
from actors.sandbox.delivery_events import EventsSettings
from actors.sandbox.mailgun import MailgunStandIn
from actors.sandbox.sendgrid import SendGridStandIn


class Receiver(StandIn):
    name = "receiver"

    def __init__(self) -> None:
        super().__init__()
        self.intakes: dict[str, EventIntake] = {}
        self.events: list[tuple[str, DeliveryEvent]] = []
        self.refused: list[str] = []

    def authorized(self, request: web.Request) -> bool:
        return True

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/events/{provider}", self._take)]

    async def _take(self, request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        try:
            events = self.intakes[provider].accept(await request.read(), {k.lower(): v for k, v in
                                                                         request.headers.items()}, time.time())
        except Exception as exc:  # noqa: BLE001 - recorded for the test to fail on
            self.refused.append(f"{type(exc).__name__}: {exc}")
            return web.Response(status=401)
        self.events += [(provider, e) for e in events]
        return web.Response(status=200)


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_stand_ins_post_signed_events_for_each_outcome() -> None:
    receiver = Receiver()
    sg = SendGridStandIn(seed=1, events=EventsSettings(mix={"dropped": 1.0}))
    mg = MailgunStandIn(seed=1, events=EventsSettings(mix={"deferred": 1.0}))
    runner = SandboxRunner([receiver, sg, mg]).start()
    try:
        receiver.intakes = {"sg": EventIntake("sendgrid", sg.event_public_key),
                            "mg": EventIntake("mailgun", mg.webhook_signing_key)}
        sg.events.settings.url = runner.url("receiver") + "/events/sg"
        mg.events.settings.url = runner.url("receiver") + "/events/mg"
        with httpx.Client() as http:
            answer = http.post(runner.url("sendgrid") + "/v3/mail/send", headers={"Authorization": "Bearer SG.test-key"},
                               json={"personalizations": [{"to": [{"email": "ann@example.com"},
                                                                  {"email": "bounce@example.com"}]}],
                                     "from": {"email": "me@example.com"}, "subject": "Hi",
                                     "content": [{"type": "text/plain", "value": "x"}],
                                     "custom_args": {"request_id": "req-sg"}})
            assert answer.status_code == 202
            sg_id = answer.headers["X-Message-Id"]
            answer = http.post(runner.url("mailgun") + "/v3/mg.example.com/messages", auth=("api", "key-test"),
                               data={"from": "me@example.com", "to": "bob@example.com", "subject": "Hi", "text": "x",
                                     "h:Message-Id": "<d1.aicmo@example.com>", "v:request_id": "req-mg"})
            assert answer.status_code == 200
        # SendGrid: ann dropped (the mix), bounce@ bounced; Mailgun: accepted, deferred, delivered.
        wait_for(lambda: len(receiver.events) >= 6 or receiver.refused, "six events")
        assert receiver.refused == []
        by = {(p, e.recipient, e.kind, e.state, e.cause, e.bounce) for p, e in receiver.events}
        assert by == {("sg", "ann@example.com", "dropped", "dropped", "provider", None),
                      ("sg", "bounce@example.com", "processed", "accepted", None, None),
                      ("sg", "bounce@example.com", "bounce", "bounced", "recipient", "hard"),
                      ("mg", "bob@example.com", "accepted", "accepted", None, None),
                      ("mg", "bob@example.com", "failed", "deferred", None, None),
                      ("mg", "bob@example.com", "delivered", "delivered", None, None)}
        assert {e.message_id for p, e in receiver.events if p == "sg"} == {sg_id}
        assert {e.request_id for _, e in receiver.events} == {"req-sg", "req-mg"}
        assert {e.rfc_message_id for p, e in receiver.events if p == "mg"} == {"d1.aicmo@example.com"}
        # The mix changes at run time, as `make demo`'s provider that starts dropping.
        with httpx.Client() as http:
            stats = http.post(runner.url("sendgrid") + "/_sandbox/events", json={"mix": {"delivered": 1}}).json()
            assert stats["mix"] == {"delivered": 1} and stats["outcomes"]["dropped"] == 1
            assert http.post(runner.url("sendgrid") + "/_sandbox/events", json={"mix": {"lost": 1}}).status_code == 400
    finally:
        runner.stop()
