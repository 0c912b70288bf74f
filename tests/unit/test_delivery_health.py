"""Provider health from delivery outcomes, as pure policy over hand-built
snapshots: provider drops degrade then eject; recipients' bounces and
drops, deferrals and acceptances do not count; an ejection ends and the
provider is judged again on fresh outcomes only."""

from __future__ import annotations

from actors.events.model import DeliveryEvent
from actors.policy.delivery_health import DeliveryHealthPolicy, judge, outcome_of, outcomes_by_provider

POLICY = DeliveryHealthPolicy(window_s=100, min_outcomes=10, degrade_ratio=0.1, eject_ratio=0.3, eject_s=50)


def ev(state: str, cause: str | None = None, at: float = 0.0, **kw: object) -> DeliveryEvent:
    return DeliveryEvent(provider_kind="sendgrid", event_id=f"{state}{at}", kind=state, state=state,  # type: ignore[arg-type]
                         occurred_at=at, cause=cause, **kw)  # type: ignore[arg-type]


def test_outcomes_are_sorted_before_anything_counts_them() -> None:
    assert outcome_of(ev("delivered")) == "ok"
    assert outcome_of(ev("dropped", "provider")) == "provider_failure"
    assert outcome_of(ev("bounced", "provider", bounce="soft")) == "provider_failure"   # blocked
    for not_the_providers in (ev("dropped", "recipient"), ev("bounced", "recipient", bounce="hard"),
                              ev("deferred"), ev("accepted"), ev("complained")):
        assert outcome_of(not_the_providers) is None


def test_drops_degrade_then_eject_and_bounces_do_not() -> None:
    def outcomes(dropped: int, delivered: int, at: float = 10.0) -> dict:
        return {"sg": [(at, "provider_failure")] * dropped + [(at, "ok")] * delivered}

    v, t = judge(outcomes(1, 9), {}, 20, POLICY)
    assert v["sg"].verdict == "degraded" and [(x.before, x.after) for x in t] == [("healthy", "degraded")]
    v, t = judge(outcomes(3, 7), v, 21, POLICY)
    assert v["sg"].verdict == "ejected" and v["sg"].ejected_until == 71 and "3 of 10" in t[0].evidence
    # Recipients' hard bounces are not the provider's: they are not even outcomes.
    bounces = outcomes_by_provider([("mg", ev("bounced", "recipient", at=5.0, bounce="hard"))] * 50
                                   + [("mg", ev("delivered", at=5.0))] * 10)
    assert judge(bounces, {}, 20, POLICY)[0]["mg"].verdict == "healthy"


def test_too_few_outcomes_keep_the_verdict_and_an_ejection_ends() -> None:
    v, _ = judge({"sg": [(1.0, "provider_failure")] * 9}, {}, 5, POLICY)
    assert v["sg"].verdict == "healthy"                       # no data is no news
    v, _ = judge({"sg": [(1.0, "provider_failure")] * 10}, {}, 5, POLICY)
    assert v["sg"].verdict == "ejected"
    still, t = judge({"sg": [(1.0, "provider_failure")] * 10}, v, 30, POLICY)
    assert still["sg"].verdict == "ejected" and t == []
    back, t = judge({"sg": [(1.0, "provider_failure")] * 10}, still, 56, POLICY)
    # Its time is over: back, degraded, the old drops no longer counted against it.
    assert back["sg"].verdict == "degraded" and [(x.before, x.after) for x in t] == [("ejected", "degraded")]
    well, _ = judge({"sg": [(1.0, "provider_failure")] * 10 + [(60.0, "ok")] * 10}, back, 61, POLICY)
    assert well["sg"].verdict == "healthy"


def test_off_means_healthy() -> None:
    off = DeliveryHealthPolicy(enabled=False)
    assert judge({"sg": [(1.0, "provider_failure")] * 50}, {}, 5, off)[0]["sg"].verdict == "healthy"


def test_a_router_tries_a_provider_ejected_on_its_drops_last_and_says_why() -> None:
    from tests.unit.harness import Harness

    h = Harness({"a": [], "b": [], "c": []})
    core = h.router
    core.delivery.policy = POLICY        # the harness's config has no provider posting events: judging is off
    first = h.invoke()
    assert first.ok and first.provider == "a"
    pairs = [("a", ev("dropped", "provider", at=h.clock() - 1.0))] * 10
    transitions = core.delivery.judge(pairs)
    assert [(t.provider, t.after) for t in transitions] == [("a", "ejected")]
    assert h.invoke().provider != "a"                 # tried after the others
    status = core.planner.status({n: _status(n) for n in ("a", "b", "c")}, [])
    a = next(p for p in status.providers if p.name == "a")
    assert a.ejection_reason == "delivery_drops" and a.delivery.startswith("ejected: 10 of 10")
    assert [p.name for p in status.providers][-1] == "a"


def _status(name: str):  # type: ignore[no-untyped-def]
    from actors.messages import ProviderStatus

    return ProviderStatus(name=name, capability="email_sending", adapter="scripted")


def test_self_check_names_a_provider_that_drops_mail_with_its_evidence() -> None:
    from actors.ops.recommend import for_ops

    [rec] = for_ops("email_sending", "router:email_sending", {"delivery": {"sg": {
        "verdict": "ejected", "evidence": "7 of 20 accepted messages dropped or blocked by the provider"}}})
    assert rec.provider == "sg" and "ejected" in rec.problem and "7 of 20" in rec.evidence
    assert "drop_fallback" in rec.fix
