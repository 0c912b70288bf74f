"""Fixtures for the webhook_dispatch adapter tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    """The two stand-ins on loopback, once per module; reset before each use by the test."""
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.make import MakeStandIn
    from actors.sandbox.webhook import WebhookReceiverStandIn

    runner = SandboxRunner([MakeStandIn(), WebhookReceiverStandIn()]).start()
    yield runner
    runner.stop()
