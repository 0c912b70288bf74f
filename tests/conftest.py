"""Shared fixtures. One real local Ray cluster per test session (started only
if a test asks for it); each test deploys its own gateway into a namespace of
its own and removes it afterwards. One real PostgreSQL server per session,
likewise started only when a test asks for it (`postgres`, `postgres_database`),
and one Redis (`redis`) for clusters whose GCS is fault tolerant.
Multi-node clusters whose nodes do not share a disk come from `ray_nodes`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.require import require

IN_CI = os.environ.get("CI", "").lower() == "true"

# `make test-unit` runs every test but these: a test that starts or joins a
# Ray cluster must say so with one of them.
RAY_MARKERS = ("ray", "e2e", "nodes")
RAY_FIXTURES = ("ray_cluster", "ray_nodes", "gateway")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items
                if set(getattr(item, "fixturenames", ())) & set(RAY_FIXTURES)
                and not any(item.get_closest_marker(m) for m in RAY_MARKERS)]
    if unmarked:
        raise pytest.UsageError("tests that use a Ray cluster without a ray, e2e or nodes marker "
                                f"(make test-unit would run them): {', '.join(unmarked)}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server for the whole session (tests/support/postgres.py):
    `.url` (no password), `.password`, `.env`, `.create_database(name)`,
    `.restart()`, `.kill()`, `.down()`. A test that stops or kills it must
    leave it running again (`start()`), as `down()` does."""
    from tests.support.postgres import PostgresServer, unavailable_reason

    require(unavailable_reason(), "PostgreSQL")
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis() -> Iterator[Any]:
    """A real Redis server for the whole session (tests/support/redis.py):
    `.address` (what RAY_REDIS_ADDRESS takes), `.command(...)`, `.kill()`.
    Clusters that keep their GCS in it (GcsStorage.redis) each take a
    namespace of their own (RAY_external_storage_namespace)."""
    from tests.support.redis import RedisServer, unavailable_reason

    require(unavailable_reason(), "redis-server")
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_database(postgres: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh database of its own for one test (`.url`, `.password`, `.env`,
    `.conninfo`), dropped afterwards."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    database = postgres.create_database(name)
    yield database
    if postgres.running:
        postgres.drop_database(name)


@pytest.fixture(scope="session")
def ray_metrics_port() -> int:
    """Where the session's Ray cluster serves Prometheus metrics: a test sees
    a metric as an operator's scraper would."""
    from tests.support.nodes import free_ports

    return free_ports(1)[0]


@pytest.fixture(scope="session")
def ray_cluster(ray_metrics_port: int) -> Iterator[Any]:
    import logging

    import ray

    # address="local": never join a stale cluster named in /tmp/ray/ray_current_cluster.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, namespace="aicmo-tests", _metrics_export_port=ray_metrics_port)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_nodes() -> Iterator[Any]:
    """`ray_nodes(isolated=True, **RayNodes kwargs) -> RayNodes`: starts a
    `ray start` cluster's head (tests/support/nodes.py; add nodes with
    `.add_node`), shut down with everything on it at the end of the module.
    `isolated`: the test gives nodes private directories, which needs mount
    namespaces (root); without, only Ray is needed. A node takes seconds to
    start: share one cluster per module. Drive it with `.run_driver(code)`
    and `.cli(...)`: this process is on the session's own cluster
    (`ray_cluster`) and cannot join a second one."""
    from tests.support.nodes import RayNodes, unavailable_reason

    clusters: list[Any] = []

    def start(isolated: bool = True, **kwargs: Any) -> Any:
        require(unavailable_reason(private_dirs=isolated), "Ray nodes with private directories" if isolated else "ray start")
        cluster = RayNodes(**kwargs)
        clusters.append(cluster)
        return cluster.start()

    yield start
    for cluster in clusters:
        cluster.shutdown()


class Gateway:
    """A gateway deployed for one test, reached through the Python client
    (`client`); provider actors by their name."""

    def __init__(self, ray: Any, namespace: str, state: Any = None):
        from actors.client import Gateway as Client

        self.ray = ray
        self.namespace = namespace
        self.state = state  # its StateSpec (actors/specs/): a test reads what the actors stored
        self.client = Client(namespace)

    def router(self, capability: str) -> Any:
        return self.client.router(capability)

    def provider(self, capability: str, name: str) -> Any:
        from actors.names import provider_name

        return self.ray.get_actor(provider_name(capability, name), namespace=self.namespace)

    @property
    def supervisor(self) -> Any:
        return self.client.supervisor()

    def invoke(self, capability: str, method: str, payload: Any, **options: Any) -> Any:
        return self.client.invoke(capability, method, payload, **options)

    def teardown(self) -> None:
        from actors.deploy.gateway import teardown

        teardown(self.namespace)


@pytest.fixture
def gateway(ray_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """`deploy(config_dict, namespace=None) -> Gateway`: deploys non-detached
    actors with a state directory of their own, removed after the test.
    Deploying again into the same namespace keeps its state (a restart)."""
    from actors.config import parse_config
    from actors.deploy.gateway import deploy as deploy_spec
    from actors.deploy.gateway import teardown
    from actors.specs import build_spec

    namespaces: dict[str, str] = {}

    def deploy(config: dict[str, Any], namespace: str | None = None) -> Gateway:
        namespace = namespace or f"t-{uuid.uuid4().hex[:10]}"
        if namespace not in namespaces:
            namespaces[namespace] = str(tmp_path_factory.mktemp("state"))
        config = {"state": {"url": namespaces[namespace]}, **config, "namespace": namespace}
        config.setdefault("supervisor", {"check_interval_s": 0, "drain_interval_s": 0})
        spec = build_spec(parse_config(config, "<test>"))
        deploy_spec(spec, detached=False)
        return Gateway(ray_cluster, namespace, spec.state)

    yield deploy
    for namespace in namespaces:
        teardown(namespace)
