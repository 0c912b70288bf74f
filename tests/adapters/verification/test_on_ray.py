"""email_verification through the router on a real local Ray, against the
stand-ins on loopback: success, auth failures, rate limits (rate_limited,
throttled, not unhealthy) and server errors with fallback.

One deployment; the test walks through its faults in an order that keeps
earlier throttles from hiding later steps. Ranking is the configured order
and the unhealthy threshold high, so the order of attempts is the
configured one throughout (tests/adapters/on_ray.py)."""

from __future__ import annotations

import pytest

from actors.errors import ErrorKind
from actors.policy.health import Health
from actors.sandbox.base import SandboxRunner
from actors.sandbox.dropcontact import DropcontactStandIn
from actors.sandbox.neverbounce import NeverBounceStandIn
from actors.sandbox.zerobounce import ZeroBounceStandIn
from tests.adapters.on_ray import KEY, POLICY, faults, provider, status, trail

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sandbox():
    runner = SandboxRunner([
        DropcontactStandIn(api_key=KEY, ready_after_polls=2),
        ZeroBounceStandIn(api_key=KEY),
        NeverBounceStandIn(api_key=KEY),
    ]).start()
    yield runner
    runner.stop()


def test_email_verification(gateway, sandbox):
    faults(sandbox)
    policy = {**POLICY, "routing": {**POLICY["routing"], "attempt_timeout_s": 1.0}}
    gw = gateway({"policy": policy, "capabilities": {"email_verification": {"providers": [
        provider(sandbox, "dropcontact", poll_interval_s=0.01),
        provider(sandbox, "neverbounce"),
        provider(sandbox, "zerobounce"),
    ]}}})
    verify = lambda email: gw.invoke("email_verification", "verify_email", {"email": email})  # noqa: E731

    # Dropcontact answers asynchronously: submit, two "not ready yet", then the result.
    sandbox["dropcontact"].received.clear()
    res = verify("ann@acme.example")
    assert res.ok and res.provider == "dropcontact"
    assert res.value["status"] == "valid" and res.value["qualification"] == "nominative@pro"
    assert [r.method for r in sandbox["dropcontact"].received] == ["POST", "GET", "GET", "GET"]

    # Never ready within the attempt's second: a timeout that names the request, and NeverBounce serves.
    sandbox["dropcontact"].ready_after_polls = 10**6
    try:
        res = verify("ann@acme.example")
    finally:
        sandbox["dropcontact"].ready_after_polls = 2
    assert res.ok and trail(res) == [("dropcontact", ErrorKind.TIMEOUT), ("neverbounce", None)]
    assert any(request_id in res.attempts[0].error for request_id in sandbox["dropcontact"].jobs)

    faults(sandbox, dropcontact={"down": True, "status": 503})
    assert verify("catchall@acme.example").value["status"] == "risky"
    res = verify("someone@mailinator.com")
    assert res.provider == "neverbounce" and res.value["status"] == "invalid"
    assert res.value["provider_result"] == "disposable"

    # NeverBounce's errors arrive inside HTTP 200s: auth_failure is auth, and ZeroBounce serves.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"reject_auth": True})
    res = verify("catchall@acme.example")
    assert trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.AUTH), ("zerobounce", None)]
    assert res.value["status"] == "risky" and res.value["provider_status"] == "catch-all"
    assert verify("spamtrap@acme.example").value["status"] == "invalid"
    role = verify("info@acme.example").value
    assert (role["status"], role["sub_status"]) == ("risky", "role_based")

    # temp_unavail (a 200) is transient; ZeroBounce's bad-key answer (a 200 too) is auth.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"down": True}, zerobounce={"reject_auth": True})
    res = verify("ann@acme.example")
    assert not res.ok and trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.TRANSIENT),
                                         ("zerobounce", ErrorKind.AUTH)]
    assert all(r.status == 200 for r in sandbox["neverbounce"].received[-1:] + sandbox["zerobounce"].received[-1:])

    faults(sandbox, dropcontact={"down": True}, neverbounce={"reject_auth": True}, zerobounce={"down": True})
    assert trail(verify("ann@acme.example")) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.AUTH),
                                                 ("zerobounce", ErrorKind.TRANSIENT)]

    faults(sandbox, dropcontact={"reject_auth": True})
    assert trail(verify("ann@acme.example")) == [("dropcontact", ErrorKind.AUTH), ("neverbounce", None)]

    # throttle_triggered (a 200) is a rate limit: NeverBounce is throttled, not unhealthy.
    faults(sandbox, dropcontact={"down": True}, neverbounce={"throttle_for_s": 60})
    res = verify("ann@acme.example")
    assert res.ok and trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("neverbounce", ErrorKind.RATE_LIMITED),
                                     ("zerobounce", None)]
    neverbounce = status(gw, "email_verification", "neverbounce")
    assert neverbounce.health is not Health.UNHEALTHY and neverbounce.last_error_kind is ErrorKind.RATE_LIMITED
    # NeverBounce names no wait: the health policy's default_throttle_s applies.
    assert neverbounce.throttled_until - neverbounce.last_checked == pytest.approx(30.0)

    # ZeroBounce's 429 blocks for a minute (NeverBounce, still throttled, is skipped).
    faults(sandbox, dropcontact={"down": True}, zerobounce={"throttle_for_s": 60})
    res = verify("ann@acme.example")
    assert trail(res) == [("dropcontact", ErrorKind.TRANSIENT), ("zerobounce", ErrorKind.RATE_LIMITED)]
    zerobounce = status(gw, "email_verification", "zerobounce")
    assert zerobounce.health is not Health.UNHEALTHY
    assert zerobounce.throttled_until - zerobounce.last_checked == pytest.approx(60.0)
