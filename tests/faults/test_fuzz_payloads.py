"""Property-based fuzzing of every method's payload through RouterCore,
without Ray (tests/unit/harness.py: in-process providers).

- A valid payload reaches the provider, once, as its Struct.
- A valid payload with one fault (a required field left out, an unknown
  field, a field of the wrong type, a value its checks refuse) is an
  `invalid_request` whose message names the field; no provider is called.
- Anything at all (junk payloads, methods, keys, deadlines; junk batches to
  `invoke_many`) never raises: the answer is ok or one of the request-level
  error kinds, and only an ok one reached a provider.
"""

from __future__ import annotations

import asyncio
import math
from functools import cache
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actors.errors import ErrorKind
from actors.messages import InvokeResult
from actors.payloads import METHODS, Payload, validate_payload
from tests.faults.strategies import ANY_TEXT, KEY_TEXT, NONBLANK, VALID, encodable, junk
from tests.unit.harness import Harness

SPECS = [spec for caps in METHODS.values() for spec in caps.values()]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Values that break a field's own checks (beyond its type), and the name the message must hold.
REFUSED: dict[str, list[tuple[str, Any]]] = {
    "send_email": [("to", []), ("to", ["not-an-address"]), ("to", ["a@b"]), ("from_addr", "nobody"),
                   ("reply_to", "x y@z.c"), ("headers", {"X-A": "1\r\nBcc: evil@example.com"})],
    "publish_post": [("text", "   "), ("network", "facebook")],
    "upsert_contact": [("email", "ann"), ("email", "ann@@example.com")],
    "enrich_person": [("email", "ann")],
    "verify_email": [("email", "no-at-sign")],
    "fetch_replies": [("limit", 0), ("limit", 1001), ("since", "yesterday")],
    "dispatch": [("event", " ")],
}
# Which field must be named when a check spans several fields.
NAMED = {"headers": "header", "text": "text"}

PROBES = [0, -1, 1.5, math.nan, True, "x", b"x", [], ["x"], [1], {}, {"k": "v"}, {"k": 1}, None, ("x",), object()]


@cache
def harness(capability: str) -> Harness:
    return Harness({"a": []}, capability=capability)


def invoke(spec: Any, payload: Any, **options: Any) -> tuple[InvokeResult, list[Any]]:
    h = harness(spec.capability)
    h.adapters["a"].calls.clear()
    result = asyncio.run(h.router.invoke(spec.name, payload, **options))
    return result, list(h.adapters["a"].calls)


def wrong_values(field_type: Any) -> list[Any]:
    """Probe values whose *type* this field refuses (msgspec is the judge of types)."""
    out = []
    for value in PROBES:
        try:
            msgspec.convert(value, field_type, strict=True)
        except (msgspec.ValidationError, TypeError):
            out.append(value)
    return out


def fields(spec: Any) -> list[Any]:
    return list(msgspec.structs.fields(spec.payload))


ids = [f"{s.capability}.{s.name}" for s in SPECS]


# --- valid payloads ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_valid_payload_reaches_the_provider_once(spec: Any) -> None:
    @FUZZ
    @given(payload=VALID[spec.name], key=st.none() | KEY_TEXT)
    def check(payload: dict[str, Any], key: str | None) -> None:
        result, calls = invoke(spec, payload, idempotency_key=key)
        if result.error is not None and result.error.kind is ErrorKind.IDEMPOTENCY_KEY_REUSED:
            assert calls == []  # a key drawn twice with another payload: refused, nothing sent
            return
        assert result.ok, (payload, result.error)
        if result.replayed:  # a key drawn twice: answered from its first result
            assert calls == []
            return
        assert result.provider == "a" and len(calls) == 1
        method, delivered, ctx = calls[0]
        assert method == spec.name and delivered == validate_payload(spec, payload)

    check()


# --- one fault at a time --------------------------------------------------------------
@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_a_payload_with_one_fault_is_an_invalid_request_naming_the_field(spec: Any) -> None:
    required = [f.name for f in fields(spec) if f.required]
    typed = [(f.name, v) for f in fields(spec) for v in wrong_values(f.type)]
    known = {f.name for f in fields(spec)}

    faults = st.one_of(
        [s for s in (
            st.sampled_from(required).map(lambda name: ("drop", name, None)) if required else None,
            st.text(min_size=1, max_size=30).filter(lambda k: k not in known).map(lambda k: ("add", k, 1)),
            st.sampled_from(typed).map(lambda fv: ("type", fv[0], fv[1])),
            st.sampled_from(REFUSED[spec.name]).map(lambda fv: ("refused", fv[0], fv[1])),
        ) if s is not None])

    @FUZZ
    @given(payload=VALID[spec.name], fault=faults)
    def check(payload: dict[str, Any], fault: tuple[str, str, Any]) -> None:
        kind, name, value = fault
        bad = dict(payload)
        if kind == "drop":
            bad.pop(name, None)
            assume(name in payload)
        else:
            bad[name] = value
        result, calls = invoke(spec, bad, idempotency_key="k")
        assert not result.ok and result.error.kind is ErrorKind.INVALID_REQUEST, (fault, result)
        assert NAMED.get(name, name) in result.error.message, (fault, result.error.message)
        assert calls == [] and result.attempts == []

    check()


# --- anything at all ------------------------------------------------------------------
FIELD_NAMES = sorted({f.name for s in SPECS for f in fields(s)})
KEY = st.one_of(st.sampled_from(FIELD_NAMES), ANY_TEXT, st.integers(), st.none(), st.booleans(), st.binary(max_size=4))
JUNK = junk(FIELD_NAMES)
METHOD = st.one_of(st.sampled_from([s.name for s in SPECS]), ANY_TEXT, JUNK)
DEADLINE = st.one_of(st.none(), st.floats(), st.integers(-5, 5), ANY_TEXT, st.just(True))
# Refusals that send nothing. A harness serves many examples, so a key can be
# drawn again with another payload: refused as reused.
REQUEST_KINDS = {ErrorKind.INVALID_REQUEST, ErrorKind.UNKNOWN_METHOD, ErrorKind.IDEMPOTENCY_KEY_REUSED}


def acceptable(result: Any, calls: list[Any], deadline: Any) -> None:
    assert isinstance(result, InvokeResult)
    if result.ok:
        assert len(calls) == 1 or result.replayed or result.dry_run
        return
    kinds = set(REQUEST_KINDS)
    if isinstance(deadline, (int, float)) and 0 < deadline < 0.01:
        kinds.add(ErrorKind.DEADLINE_EXCEEDED)  # a real, if tiny, deadline
    assert result.error.kind in kinds, result.error
    assert calls == [] or result.error.kind is ErrorKind.DEADLINE_EXCEEDED


@pytest.mark.parametrize("spec", SPECS, ids=ids)
def test_junk_never_escapes_and_never_reaches_a_provider_unvalidated(spec: Any) -> None:
    payloads = st.one_of(JUNK, VALID[spec.name], st.dictionaries(st.sampled_from(FIELD_NAMES), JUNK, max_size=6),
                         st.builds(lambda p, k, v: {**p, k: v}, VALID[spec.name], KEY, JUNK))

    @FUZZ
    @given(method=st.one_of(st.just(spec.name), METHOD), payload=payloads, key=st.one_of(st.none(), NONBLANK, JUNK),
           deadline=DEADLINE, dry_run=st.one_of(st.none(), st.booleans(), st.integers(0, 2)))
    def check(method: Any, payload: Any, key: Any, deadline: Any, dry_run: Any) -> None:
        assume(encodable(key))
        h = harness(spec.capability)
        h.adapters["a"].calls.clear()
        result = asyncio.run(h.router.invoke(method, payload, idempotency_key=key, dry_run=dry_run, deadline_s=deadline))
        acceptable(result, list(h.adapters["a"].calls), deadline)

    check()


@pytest.mark.parametrize("spec", SPECS[:3], ids=ids[:3])
def test_junk_batches_never_escape(spec: Any) -> None:
    options = st.one_of(st.none(), JUNK, st.fixed_dictionaries({}, optional={
        "idempotency_key": st.none() | KEY_TEXT, "deadline_s": DEADLINE, "dry_run": st.booleans(), "junk": JUNK}))
    item = st.one_of(JUNK, st.tuples(st.just(spec.name), VALID[spec.name]),
                     st.tuples(st.just(spec.name), VALID[spec.name], options), st.tuples(METHOD, JUNK, options, JUNK))

    @FUZZ
    @given(batch=st.lists(item, max_size=6))
    def check(batch: list[Any]) -> None:
        h = harness(spec.capability)
        results = asyncio.run(h.router.invoke_many(batch))
        assert len(results) == len(batch)
        for result in results:
            assert isinstance(result, InvokeResult)
            assert result.ok or result.error.kind in REQUEST_KINDS | {ErrorKind.DEADLINE_EXCEEDED}, result.error

    check()


def test_a_payload_struct_of_another_method_is_refused() -> None:
    verify = next(s for s in SPECS if s.name == "verify_email")
    email = next(s for s in SPECS if s.name == "send_email")
    wrong: Payload = validate_payload(verify, {"email": "ann@example.com"})
    result, calls = invoke(email, wrong)
    assert result.error.kind is ErrorKind.INVALID_REQUEST and "SendEmail" in result.error.message and calls == []
