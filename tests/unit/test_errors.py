"""One hierarchy of errors (actors/errors.py): every exception class the
package defines is a GatewayError and is drawn in the module's docstring;
error kinds come at two levels whose wire values do not change."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import actors
from actors.errors import ATTEMPT_KINDS, REQUEST_KINDS, ErrorKind, GatewayError
import actors.errors as errors

# What users, the CLI and the HTTP API read: renaming one breaks them.
WIRE_VALUES = {
    "invalid_request", "unknown_method", "all_providers_failed", "deadline_exceeded", "no_available_provider",
    "retry_budget_exhausted", "outcome_unknown", "store_unavailable", "idempotency_key_reused", "gateway_unavailable",
    "transient", "timeout", "rate_limited", "auth", "not_supported", "malformed_response", "crashed", "unavailable",
    "cancelled", "suppressed",
}


def package_modules() -> list[str]:
    """Every module of the product (the stand-ins of actors.sandbox are not)."""
    return sorted(m.name for m in pkgutil.walk_packages(actors.__path__, "actors.")
                  if not m.name.startswith("actors.sandbox"))


def test_every_exception_the_package_defines_is_a_gateway_error() -> None:
    outside = []
    for name in package_modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name \
                    and not issubclass(value, GatewayError):
                outside.append(f"{name}.{value.__qualname__}")
    assert outside == []


def test_the_docstring_draws_every_public_error() -> None:
    drawn = errors.__doc__ or ""
    defined = [n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, GatewayError)]
    assert len(defined) > 30
    assert [n for n in defined if f" {n} " not in drawn and not drawn.rstrip().endswith(n)] == []


def test_kinds_come_at_two_levels_and_keep_their_wire_values() -> None:
    assert {k.value for k in ErrorKind} == WIRE_VALUES
    assert REQUEST_KINDS | ATTEMPT_KINDS == set(ErrorKind)
    assert REQUEST_KINDS & ATTEMPT_KINDS == {ErrorKind.INVALID_REQUEST, ErrorKind.RATE_LIMITED,
                                             ErrorKind.OUTCOME_UNKNOWN, ErrorKind.STORE_UNAVAILABLE}


def test_the_old_homes_of_moved_errors_still_name_them() -> None:
    from actors.adapters.registry import UnknownAdapter
    from actors.cli.connect import CliError
    from actors.durable.location import InvalidStateUrl
    from actors.http.deployment import HttpDeployError
    from actors.ops.hooks import HookError
    from actors.payloads import PayloadError
    from actors.router.coalesce import WrongReplyCount

    assert {UnknownAdapter, CliError, InvalidStateUrl, HttpDeployError, HookError, PayloadError, WrongReplyCount} <= \
        {v for v in vars(errors).values() if inspect.isclass(v)}
    assert issubclass(PayloadError, ValueError) and issubclass(UnknownAdapter, LookupError)
