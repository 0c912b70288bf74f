"""The HTTP API on Ray Serve: the ingress deployment, and deploying or
removing it (`aicmo-gateway up` / `down`).

Each gateway's API is one Serve application (actors.names.http_app_name) at
route prefix `/`. Serve runs one HTTP proxy per cluster node on one port,
so a cluster carries the HTTP API of one gateway: `up` refuses a second
with a message that says which one holds it.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from ray import serve
from ray.serve.exceptions import RayServeException

from actors.errors import HttpDeployError
from actors.names import HTTP_APP_PREFIX, http_app_name
from actors.specs.http import HttpSpec

__all__ = ["HttpDeployError", "HttpIngress", "deploy_http", "ingress_app", "remove_http", "replica_options"]



@serve.ingress()
class HttpIngress:
    """A Serve replica: the Starlette app of actors/http/app.py over a
    client Gateway in the spec's namespace (this replica is already a Ray
    driver, so the client uses its connection)."""

    def __init__(self, spec: HttpSpec):
        from actors.client import Gateway

        self._spec = spec
        self._gateway = Gateway(spec.namespace, direct_reads=spec.direct_reads)

    def __serve_build_asgi_app__(self) -> Any:
        from actors.http.app import build_app

        return build_app(self._gateway, capabilities=self._spec.capabilities, key_digests=self._spec.key_digests,
                         max_deadline_s=self._spec.max_deadline_s, events=self._events())

    def _events(self) -> Any:
        """Delivery events and request timelines, over the gateway's store."""
        if self._spec.state is None:
            return None
        from actors.http.events import EventsEndpoint, EventSource
        from actors.specs import open_spec_store

        sources = [EventSource(capability=s.capability, provider=s.provider, adapter=s.adapter,
                               verification_key=s.verification_key.get_secret_value(), suppress=s.suppress)
                   for s in self._spec.event_sources]
        return EventsEndpoint(sources, open_spec_store(self._spec.state), capabilities=self._spec.capabilities)


def replica_options(spec: HttpSpec) -> dict[str, Any]:
    """The replicas' Ray options: the routers' placement (`up` adds the label
    selector that keeps them off the head, actors/deploy/placement.py)."""
    # The ingress waits on routers; like the gateway's actors it reserves no CPU.
    return {**spec.ray_options, "num_cpus": 0}


def ingress_app(spec: HttpSpec, actor_options: dict[str, Any] | None = None) -> Any:
    """The ingress as a Serve application, ready for serve.run."""
    options = replica_options(spec) if actor_options is None else actor_options
    ingress = serve.deployment(
        HttpIngress, name="ingress", num_replicas=spec.num_replicas,
        max_ongoing_requests=spec.max_ongoing_requests, ray_actor_options=options)
    return ingress.bind(spec)


def _wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"/healthz answered {exc.code}"
        except OSError as exc:
            last = f"nothing answers at {url}: {exc}"
        time.sleep(0.5)
    raise HttpDeployError(f"the HTTP API did not become healthy at {url} within {timeout_s:.0f}s ({last}).\n"
                          "  If Serve already ran on this cluster with other HTTP options, it keeps them: "
                          "match http.host and http.port to it, or restart Serve (`serve shutdown`).")


def deploy_http(spec: HttpSpec, timeout_s: float = 120.0, actor_options: dict[str, Any] | None = None) -> str:
    """Start Serve on the spec's host and port if it is not running, deploy
    (or update) the ingress, wait until /healthz answers 200; the base URL."""
    name = http_app_name(spec.namespace)
    serve.start(http_options={"host": spec.host, "port": spec.port})
    try:
        serve.run(ingress_app(spec, actor_options), name=name, route_prefix="/", blocking=False)
    except RayServeException as exc:  # e.g. another application holds route prefix `/`
        first = str(exc).strip().splitlines()[0]
        holder = next((a for a in serve.status().applications if a.startswith(HTTP_APP_PREFIX) and a != name), None)
        hint = (f" Remove it with `aicmo-gateway down --namespace {holder.removeprefix(HTTP_APP_PREFIX)}`, or turn "
                "http.enabled off in this config." if holder else "")
        raise HttpDeployError(f"cannot deploy the HTTP API: {first}. One cluster carries one gateway's HTTP API "
                              f"(Serve has one HTTP port per cluster).{hint}") from None
    _wait_healthy(spec.url, timeout_s)
    return spec.url


def remove_http(namespace: str) -> bool:
    """Delete the gateway's Serve application; False when there was none.
    Serve itself keeps running (other applications may use it)."""
    name = http_app_name(namespace)
    try:
        apps = serve.status().applications
    except Exception:  # noqa: BLE001 - Serve was never started on this cluster
        return False
    if name not in apps:
        return False
    serve.delete(name)
    return True
