"""POST /v1/events/{capability}/{provider} and GET /v1/requests/{id}
without Ray: the Starlette app over a real SQLite store, driven by httpx.
Signed events are stored once, in order, whatever arrives first; anything
unsigned, stale or too large is refused with a problem document and
changes nothing; fuzzed bodies never get a 5xx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.clock import Clock
from actors.durable import open_store
from actors.durable.store import KeyClaim
from actors.events.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from actors.http.app import build_app
from actors.http.auth import ApiKeys, scoped_key
from actors.http.events import EventsEndpoint, EventSource
from actors.messages import Attempt, InvokeResult
from actors.specs.http import key_digest

NOW = 1_760_000_000.0
KEY = "k" * 24
AUTH = {"Authorization": f"Bearer {KEY}"}
MG_KEY = "mailgun-signing-key-0123"
PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = base64.b64encode(PRIVATE.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
CAP = "email_sending"


class Gateway:
    async def unanswered_async(self, capabilities: list[str]) -> dict[str, str]:
        return {}


def sg_post(events: list[dict[str, Any]], stamp: int = int(NOW)) -> dict[str, Any]:
    body = json.dumps(events).encode()
    signature = base64.b64encode(PRIVATE.sign(str(stamp).encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return {"content": body, "headers": {SIGNATURE_HEADER: signature, TIMESTAMP_HEADER: str(stamp),
                                         "Content-Type": "application/json"}}


def sg_event(event: str, at: float, event_id: str, **kw: Any) -> dict[str, Any]:
    return {"event": event, "email": "ann@example.com", "timestamp": at, "sg_event_id": event_id,
            "sg_message_id": "SGID.filter.1", "request_id": "req-1", **kw}


def mg_post(event: str, token: str, **data: Any) -> dict[str, Any]:
    stamp = str(int(NOW))
    sig = hmac.new(MG_KEY.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {"json": {"signature": {"timestamp": stamp, "token": token, "signature": sig},
                     "event-data": {"event": event, "id": f"mg-{token}", "timestamp": NOW,
                                    "recipient": "bob@example.com", **data}}}


class Harness:
    def __init__(self, tmp_path: Path):
        self.store = open_store(f"sqlite:///{tmp_path / 'state.db'}", "t")
        self.endpoint = EventsEndpoint(
            [EventSource(capability=CAP, provider="sg", adapter="sendgrid", verification_key=PUBLIC),
             EventSource(capability=CAP, provider="mg", adapter="mailgun", verification_key=MG_KEY)],
            self.store, capabilities=[CAP], clock=Clock(time=lambda: NOW))
        app = build_app(Gateway(), capabilities=[CAP], key_digests=[key_digest(KEY)], events=self.endpoint)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                        base_url="http://gw")

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.post(path, **kw)


def run(tmp_path: Path, scenario: Any) -> None:
    async def go() -> None:
        h = Harness(tmp_path)
        try:
            await scenario(h)
        finally:
            await h.client.aclose()
            await h.store.close()

    asyncio.run(go())


def test_signed_events_are_stored_once_in_order_and_shown_per_request(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        # The later event first, then a batch holding the earlier one and a duplicate.
        assert (await h.post("/v1/events/email_sending/sg", **sg_post([sg_event("delivered", NOW - 5, "e2")]))
                ).json() == {"received": 1, "stored": 1}
        answer = await h.post("/v1/events/email_sending/sg", **sg_post(
            [sg_event("processed", NOW - 9, "e1"), sg_event("delivered", NOW - 5, "e2"),
             sg_event("open", NOW - 1, "e3")]))
        assert answer.status_code == 200 and answer.json() == {"received": 3, "stored": 2}
        trace = (await h.client.get("/v1/requests/req-1", headers=AUTH)).json()
        assert [(e["kind"], e["state"]) for e in trace["events"]] == [
            ("processed", "accepted"), ("delivered", "delivered"), ("open", None)]
        assert trace["delivery_state"] == "delivered" and trace["events"][0]["provider"] == "sg"
        assert (await h.client.get("/v1/requests/req-1")).status_code == 401           # the key is needed here
        assert (await h.client.get("/v1/requests/nobody", headers=AUTH)).status_code == 404

    run(tmp_path, scenario)


def test_events_before_the_result_is_kept_join_it_later(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        key = scoped_key(ApiKeys([key_digest(KEY)]).caller(AUTH["Authorization"]) or "", "order-7")
        # Mailgun's event comes before the router stored the request's result under its key.
        from actors.adapters.email.email_message import key_digest as digest
        post = mg_post("failed", "t1", severity="permanent", reason="bounce",
                       **{"user-variables": {"idempotency_key_hash": digest(key)}})
        assert (await h.post("/v1/events/email_sending/mg", **post)).status_code == 200
        assert (await h.client.get("/v1/requests/order-7", headers=AUTH)).status_code == 404
        result = InvokeResult(ok=True, provider="mg", request_id="req-7", idempotency_key=key,
                              attempts=[Attempt(provider="sg", ok=False, error="503"), Attempt(provider="mg", ok=True)])
        await h.store.claim_keys(CAP, [KeyClaim(key)], "router", 30, 0.0)
        await h.store.finish_keys(CAP, "router", [(key, msgspec.msgpack.encode(result), None)], NOW)
        trace = (await h.client.get("/v1/requests/order-7", headers=AUTH)).json()
        assert trace["provider"] == "mg" and [a["provider"] for a in trace["attempts"]] == ["sg", "mg"]
        assert trace["delivery_state"] == "bounced" and trace["events"][0]["bounce"] == "hard"
        # The hard bounce put the address on the suppression list.
        [listed] = await h.store.suppress_list(CAP)
        assert (listed.address, listed.provider) == ("bob@example.com", "mg") and "hard bounce" in listed.reason

    run(tmp_path, scenario)


def test_refusals_are_problems_and_change_nothing(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        good = sg_post([sg_event("delivered", NOW, "e1")])
        cases = {
            "unsigned": {"content": good["content"]},
            "stale": sg_post([sg_event("delivered", NOW, "e1")], stamp=int(NOW) - 3600),
            "tampered": {**good, "content": good["content"].replace(b"delivered", b"bounce")},
        }
        for name, kw in cases.items():
            answer = await h.post("/v1/events/email_sending/sg", **kw)
            assert answer.status_code == 401, name
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["kind"] == "unauthorized"
        big = await h.post("/v1/events/email_sending/sg", content=b"[" + b" " * (3 * 1024 * 1024) + b"]")
        assert big.status_code == 413
        assert (await h.post("/v1/events/email_sending/nope", **good)).status_code == 404
        assert await h.store.events_counts() == {}
        # Mailgun's token seen twice: the replay is refused.
        assert (await h.post("/v1/events/email_sending/mg", **mg_post("delivered", "tok"))).status_code == 200
        assert (await h.post("/v1/events/email_sending/mg", **mg_post("delivered", "tok"))).status_code == 401
        assert await h.store.events_counts() == {(CAP, "mg"): (1, 1)}    # kept, tied to no request: counted

    run(tmp_path, scenario)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
           st.sampled_from(["signature", "event-data", "timestamp", "token"]),
           st.text(max_size=10) | st.integers() | st.dictionaries(st.text(max_size=8), st.text(max_size=8)))),
       provider=st.sampled_from(["sg", "mg"]), sig=st.text(max_size=40), stamp=st.text(max_size=12))
def test_fuzzed_bodies_never_get_a_5xx_nor_a_stored_event(tmp_path: Path, body: bytes, provider: str, sig: str,
                                                          stamp: str) -> None:
    async def scenario(h: Harness) -> None:
        headers = {SIGNATURE_HEADER: sig.encode("ascii", "ignore").decode(),
                   TIMESTAMP_HEADER: stamp.encode("ascii", "ignore").decode()}
        answer = await h.post(f"/v1/events/email_sending/{provider}", content=body, headers=headers)
        assert answer.status_code in (401, 413)
        assert await h.store.events_counts() == {}

    run(tmp_path, scenario)


def test_a_store_that_does_not_answer_is_a_503_with_retry_after(tmp_path: Path) -> None:
    from actors.errors import StoreUnavailable

    async def scenario(h: Harness) -> None:
        async def down(*args: Any, **kw: Any) -> int:
            raise StoreUnavailable("sqlite:///state.db", "database is locked")

        h.endpoint._store = type("Down", (), {"events_put": staticmethod(down)})()
        answer = await h.post("/v1/events/email_sending/sg", **sg_post([sg_event("delivered", NOW, "e1")]))
        # The provider retries a 5xx later (SendGrid for 24 hours, Mailgun for 8): nothing is lost.
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["kind"] == "store_unavailable"

    run(tmp_path, scenario)
