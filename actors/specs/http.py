"""What the HTTP ingress (actors/http) is built from: its spec, made from
the config by `up` (build_http_spec). API keys travel only as digests."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import SecretStr

from actors.specs import StateSpec, _longest_deadline, state_spec

if TYPE_CHECKING:
    from actors.config import GatewayConfig

__all__ = ["EventSourceSpec", "HttpSpec", "build_http_spec", "key_digest"]


class EventSourceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A provider whose signed delivery events the HTTP API takes in."""

    capability: str
    provider: str
    adapter: str
    verification_key: SecretStr
    suppress: bool = True            # capabilities.X.delivery.suppress_hard_bounces


class HttpSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the HTTP ingress (actors/http) is built from. API keys travel
    only as SHA-256 digests: the keys themselves never leave `up`."""

    namespace: str
    host: str
    port: int
    key_digests: list[str]
    capabilities: list[str]
    num_replicas: int = 1
    max_ongoing_requests: int = 256
    direct_reads: bool = False
    ray_options: dict[str, Any] = {}  # the routers' placement: the replicas follow them (off the head)
    avoid_head: str = "auto"
    # capability -> the longest X-Deadline-S honoured (routing.max_deadline_s, else routing.deadline_s)
    max_deadline_s: dict[str, float] = {}
    # Delivery events (actors/events): the providers that post them, and the store they are kept in.
    event_sources: list[EventSourceSpec] = []
    state: StateSpec | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def build_http_spec(cfg: GatewayConfig) -> HttpSpec | None:
    """None when the config leaves the HTTP API off."""
    http = cfg.http
    if not http.enabled:
        return None
    return HttpSpec(namespace=cfg.namespace, host=http.host, port=http.port,
                    key_digests=[key_digest(k.get_secret_value()) for k in http.api_keys],
                    capabilities=list(cfg.capabilities), num_replicas=http.num_replicas,
                    max_ongoing_requests=http.max_ongoing_requests, direct_reads=http.direct_reads,
                    ray_options=cfg.placement.routers.ray_options(), avoid_head=cfg.placement.avoid_head,
                    max_deadline_s={cap: _longest_deadline(cfg.capability_policy(cap)) for cap in cfg.capabilities},
                    event_sources=[EventSourceSpec(capability=cap, provider=p.name, adapter=p.adapter,
                                                   verification_key=p.events.verification_key,
                                                   suppress=c.delivery.suppress_hard_bounces)
                                   for cap, c in cfg.capabilities.items() for p in c.providers if p.events],
                    state=state_spec(cfg))
