"""The email_verification stand-ins (ZeroBounce, NeverBounce) behave like
their providers, checked through the real adapters over loopback HTTP (no
Ray), and their live balances are read. Clocks are injected where time
matters (tests/adapters/loopback.py)."""

from __future__ import annotations

import pytest

from actors.adapters.verification.neverbounce import NeverBounceAdapter
from actors.adapters.verification.zerobounce import ZeroBounceAdapter
from actors.errors import AuthError, RateLimited, TransientError
from actors.payloads import VerifyEmail
from actors.sandbox.base import Faults, SandboxRunner
from actors.sandbox.contacts import classify
from actors.sandbox.neverbounce import NeverBounceStandIn
from actors.sandbox.zerobounce import ZeroBounceStandIn
from tests.adapters.recorder import ctx
from tests.adapters.loopback import CLOCK, CREATED, KEY, adapter, fresh, run  # noqa: F401 - fresh: an autouse fixture


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        ZeroBounceStandIn(api_key=KEY, clock=CLOCK),
        NeverBounceStandIn(api_key=KEY, clock=CLOCK),
    ]).start()
    yield runner
    runner.stop()


# --- the verifiers -----------------------------------------------------------------

@pytest.mark.parametrize("address,zb,nb", [
    ("ann@acme.example", "valid", "valid"), ("catchall@acme.example", "risky", "risky"),
    ("spamtrap1@acme.example", "invalid", "invalid"), ("abuse@acme.example", "risky", "valid"),
    ("info@acme.example", "risky", "valid"), ("x@mailinator.com", "invalid", "invalid"),
    ("bounce@acme.example", "invalid", "invalid"), ("unknown@acme.example", "unknown", "unknown"),
])
def test_verifiers_classify_deterministically(sandbox, address, zb, nb):
    z = run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email=address), ctx("verify_email")))
    n = run(adapter(NeverBounceAdapter, sandbox).verify_email(VerifyEmail(email=address), ctx("verify_email")))
    assert (z["status"], n["status"]) == (zb, nb)
    if classify(address) == "role":
        assert z["sub_status"] == "role_based" and "role_account" in n["flags"]


def test_zerobounce_errors_come_inside_200s(sandbox):
    wrong = adapter(ZeroBounceAdapter, sandbox, api_key="wrong-key-77")
    with pytest.raises(AuthError, match="Invalid API key"):
        run(wrong.verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email")))
    with pytest.raises(AuthError, match="not valid"):
        run(wrong.probe())
    assert all(r.status == 200 for r in sandbox["zerobounce"].received)
    sandbox["zerobounce"].faults.update({"throttle_for_s": 60})
    with pytest.raises(RateLimited) as caught:
        run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert caught.value.retry_after_s == 60.0


def test_neverbounce_errors_come_inside_200s(sandbox):
    stand_in = sandbox["neverbounce"]
    wrong = adapter(NeverBounceAdapter, sandbox, api_key="wrong-key-77")
    with pytest.raises(AuthError) as caught:
        run(wrong.call("verify_email", VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert "wrong-key-77" not in caught.value.message and "auth_failure" in caught.value.message
    good = adapter(NeverBounceAdapter, sandbox)
    stand_in.faults.update({"throttle_for_s": 60})
    with pytest.raises(RateLimited, match="throttle_triggered"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    stand_in.faults = Faults(down=True)
    with pytest.raises(TransientError, match="temp_unavail"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    stand_in.faults = Faults()
    stand_in.referrer_locked = True
    with pytest.raises(AuthError, match="bad_referrer"):
        run(good.verify_email(VerifyEmail(email="a@acme.example"), ctx("verify_email")))
    assert all(r.status == 200 for r in stand_in.received)
    stand_in.referrer_locked = False
    run(good.probe())


# --- live balances (actors/provider/spending.py reads them) --------------------------

def test_verifiers_read_their_live_balance_from_the_stand_ins(sandbox):
    zb, nb = sandbox["zerobounce"], sandbox["neverbounce"]
    zb.credits, nb.credits = 12, 7
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 12.0
    assert run(adapter(NeverBounceAdapter, sandbox).balance()) == 7.0
    run(adapter(ZeroBounceAdapter, sandbox).verify_email(VerifyEmail(email="ann@acme.example"), ctx("verify_email")))
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 11.0  # a validation spent a credit
    zb.credits = 0  # no credits: a balance of zero (the probe calls it a throttle; the balance just says 0)
    assert run(adapter(ZeroBounceAdapter, sandbox).balance()) == 0.0
    with pytest.raises(RateLimited):
        run(adapter(ZeroBounceAdapter, sandbox).probe())
    with pytest.raises(AuthError):
        run(adapter(ZeroBounceAdapter, sandbox, api_key="wrong-key-77").balance())
    with pytest.raises(AuthError):
        run(adapter(NeverBounceAdapter, sandbox, api_key="wrong-key-77").balance())


def test_a_verifier_whose_balance_is_near_zero_is_treated_as_spent(sandbox, tmp_path):
    """The provider actor's logic (no Ray) over the ZeroBounce stand-in: a
    balance at or below `near_zero` is a spent quota, back once a reading shows more."""
    from actors.clock import Clock
    from actors.config import parse_config
    from actors.durable.sqlite import SqliteStore
    from actors.provider.core import ProviderCore
    from actors.specs import build_spec
    from tests.unit.fakes import Heard, paused, until

    cfg = parse_config({"state": {"url": str(tmp_path)}, "capabilities": {"email_verification": {"providers": [
        {"name": "zb", "adapter": "zerobounce", "settings": {"api_key": KEY, "base_url": sandbox.url("zerobounce")},
         "balance": {"near_zero": 10}}]}}}, "<test>", env={})
    [spec] = build_spec(cfg).capabilities[0].providers
    store = SqliteStore(str(tmp_path / "s.db"))
    zb = sandbox["zerobounce"]

    async def scenario() -> list:
        # The spend loop's pause never ends by itself: this test reads the balance by hand.
        heard = Heard()
        core = ProviderCore(spec, store=store, clock=Clock(time=CLOCK, sleep=paused), listeners=[heard])
        CREATED.append(core.adapter)
        zb.credits = 12
        await core.spending.read_balance()
        assert core.status().balance_left == 12.0 and core.status().quota_exhausted is None
        for i in range(2):  # 12 - 2 calls = 10 left: near zero
            reply = await core.call("verify_email", VerifyEmail(email=f"a{i}@acme.example"), ctx("verify_email"))
            assert reply.ok
        assert core.status().quota_exhausted == "balance" and reply.quota_exhausted == "balance"
        assert core.health.total_failures == 0  # a spent balance is not a failure
        zb.credits = 500  # someone bought credits
        # The meter's first round (started by the first call) has loaded this period's row: the reading
        # is kept against a stored counter that holds this process's calls.
        await until(lambda: core.spending.loaded)
        await core.spending.read_balance()
        assert core.status().quota_exhausted is None and core.status().balance_left == 500.0
        await core.spending.close()
        [row] = await store.spend_get("email_verification")
        assert (row.balance_remaining, row.lifetime_calls, row.balance_calls_at) == (500.0, 2, 2)
        await store.close()
        return [s.quota_exhausted for s in heard.of("on_quota_flip")]

    assert run(scenario()) == ["balance", None]
