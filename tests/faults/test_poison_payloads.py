"""Inputs the fuzzers found that passed validation and then broke something
further on, each reduced to one request, without Ray: a key or a string that
is not valid Unicode, line breaks in a subject or header, addresses and
header names Python's email package cannot handle. Each is now refused as an
`invalid_request` naming the field, before any provider."""

from __future__ import annotations

import asyncio
from typing import Any


from actors.config import parse_config
from actors.durable.sqlite import SqliteStore
from actors.errors import ErrorKind, TransientError
from actors.provider.core import ProviderCore
from actors.router.core import RouterCore
from actors.specs import build_spec
from tests.unit.harness import EMAIL, Harness


def invoke_or_fail(router: RouterCore, payload: Any, **options: Any) -> Any:
    try:
        return asyncio.run(router.invoke("send_email", payload, **options))
    except Exception as exc:  # noqa: BLE001 - what the test is about
        raise AssertionError(f"invoke raised {exc!r}") from exc


def test_an_idempotency_key_that_is_not_valid_unicode_is_an_invalid_request() -> None:
    h = Harness({"a": []})
    result = invoke_or_fail(h.router, EMAIL, idempotency_key="lead-\ud800")
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST
    assert "idempotency_key" in result.error.message and h.calls("a") == 0


def test_a_payload_string_that_is_not_valid_unicode_is_refused_before_any_provider() -> None:
    h = Harness({"a": [TransientError("down")] * 3, "outbox": []}, max_attempts=1)
    result = invoke_or_fail(h.router, {**EMAIL, "subject": "Hello \ud800"}, idempotency_key="k1")
    crashed = [a for a in result.attempts if a.error_kind is ErrorKind.CRASHED]
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST, (result.error, crashed)
    assert "subject" in result.error.message and result.attempts == []


def smtp_router() -> tuple[RouterCore, ProviderCore]:
    raw = {"capabilities": {"email_sending": {"providers": [{"name": "smtp", "adapter": "smtp", "settings": {
        "host": "127.0.0.1", "port": 9, "tls_mode": "none", "from_addr": "bot@example.com", "timeout_s": 1}}]}}}
    cap = build_spec(parse_config(raw, "<poison>", env={})).capabilities[0]
    store = SqliteStore(":memory:")
    core = ProviderCore(cap.providers[0], store=store)

    async def send(name: str, method: str, payload: Any, ctx: Any) -> Any:
        return await core.call(method, payload, ctx)

    async def resolve(name: str, method: str, payload: Any, ctx: Any) -> Any:
        return await core.resolve(method, payload, ctx)

    return RouterCore(cap, send, resolve, store=store), core


def test_a_subject_with_a_line_break_is_an_invalid_request_not_a_crashed_provider() -> None:
    router, core = smtp_router()
    result = invoke_or_fail(router, {**EMAIL, "subject": "Hello\nBcc: everyone@example.com"}, idempotency_key="k")
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST, (
        result.error, [(a.error_kind, a.maybe_delivered) for a in result.attempts], core.health.consecutive_failures)
    assert core.health.consecutive_failures == 0


def test_a_header_value_with_a_line_separator_is_an_invalid_request_not_a_crashed_provider() -> None:
    router, core = smtp_router()
    result = invoke_or_fail(router, {**EMAIL, "headers": {"X-Campaign": "spring\x1esale"}}, idempotency_key="k")
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST, (
        result.error, [(a.error_kind, a.maybe_delivered) for a in result.attempts])
    assert core.health.consecutive_failures == 0


def test_an_address_the_header_parser_cannot_read_is_an_invalid_request() -> None:
    router, core = smtp_router()
    result = invoke_or_fail(router, {**EMAIL, "to": ["ann@[example.com"]}, idempotency_key="k")
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST, (
        result.error, [(a.error_kind, a.error) for a in result.attempts])
    assert "to[0]" in result.error.message


def test_a_header_name_the_adapters_cannot_fold_is_an_invalid_request() -> None:
    router, core = smtp_router()
    result = invoke_or_fail(router, {**EMAIL, "headers": {"X-" + "a" * 98: ""}}, idempotency_key="k")
    assert result.error is not None and result.error.kind is ErrorKind.INVALID_REQUEST, (
        result.error, [(a.error_kind, a.error) for a in result.attempts])
