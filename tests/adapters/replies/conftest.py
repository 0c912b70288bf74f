"""Fixtures of the reply_fetching tests (the Dovecot helpers live in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def gmail_sandbox() -> Iterator[Any]:
    from actors.sandbox.base import SandboxRunner
    from actors.sandbox.gmail_api import GmailApiStandIn

    runner = SandboxRunner([GmailApiStandIn()]).start()
    yield runner
    runner.stop()
