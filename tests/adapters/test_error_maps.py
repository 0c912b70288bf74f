"""Each client library's exceptions are mapped, in one table per library
(actors/adapters/errormap.py), as httpx checks its map of httpcore's
(test_httpcore_all_exceptions_mapped): an exception the library exports
that its table does not name fails here, so a new version of the library
forces a decision instead of a silent `crashed`."""

from __future__ import annotations

import importlib
import ssl
from types import ModuleType

import pytest

from actors.adapters.email.smtp import SmtpSettings
from actors.adapters.email.smtp_errors import AIOSMTPLIB_ERRORS, SmtpCall
from actors.adapters.errormap import RAISE, ExceptionMap
from actors.adapters.http import HTTPX_ERRORS, HttpCall
from actors.adapters.replies.imap_session import AIOIMAPLIB_ERRORS, ImapCall
from actors.errors import AttemptTimeout, MalformedResponse, ProviderRejected, TransientError

TABLES: dict[str, tuple[ExceptionMap, list[str]]] = {
    "httpx": (HTTPX_ERRORS, ["httpx"]),
    "aiosmtplib": (AIOSMTPLIB_ERRORS, ["aiosmtplib", "aiosmtplib.errors"]),
    "aioimaplib": (AIOIMAPLIB_ERRORS, ["aioimaplib", "aioimaplib.aioimaplib"]),
}


def exported_exceptions(library: str, modules: list[str]) -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in modules:
        module: ModuleType = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) \
                    and value.__module__.partition(".")[0] == library:
                found[value.__name__] = value
    return found


@pytest.mark.parametrize("library", sorted(TABLES))
def test_every_exception_a_library_exports_is_mapped(library: str) -> None:
    table, modules = TABLES[library]
    exported = exported_exceptions(library, modules)
    assert len(exported) >= 5
    assert sorted(set(exported) - set(table.by_name)) == [], f"unmapped {library} exceptions"
    assert sorted(set(table.by_name) - set(exported)) == [], f"{library} no longer exports these"


def test_the_most_specific_entry_wins() -> None:
    import httpx

    request = httpx.Request("GET", "https://api.example.com/")
    at = HttpCall("p", httpx.AsyncClient(timeout=3))
    connect = HTTPX_ERRORS.translate(httpx.ConnectTimeout("slow", request=request), at)
    read = HTTPX_ERRORS.translate(httpx.ReadTimeout("slow", request=request), at)
    assert isinstance(connect, AttemptTimeout) and not connect.maybe_delivered
    assert isinstance(read, AttemptTimeout) and read.maybe_delivered
    assert isinstance(HTTPX_ERRORS.translate(httpx.ConnectError("refused", request=request), at), TransientError)


def test_raise_marks_a_bug_raised_as_is() -> None:
    import httpx

    with pytest.raises(httpx.InvalidURL):
        HTTPX_ERRORS.translate(httpx.InvalidURL("no"), HttpCall("p", None))
    with pytest.raises(KeyError):
        AIOIMAPLIB_ERRORS.translate(KeyError("ours"), ImapCall("p", "fetch", 1.0))
    assert HTTPX_ERRORS.by_name["InvalidURL"] is RAISE


def test_a_provider_error_passes_through_and_an_unknown_exception_is_raised() -> None:
    ours = ProviderRejected("p: no")
    assert AIOSMTPLIB_ERRORS.translate(ours, SmtpCall("p", "mail", None)) is ours
    with pytest.raises(ZeroDivisionError):
        AIOSMTPLIB_ERRORS.translate(ZeroDivisionError(), SmtpCall("p", "mail", None))


def test_the_stage_decides_whether_it_may_have_been_delivered() -> None:
    import aiosmtplib

    settings = SmtpSettings(host="smtp.example.com")
    before = AIOSMTPLIB_ERRORS.translate(aiosmtplib.SMTPServerDisconnected("gone"), SmtpCall("p", "rcpt", settings))
    after = AIOSMTPLIB_ERRORS.translate(aiosmtplib.SMTPServerDisconnected("gone"), SmtpCall("p", "data", settings))
    assert not before.maybe_delivered and after.maybe_delivered


def test_builtin_and_tls_errors_reach_the_tables_too() -> None:
    at = ImapCall("p", "fetch", 1.0)
    assert isinstance(AIOIMAPLIB_ERRORS.translate(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), at), MalformedResponse)
    tls = ssl.SSLError(1, "bad record")
    tls.reason = "WRONG_VERSION_NUMBER"  # as OpenSSL sets it
    assert "TLS failed at fetch: WRONG_VERSION_NUMBER" in AIOIMAPLIB_ERRORS.translate(tls, at).message
