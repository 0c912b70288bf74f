"""A client library's exceptions as our error kinds, by one table per library
(as httpx maps httpcore's with HTTPCORE_EXC_MAP).

A table names every exception class the library exports (by name, so the
library is imported only by the provider actors that use it), plus the
builtin and `ssl` exceptions that reach us through it, each with the rule
that turns it into a ProviderError. The most specific entry wins: the first
class of the exception's MRO that the table holds. A rule reads the stage
the call was at (e.g. before or after SMTP's DATA), which decides whether
the request may have been delivered. `RAISE` marks an exception that means
a bug (ours or the library's): it is raised as is, and the provider actor
counts it as `crashed`, never against the provider.

tests/adapters/test_error_maps.py fails when a library exports an exception
its table does not name: a new library version forces a decision.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from actors.errors import ErrorKind, ProviderError

__all__ = ["RAISE", "ExceptionMap", "Rule", "classify"]

W = TypeVar("W")  # what a rule needs to know of the call: provider, stage, settings

Rule = Callable[[BaseException, Any], ProviderError]


def _raise(exc: BaseException, where: Any) -> ProviderError:
    raise exc


RAISE: Rule = _raise


@dataclass(frozen=True)
class ExceptionMap(Generic[W]):
    library: str                                   # the top-level module, e.g. "aiosmtplib"
    by_name: dict[str, Rule]                       # the library's exception classes, by name
    others: dict[type[BaseException], Rule] = field(default_factory=dict)   # builtins and ssl

    def rule(self, exc: BaseException) -> Rule | None:
        for cls in type(exc).__mro__:
            if cls.__module__.partition(".")[0] == self.library and cls.__name__ in self.by_name:
                return self.by_name[cls.__name__]
            if cls in self.others:
                return self.others[cls]
        return None

    def translate(self, exc: BaseException, where: W) -> ProviderError:
        """Our error for `exc`; an exception the table does not cover, or
        marks RAISE, is raised as is. A ProviderError (raised by our own code
        inside the call) passes through untouched."""
        if isinstance(exc, ProviderError):
            return exc
        rule = self.rule(exc)
        if rule is None:
            raise exc
        return rule(exc, where)


def classify(exc: BaseException) -> tuple[ErrorKind, str, float | None, bool]:
    """Sort an exception raised by an attempt into our closed set of kinds:
    (kind, message, retry_after_s, maybe_delivered)."""
    if isinstance(exc, ProviderError):
        return exc.kind, exc.message, exc.retry_after_s, exc.maybe_delivered
    if isinstance(exc, asyncio.TimeoutError):
        # Cut off mid-call: the adapter may have sent the request already.
        return ErrorKind.TIMEOUT, "no answer within the attempt's time", None, True
    return ErrorKind.CRASHED, f"adapter raised {type(exc).__name__}: {exc}", None, True
