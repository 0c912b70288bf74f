"""Valid payloads through every real adapter, without a network: a dry run
builds the exact request the adapter would send (the message, the JSON body,
the IMAP commands), through the provider actor's core. Whatever validation
let through, an adapter may refuse it (`invalid_request`, `not_supported`)
but must never crash on it: a crash counts against the provider's health
and, mid-send, parks the request as possibly delivered.

Inputs known to crash the email adapters are left out here and reduced in
test_poison_payloads.py: line breaks in a subject or a header value (beyond
the CR and LF validation refuses: \x0b, \x1e, \u2028, ...), lone
surrogates, addresses the payload check accepts but the email header parser
cannot read (`ann@[example.com`, `:@example.com;x`), and header names that
are not short RFC 5322 field names (one of 78+ characters with an empty
value crashes the header folding).
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.adapters.registry import BUILTIN, get_adapter_class
from actors.config import parse_config
from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind
from actors.messages import CallContext
from actors.payloads import METHODS, validate_payload
from actors.provider.core import ProviderCore
from actors.specs import build_spec
from tests.faults.canaries import provider_settings, secret_fields, webhook_secret
from tests.faults.strategies import CLEAN_ADDRESS, CLEAN_TEXT, HEADER_NAME, one_line, valid_payloads

CLEAN = valid_payloads(CLEAN_TEXT, line=CLEAN_TEXT.filter(one_line), address=CLEAN_ADDRESS, header_name=HEADER_NAME)
NOWHERE = {"http": type("Nowhere", (), {"url": "http://127.0.0.1:9"})(), "smtp": type("Nowhere", (), {"port": 9})(),
           "imap": type("Nowhere", (), {"port": 9, "ca_file": None})()}
CASES = [(adapter, cap, spec.name) for adapter in BUILTIN if adapter not in ("noop", "simulated", "outbox")
         for cap in sorted(get_adapter_class(adapter).capabilities) for spec in METHODS[cap].values()]
REFUSALS = {ErrorKind.INVALID_REQUEST, ErrorKind.NOT_SUPPORTED}


@cache
def core(adapter: str, capability: str) -> ProviderCore:
    secrets = {f: (webhook_secret("fuzz-secret") if (adapter, f) == ("webhook", "secret") else f"fuzz-{f}")
               for f in secret_fields().get(adapter, [])}
    secrets.setdefault("base_id", "appFuzz")
    raw = {"capabilities": {capability: {"providers": [
        {"name": adapter, "adapter": adapter, "settings": provider_settings(adapter, secrets, NOWHERE)}]}}}
    spec = build_spec(parse_config(raw, "<fuzz>", env={})).capabilities[0].providers[0]
    return ProviderCore(spec, store=SqliteStore(":memory:"))


@pytest.mark.parametrize(("adapter", "capability", "method"), CASES, ids=[f"{a}.{m}" for a, _, m in CASES])
def test_a_valid_payload_never_crashes_an_adapter(adapter: str, capability: str, method: str) -> None:
    spec = METHODS[capability][method]
    provider = core(adapter, capability)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=CLEAN[method], key=st.none() | st.text(min_size=1, max_size=20).filter(lambda k: k.strip()))
    def check(payload: dict[str, Any], key: str | None) -> None:
        ctx = CallContext(request_id="r", method=method, idempotency_key=key, dry_run=True, timeout_s=5)
        reply = asyncio.run(provider.call(method, validate_payload(spec, payload), ctx))
        assert reply.ok or reply.error_kind in REFUSALS, (payload, reply.error_kind, reply.error)
        if reply.ok:
            assert isinstance(reply.value, dict) and reply.value.get("delivered") is not True, reply.value

    check()
