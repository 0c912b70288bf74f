"""`aicmo-gateway trace ID [--json]` without a cluster: the supervisor's
answer (a Trace) printed as a timeline or as JSON; exit 1 when unknown."""

from __future__ import annotations

import argparse
import json
from typing import Any
from unittest import mock

import pytest

from actors.cli import delivery_cmd
from actors.cli.connect import CliError
from actors.errors import ErrorKind
from actors.ops.trace import Trace, TraceEvent
from actors.messages import Attempt

TRACE = Trace(id="k1", capability="email_sending", request_id="r1", idempotency_key="k1", ok=True, provider="mg",
              attempts=[Attempt(provider="sg", ok=False, error_kind=ErrorKind.TRANSIENT, error="503"),
                        Attempt(provider="mg", ok=True)],
              delivery_state="bounced", recipients={"a@x.com": "bounced"},
              events=[TraceEvent(provider="mg", kind="accepted", state="accepted", occurred_at=1.7e9,
                                 received_at=1.7e9, recipient="a@x.com"),
                      TraceEvent(provider="mg", kind="failed", state="bounced", occurred_at=1.7e9 + 5,
                                 received_at=1.7e9 + 5, recipient="a@x.com", bounce="hard", cause="recipient",
                                 reason="550 no such user")])


class _Supervisor:
    class delivery_trace:
        @staticmethod
        def remote(ident: str) -> Any:
            return TRACE if ident == "k1" else None


def trace(ident: str, as_json: bool) -> int:
    with mock.patch.object(delivery_cmd, "connect", lambda *a: None), \
            mock.patch.object(delivery_cmd, "supervisor", lambda gw: _Supervisor), \
            mock.patch("ray.get", lambda ref, timeout=None: ref):
        return delivery_cmd.cmd_trace(argparse.Namespace(id=ident, json=as_json, address=None, namespace=None))


def test_the_timeline_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert trace("k1", as_json=False) == 0
    out = capsys.readouterr().out
    order = ["attempt sg: failed (transient: 503)", "attempt mg: ok", "served by mg", "accepted -> accepted",
             "failed -> bounced", "hard bounce, cause recipient, 550 no such user", "delivery: bounced"]
    positions = [out.index(line) for line in order]
    assert positions == sorted(positions)


def test_json_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    assert trace("k1", as_json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["state"] for e in doc["events"]] == ["accepted", "bounced"] and doc["provider"] == "mg"
    with pytest.raises(CliError) as unknown:
        trace("nope", as_json=False)
    assert unknown.value.code == 1
