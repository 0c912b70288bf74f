"""The placement decision (actors/deploy/placement.py): off the head node when
a worker can host the actor, with hand-built node snapshots (no Ray)."""

from __future__ import annotations

import pytest

from actors.config.schema import ActorPlacement, PlacementConfig
from actors.deploy.placement import (
    HEAD_RESOURCE,
    NODE_ID_LABEL,
    AvoidHead,
    HeadAllowed,
    NodeView,
    NoPlace,
    OnWorkers,
    decide,
    label_matches,
    options_for,
    snapshot,
)

HEAD = NodeView("h" * 8, True, {HEAD_RESOURCE: 1.0, "memory": 8e9}, address="10.0.0.1")
W = NodeView("w" * 8, False, {"CPU": 2.0, "gw": 100.0, "memory": 8e9}, {"pool": "gateway"}, address="10.0.0.2")
V = NodeView("v" * 8, False, {"CPU": 1.0, "memory": 8e9}, address="10.0.0.3")
ZERO_CPU = {"num_cpus": 0}


def test_a_zero_cpu_actor_is_kept_off_the_head_of_a_multi_node_cluster() -> None:
    placement = decide([HEAD, W, V], ZERO_CPU, AvoidHead.AUTO)
    assert placement == OnWorkers((HEAD.node_id,))
    assert options_for(ZERO_CPU, placement) == {"num_cpus": 0, "label_selector": {NODE_ID_LABEL: f"!{HEAD.node_id}"}}


def test_a_single_node_cluster_keeps_the_head() -> None:
    placement = decide([HEAD], ZERO_CPU, AvoidHead.AUTO)
    assert isinstance(placement, HeadAllowed) and "no worker node" in placement.reason
    assert options_for(ZERO_CPU, placement) == ZERO_CPU


def test_no_worker_offering_the_resource_allows_the_head_and_says_what_was_asked() -> None:
    pinned = {"num_cpus": 0, "resources": {HEAD_RESOURCE: 0.01}}  # a supervisor pinned to the head
    placement = decide([HEAD, W], pinned, AvoidHead.AUTO)
    assert isinstance(placement, HeadAllowed)
    assert HEAD_RESOURCE in placement.reason
    assert options_for(pinned, placement) == pinned


def test_always_refuses_where_auto_would_use_the_head() -> None:
    assert isinstance(decide([HEAD], ZERO_CPU, AvoidHead.ALWAYS), NoPlace)
    assert isinstance(decide([HEAD, W], {"num_cpus": 4}, AvoidHead.ALWAYS), NoPlace)
    assert decide([HEAD, W], ZERO_CPU, AvoidHead.ALWAYS) == OnWorkers((HEAD.node_id,))


def test_never_leaves_the_choice_to_ray() -> None:
    assert decide([HEAD, W], ZERO_CPU, AvoidHead.NEVER) == HeadAllowed("placement.avoid_head is never")


@pytest.mark.parametrize("options,on_workers", [
    ({"num_cpus": 0, "resources": {"gw": 0.01}}, True),
    ({"num_cpus": 0, "resources": {"gw": 200.0}}, False),
    ({"num_cpus": 2}, True),
    ({"num_cpus": 3}, False),
    ({"num_cpus": 0, "memory": 16e9}, False),
    ({"num_cpus": 0, "label_selector": {"pool": "gateway"}}, True),
    ({"num_cpus": 0, "label_selector": {"pool": "batch"}}, False),
    ({"num_cpus": 0, "label_selector": {"pool": "in(batch,gateway)"}}, True),
])
def test_a_worker_must_offer_what_the_placement_asks_for(options, on_workers) -> None:
    assert isinstance(decide([HEAD, W, V], options, AvoidHead.AUTO), OnWorkers) is on_workers


def test_configured_labels_are_merged_with_the_head_exclusion() -> None:
    options = {"num_cpus": 0, "label_selector": {"pool": "gateway"}}
    out = options_for(options, decide([HEAD, W], options, AvoidHead.AUTO))
    assert out["label_selector"] == {"pool": "gateway", NODE_ID_LABEL: f"!{HEAD.node_id}"}
    assert options["label_selector"] == {"pool": "gateway"}  # the spec's options are not changed


def test_labels_that_choose_the_node_id_are_left_alone() -> None:
    options = {"num_cpus": 0, "label_selector": {NODE_ID_LABEL: W.node_id}}
    placement = decide([HEAD, W], options, AvoidHead.AUTO)
    assert isinstance(placement, HeadAllowed) and options_for(options, placement) == options


def test_two_heads_alive_at_once_are_both_excluded() -> None:
    other_head = NodeView("g" * 8, True, {HEAD_RESOURCE: 1.0})
    out = options_for(ZERO_CPU, decide([HEAD, other_head, W], ZERO_CPU, AvoidHead.AUTO))
    assert out["label_selector"] == {NODE_ID_LABEL: f"!in({other_head.node_id},{HEAD.node_id})"}


@pytest.mark.parametrize("selector,value,matches", [
    ("a", "a", True), ("a", "b", False), ("a", None, False),
    ("!a", "a", False), ("!a", "b", True), ("!a", None, True),
    ("in(a, b)", "b", True), ("!in(a,b)", "c", True), ("!in(a,b)", "a", False),
])
def test_label_selector_values(selector, value, matches) -> None:
    assert label_matches(selector, value) is matches


def test_snapshot_keeps_alive_nodes_and_finds_the_head_by_its_resource() -> None:
    nodes = snapshot([
        {"NodeID": "h1", "Alive": True, "Resources": {HEAD_RESOURCE: 1.0}, "NodeManagerAddress": "10.0.0.1"},
        {"NodeID": "h0", "Alive": False, "Resources": {HEAD_RESOURCE: 1.0}},  # the head before its restart
        {"NodeID": "w1", "Alive": True, "Resources": {"CPU": 2.0}, "Labels": {"ray.io/node-id": "w1"}},
    ])
    assert [(n.node_id, n.is_head) for n in nodes] == [("h1", True), ("w1", False)]
    assert nodes[0].address == "10.0.0.1"


def test_the_config_carries_avoid_head_and_labels_into_ray_options() -> None:
    assert PlacementConfig().avoid_head == "auto"
    assert ActorPlacement(labels={"pool": "gateway"}).ray_options() == {"num_cpus": 0.0,
                                                                        "label_selector": {"pool": "gateway"}}
    with pytest.raises(ValueError):
        PlacementConfig(avoid_head="sometimes")


def test_node_ids_stay_out_of_the_spec_digest() -> None:
    """The head's id changes with every restart: a digest holding it would
    replace every actor at the next `up`. The spec carries the mode only."""
    import msgspec

    from actors.specs import GatewaySpec

    fields = {f.name for f in msgspec.structs.fields(GatewaySpec)}
    assert "avoid_head" in fields and not any("node" in f for f in fields)


def test_up_reports_actors_on_the_head_of_a_multi_node_cluster_only() -> None:
    from actors.deploy.gateway import ActorNode, DeployReport

    nodes = {"supervisor": ActorNode("h", "10.0.0.1", is_head=True), "router:email_sending": ActorNode("w"),
             "provider:email_sending:a": None}
    assert DeployReport(nodes=nodes, cluster_nodes=3).on_head() == ["supervisor"]
    assert DeployReport(nodes=nodes, cluster_nodes=1).on_head() == []  # one node: nowhere else to be
