"""The public surface is what `__all__` says, as httpx checks its own:
every exported name exists, and every public name a module defines or
imports for its users is exported (submodules aside)."""

from __future__ import annotations

import importlib
import types

import pytest

MODULES = ["actors.client", "actors.client.gateway", "actors.client.resend", "actors.client.cluster", "actors.client.direct", "actors.names",
           "actors.http.app", "actors.http.auth", "actors.http.problems", "actors.http.openapi",
           "actors.policy.retry_after"]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert all(hasattr(module, member) for member in module.__all__)
    if name == "actors.client":   # a package: everything it holds is for its users
        public = {m for m, v in vars(module).items() if not m.startswith("_") and not isinstance(v, types.ModuleType)}
        assert set(module.__all__) == public
    else:                          # a module: every public class and function it defines
        defined = {m for m, v in vars(module).items() if not m.startswith("_")
                   and isinstance(v, (type, types.FunctionType)) and v.__module__ == name}
        assert defined <= set(module.__all__), defined - set(module.__all__)
    assert module.__all__ == sorted(module.__all__, key=lambda m: (not m.isupper(), m))


def test_every_request_error_is_importable_from_the_client() -> None:
    import actors.client
    from actors.errors import REQUEST_ERROR_BY_KIND

    for cls in REQUEST_ERROR_BY_KIND.values():
        assert getattr(actors.client, cls.__name__) is cls
