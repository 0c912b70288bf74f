"""The shared parser: many message shapes into the contract's reply record."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.adapters.replies._mail_parsing import html_to_text, iso_utc, parse_reply, parse_time
from tests.adapters.replies.helpers import corpus, message

CONTRACT_KEYS = {"message_id", "from_addr", "subject", "text", "in_reply_to", "received_at"}
ARRIVED = datetime(2026, 2, 1, 9, 30, 5, tzinfo=timezone.utc)


def by_key() -> dict[str, bytes]:
    return {s.key: s.raw for s in corpus()}


def test_a_plain_reply_has_every_contract_field() -> None:
    reply = parse_reply(message(), received_at=ARRIVED)
    assert CONTRACT_KEYS <= set(reply)
    assert reply["message_id"] == "<r1@lead.example>"
    assert reply["from_addr"] == "bob@lead.example" and reply["from_name"] == "Bob Lead"
    assert reply["subject"] == "Re: Hello"
    assert reply["text"] == "Thanks, sounds good."
    assert reply["in_reply_to"] == "<welcome-1@ann.example>"
    assert reply["references"] == ["<welcome-1@ann.example>"]
    assert reply["to"] == ["ann@example.com"]
    assert reply["received_at"] == "2026-02-01T09:30:05Z"  # the provider's arrival time wins
    assert reply["date"] == "2026-02-01T09:30:00Z"


def test_without_an_arrival_time_the_date_header_is_used_in_utc() -> None:
    reply = parse_reply(by_key()["encoded"])
    assert reply["received_at"] == "2026-02-01T10:00:00Z"  # Date: 11:00 +0100


def test_encoded_words_and_a_latin1_quoted_printable_body_are_decoded() -> None:
    reply = parse_reply(by_key()["encoded"])
    assert reply["from_name"] == "Renée Lefèvre" and reply["from_addr"] == "renee@lead.example"
    assert reply["subject"] == "Re: Déjà vu — привет"
    assert reply["text"] == "Très bien, merci."


def test_an_html_only_message_is_reduced_to_text() -> None:
    reply = parse_reply(by_key()["html-only"])
    assert reply["text"] == "Yes please!\n\nCall me tomorrow."  # paragraphs stay apart


def test_multipart_alternative_prefers_the_plain_part() -> None:
    raw = message(text="Plain words.", html="<p>Rich <i>words</i>.</p>")
    assert parse_reply(raw)["text"] == "Plain words."


def test_attachments_are_not_the_text() -> None:
    raw = (b"From: a@lead.example\r\nSubject: files\r\nMessage-ID: <att@x>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
           b"--XX\r\nContent-Type: text/plain; name=notes.txt\r\nContent-Disposition: attachment; filename=notes.txt\r\n\r\n"
           b"attached notes\r\n"
           b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe real answer.\r\n--XX--\r\n")
    assert parse_reply(raw)["text"] == "The real answer."


def test_base64_body_in_utf8() -> None:
    raw = (b"From: a@lead.example\r\nSubject: b64\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + __import__("base64").encodebytes("Grüße aus Köln".encode()))
    assert parse_reply(raw)["text"] == "Grüße aus Köln"


def test_an_unknown_charset_still_gives_text() -> None:
    raw = (b"From: a@lead.example\r\nSubject: odd\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
           b"hello \xff world\r\n")
    text = parse_reply(raw)["text"]
    assert text.startswith("hello") and text.endswith("world")


def test_missing_headers_give_none_and_the_fallback_id() -> None:
    reply = parse_reply(b"\r\njust a body\r\n", fallback_id="imap-uid-7")
    assert reply["message_id"] == "imap-uid-7"
    assert reply["from_addr"] is None and reply["in_reply_to"] is None and reply["received_at"] is None
    assert reply["subject"] == "" and reply["text"] == "just a body"


def test_garbage_headers_never_raise() -> None:
    raw = (b"From: \"unterminated <broken@@\r\nSubject: =?utf-8?q?bad=ZZ?=\r\nDate: not a date\r\n"
           b"In-Reply-To: no-brackets-id\r\nMessage-ID: also-bad\r\n\r\nbody\r\n")
    reply = parse_reply(raw)
    assert reply["received_at"] is None and reply["date"] is None
    assert reply["in_reply_to"] == "no-brackets-id" and reply["message_id"] == "also-bad"
    assert reply["text"] == "body"


def test_folded_headers_are_unfolded() -> None:
    raw = b"From: a@lead.example\r\nSubject: Re: a very\r\n long subject\r\nMessage-ID: <f@x>\r\n\r\nx\r\n"
    assert parse_reply(raw)["subject"] == "Re: a very long subject"


def test_html_to_text_drops_scripts_and_styles_and_decodes_entities() -> None:
    markup = "<html><head><style>p{}</style><title>t</title></head><body>A&amp;B<br>C<script>evil()</script></body></html>"
    assert html_to_text(markup) == "A&B\nC"


def test_iso_utc_and_parse_time_agree() -> None:
    assert iso_utc(datetime(2026, 2, 1, 10, 0, tzinfo=timezone.utc)) == "2026-02-01T10:00:00Z"
    assert iso_utc(datetime(2026, 2, 1, 10, 0)) == "2026-02-01T10:00:00Z"  # naive is UTC
    assert parse_time("2026-02-01T11:00:00+01:00") == parse_time("2026-02-01T10:00:00Z")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_parse_without_raising(raw: bytes) -> None:
    reply = parse_reply(raw)
    assert CONTRACT_KEYS <= set(reply)
    assert isinstance(reply["text"], str) and isinstance(reply["subject"], str)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_any_subject_and_body_round_trip(subject: str, body: str) -> None:
    subject = " ".join(subject.split())
    raw = message(subject=subject, text=body + "\n")
    reply = parse_reply(raw)
    assert reply["subject"] == subject
    assert reply["text"] == body.replace("\r\n", "\n").replace("\r", "\n").strip()
