"""One `ray start` cluster for every end-to-end test (the CLI and job
tests, the HTTP API and the client): starting one costs tens of seconds, so
the tests share it, each in a namespace of its own. It is the package's
(tests/e2e/), not the session's: stopped once the last end-to-end test is
done, not left idle for the rest of the run (an idle head with its
dashboard takes about 6% of a core)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import ray_head


@pytest.fixture(scope="package")
def cluster() -> Iterator[dict]:
    try:
        with ray_head() as info:
            yield info
    except RuntimeError as exc:
        pytest.fail(str(exc))
