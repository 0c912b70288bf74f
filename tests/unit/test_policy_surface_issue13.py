"""The public surface of the policy modules of issue 13 is what `__all__`
says (the rule of tests/unit/test_public_surface.py, for modules it does
not list yet): every exported name exists, every public class and function
a module defines is exported, and the list is sorted."""

from __future__ import annotations

import importlib
import types

import pytest

MODULES = ["actors.policy.skips", "actors.policy.candidate", "actors.policy.recommendation",
           "actors.policy.outliers.detection", "actors.policy.outliers.demotion", "actors.policy.outliers.config",
           "actors.policy.cost.quota", "actors.policy.cost.config", "actors.policy.chaos.faults",
           "actors.policy.chaos.config"]


@pytest.mark.parametrize("name", MODULES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    assert all(hasattr(module, member) for member in module.__all__)
    defined = {m for m, v in vars(module).items() if not m.startswith("_")
               and isinstance(v, (type, types.FunctionType)) and v.__module__ == name}
    assert defined <= set(module.__all__), defined - set(module.__all__)
    assert module.__all__ == sorted(module.__all__, key=lambda m: (not m.isupper(), m))


@pytest.mark.parametrize("name", ["actors.policy.skips", "actors.policy.candidate", "actors.policy.ranking",
                                  "actors.policy.outliers.detection", "actors.policy.outliers.demotion",
                                  "actors.policy.cost.quota", "actors.policy.chaos.faults"])
def test_pure_policy_imports_neither_ray_nor_pydantic(name: str) -> None:
    module = importlib.import_module(name)
    imported = {v.__name__.split(".")[0] for v in vars(module).values() if isinstance(v, types.ModuleType)}
    assert not imported & {"ray", "pydantic", "time", "asyncio"}
    source = open(module.__file__).read()
    for forbidden in ("import ray", "from ray", "pydantic", "import time", "time.time", "import random", "datetime.now"):
        assert forbidden not in source, forbidden
