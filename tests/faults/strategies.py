"""Hypothesis strategies for the fault suite's fuzzers: valid payloads of
every method, built from a text strategy, and the junk around them."""

from __future__ import annotations

import math
from datetime import timezone
from typing import Any

from hypothesis import strategies as st

# Anything a str may hold: lone surrogates, controls, line breaks, a megabyte.
ANY_TEXT = st.one_of(st.text(max_size=40), st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
                     st.sampled_from(["", " ", "\ud800", "\x00", "é" * 3, "🙂", "a\r\nb", "x" * 1_000_000]))
# The longest string every field takes (actors/payloads.py: a line is 998 characters at most;
# an address made of two of these stays under it).
LONG = 480
# What a well-behaved client sends: valid Unicode (no lone surrogates), controls and all.
CLEAN_TEXT = st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=40),
                       st.sampled_from(["", " ", "\x00", "é" * 3, "🙂", "a\r\nb", "<b>&amp;</b>", "x" * LONG]))
_ADDRESS_PART = st.text(st.characters(exclude_categories=("Cs", "Z", "C"), exclude_characters="@<>"), min_size=1,
                        max_size=12)
ADDRESS = st.builds(lambda local, a, b: f"{local}@{a}.{b}", _ADDRESS_PART, _ADDRESS_PART, _ADDRESS_PART)
# RFC 5322 dot-atoms (and non-ASCII letters): what validation accepts.
_ATEXT = st.characters(categories=("L", "Nd"), exclude_characters="\u0130") | st.sampled_from("!#$%&'*+-/=?^_`{|}~")
_LABEL = st.text(st.characters(categories=("L", "Nd")) | st.just("-"), min_size=1, max_size=10).filter(
    lambda t: not t.startswith("-") and not t.endswith("-"))
CLEAN_ADDRESS = st.builds(lambda local, a, b: f"{local}@{a}.{b}", st.text(_ATEXT, min_size=1, max_size=12), _LABEL, _LABEL)
ISO = st.datetimes(timezones=st.just(timezone.utc) | st.none()).map(
    lambda d: d.isoformat() if d.tzinfo is None else d.isoformat().replace("+00:00", "Z"))


def encodable(value: Any) -> bool:
    """Whether a str is valid Unicode (encodes as UTF-8); anything else is."""
    try:
        value.encode() if isinstance(value, str) else None
    except UnicodeEncodeError:
        return False
    return True


def one_line(text: str) -> bool:
    return len(text.splitlines()) <= 1 and not text.endswith(("\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e",
                                                                "\x85", "\u2028", "\u2029"))


# RFC 5322 field names, short: what validation should accept as a header name.
HEADER_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}", fullmatch=True)


def valid_payloads(text: st.SearchStrategy[str], line: st.SearchStrategy[str] | None = None,
                   address: st.SearchStrategy[str] = ADDRESS, header_name: st.SearchStrategy[str] | None = None
                   ) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """method -> payloads its validation accepts, strings drawn from `text`
    (from `line` for what becomes an email header: the subject, header
    values; header names from `header_name`)."""
    nonblank = text.filter(lambda t: t.strip() != "")
    json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | text,
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                        max_leaves=12)
    header = (line if line is not None else text).filter(lambda t: "\r" not in t and "\n" not in t)
    body = st.one_of(st.fixed_dictionaries({"text": text}), st.fixed_dictionaries({"html": text}),
                     st.fixed_dictionaries({"text": text, "html": text}))
    return {
        "send_email": st.fixed_dictionaries(
            {"to": st.lists(address, min_size=1, max_size=3), "subject": line if line is not None else text},
            optional={"from_addr": address, "reply_to": address,
                      "headers": st.dictionaries(header if header_name is None else header_name, header, max_size=3)},
        ).flatmap(lambda d: body.map(lambda b: {**d, **b})),
        "publish_post": st.fixed_dictionaries(
            {"text": nonblank},
            optional={"network": st.sampled_from(["linkedin", "x", None]), "link": text,
                      "media_urls": st.lists(text, max_size=3)}),
        "upsert_contact": st.fixed_dictionaries(
            {"email": address},
            optional={"first_name": text, "last_name": text, "company": text,
                      "fields": st.dictionaries(text, json, max_size=4)}),
        "enrich_person": st.one_of(
            st.fixed_dictionaries({"email": address}),
            st.fixed_dictionaries({"first_name": nonblank, "last_name": nonblank, "domain": nonblank})),
        "verify_email": st.builds(lambda a, b: {"email": f"{a}@{b}"}, text, text),
        "fetch_replies": st.fixed_dictionaries(
            {}, optional={"since": ISO, "mailbox": text, "limit": st.integers(1, 1000)}),
        "dispatch": st.fixed_dictionaries({"event": nonblank, "data": st.dictionaries(text, json, max_size=4)}),
    }


# What validation accepts: valid Unicode, one-line subjects and header
# values, RFC 5322 header names and dot-atom addresses.
VALID = valid_payloads(CLEAN_TEXT, line=CLEAN_TEXT.filter(one_line), address=CLEAN_ADDRESS, header_name=HEADER_NAME)
NONBLANK = ANY_TEXT.filter(lambda t: t.strip() != "")
# Keys `invoke` accepts: printable ASCII, at most 256 characters (the others are
# refused, see test_poison_payloads.py).
KEY_TEXT = NONBLANK.filter(lambda t: encodable(t) and len(t) <= 256 and t.isascii() and t.isprintable())


class Opaque:
    """Something no schema knows."""


def junk(field_names: list[str]) -> st.SearchStrategy[Any]:
    """Anything a Ray caller could pass: nested containers of every type,
    dicts keyed by real field names and by things that are not strings."""
    key = st.one_of(st.sampled_from(field_names), ANY_TEXT, st.integers(), st.none(), st.booleans(), st.binary(max_size=4))
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**64, max_value=2**200), st.floats(),
                  ANY_TEXT, st.binary(max_size=20), st.builds(Opaque), st.just(math.inf)),
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                st.frozensets(st.integers(), max_size=3), st.dictionaries(key, inner, max_size=5)),
        max_leaves=20)
