"""What a test does when a real part it needs (PostgreSQL, mount namespaces)
is missing here: fail in CI, where it must be installed, skip elsewhere."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(reason: str | None, what: str) -> None:
    """`reason`: why the part cannot run (None: it can), with what to install."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true: {reason}", pytrace=False)
    pytest.skip(reason)
