"""One `ray start` cluster for every end-to-end test of the session (the
CLI and job tests, the HTTP API and the client): starting one costs tens of
seconds, so the tests share it, each in a namespace of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import ray_head


@pytest.fixture(scope="session")
def cluster() -> Iterator[dict]:
    try:
        with ray_head() as info:
            yield info
    except RuntimeError as exc:
        pytest.fail(str(exc))
