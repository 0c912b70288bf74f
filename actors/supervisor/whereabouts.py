"""Where each of the gateway's actors runs, for `status`: its node, and
whether that node is the head (an actor there does not outlive the head's
loss). Each actor is asked (`node_id`, through the handle held: no GCS
needed); the nodes are the directory's last answer from the GCS, so while the
head is down `status` still says where everything was."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from actors.messages import ActorNode
from actors.ops.cluster_nodes import NodeView
from actors.specs import SUPERVISOR_NAME, GatewaySpec
from actors.supervisor.status import Lookup

__all__ = ["Whereabouts"]

# An actor that does not say where it is within this long is shown where it was.
WHERE_TIMEOUT_S = 2.0


class Whereabouts:
    def __init__(self, spec: GatewaySpec, actor: Lookup, own_node: Callable[[], str],
                 refresh_nodes: Callable[[], Awaitable[bool]], nodes: Callable[[], list[NodeView]]):
        self._names = [c.actor_name for c in spec.capabilities] + [p.actor_name for c in spec.capabilities
                                                                    for p in c.providers]
        self._actor = actor
        self._own_node = own_node
        self._refresh_nodes = refresh_nodes
        self._nodes = nodes
        self._known: dict[str, str] = {}

    async def report(self) -> tuple[dict[str, ActorNode], int]:
        async def one(name: str) -> str | None:
            try:
                return await asyncio.wait_for(self._actor(name).node_id.remote(), WHERE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - not answering now: shown where it was last
                return None

        answers = await asyncio.gather(*(one(n) for n in self._names), self._refresh_nodes())
        found = dict(zip(self._names, answers[:-1], strict=True))
        found[SUPERVISOR_NAME] = self._own_node()
        nodes = {n.node_id: n for n in self._nodes()}
        out: dict[str, ActorNode] = {}
        for name in [SUPERVISOR_NAME, *self._names]:
            node_id = found.get(name)
            answered = node_id is not None
            if node_id is None:
                node_id = self._known.get(name)
                if node_id is None:
                    continue
            self._known[name] = node_id
            view = nodes.get(node_id)
            out[name] = ActorNode(node_id=node_id, address=view.address if view else "",
                                  head=view.is_head if view else False, answered=answered)
        return out, len(nodes)
