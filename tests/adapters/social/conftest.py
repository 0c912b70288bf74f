"""Fixtures for the social_posting adapter tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    """The three stand-ins on loopback, once per module; reset before each use by the test."""
    from actors.sandbox.ayrshare import AyrshareStandIn
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.linkedin import LinkedInStandIn
    from actors.sandbox.x import XStandIn

    runner = SandboxRunner([LinkedInStandIn(), XStandIn(), AyrshareStandIn()]).start()
    yield runner
    runner.stop()
