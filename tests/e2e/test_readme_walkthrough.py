"""The README's "Deploying on a Ray cluster" block, run as written, as a
newcomer runs it after `make demo`: a HOME where a Ray token was made first
(the file `ray get-auth-token --generate` writes, as a local `ray.init()` would), nothing of
Ray's in the environment (no RAY_AUTH_MODE), then every line of the block
in order. The block is read from README.md, so the two cannot drift apart.

Its first line, `ray start --head` (with the variables it sets), is a
cluster of tests/support/nodes.py (private ports and temp dir, which is
what the machine's /tmp/ray is to a user, so `aicmo-gateway` without an
address finds it as on the head): with token authentication, the e2e
tests' own, started that way (tests/e2e/cluster.py); with it disabled,
one of this module's. Between the block's `invoke`
and its `down`, the README's Python client example runs as a driver script
(`Gateway.connect()`, the address from RAY_ADDRESS).

Twice: with token authentication on (Ray turns it on because `ray start`
finds the token), and with RAY_AUTH_MODE=disabled on both sides.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import BIN
from tests.e2e.readme import ROOT, readme_block, walkthrough
from tests.support.nodes import RayNodes

pytestmark = pytest.mark.e2e

WORKER_WARNING = "worker processes have been started"


@pytest.fixture(scope="module", params=["token", "disabled"])
def machine(request: pytest.FixtureRequest) -> Iterator[dict]:
    head_env, lines = walkthrough()
    # With token auth, the e2e tests' own cluster (tests/e2e/cluster.py), whose head was started as this
    # block's first line says: a second head started the same way would cost its start-up and nothing else.
    own = request.param != "token"
    nodes = RayNodes(head_cpus=2, auth=request.param, head_env=head_env) if own else request.getfixturevalue(
        "cluster")["nodes"]
    try:
        if own:
            nodes.start()
        # What the user's shell holds: HOME (with the token) and, for `disabled`, RAY_AUTH_MODE.
        # RAY_TMPDIR stands for the machine's /tmp (where `ray start` tells `auto` about the cluster).
        env = {k: v for k, v in nodes.env.items() if k != "RAY_ADDRESS" and not k.startswith("AICMO_")}
        assert ("RAY_AUTH_MODE" in env) == (request.param == "disabled")
        yield {"auth": request.param, "nodes": nodes, "env": env, "lines": lines}
    finally:
        subprocess.run([str(BIN / "aicmo-gateway"), "sandbox", "--stop"], env=nodes.env, capture_output=True,
                       timeout=60)
        if own:
            nodes.shutdown()


def shell(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def python_client_example(env: dict[str, str], address: str) -> subprocess.CompletedProcess[str]:
    script = readme_block("### The Python client", "python") + (
        "\nimport json\nprint('DRIVER', json.dumps({'first': res.provider, 'batch_ok': sum(r.ok for r in results)}))\n")
    return subprocess.run([str(BIN / "python"), "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**env, "RAY_ADDRESS": address})


def test_the_readme_walkthrough_works_as_written(machine: dict) -> None:
    nodes, env = machine["nodes"], machine["env"]
    head_log = nodes.head.log_tail(1_000_000)
    assert ("Token authentication is enabled" in head_log) == (machine["auth"] == "token"), head_log[-2000:]

    outputs: list[str] = []
    for line in machine["lines"]:
        if line.startswith("aicmo-gateway down"):
            driver = python_client_example(env, nodes.address)
            outputs.append(driver.stdout + driver.stderr)
            assert driver.returncode == 0, outputs[-1][-4000:]
            facts = json.loads(driver.stdout.split("DRIVER ", 1)[1])
            # (which provider served it depends on the ranking of the day, see below)
            assert facts["batch_ok"] == 100 and facts["first"] in {"smtp_primary", "sendgrid", "mailgun"}, facts
        done = shell(line, env)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, f"{line}\n{outputs[-1][-4000:]}"
        if line.startswith("aicmo-gateway up "):
            assert "using the settings of the sandbox running here" in done.stderr, done.stderr
        if line.startswith("aicmo-gateway self-check"):
            # The sandbox's TLS CA was found: the SMTP server's probe from the node (STARTTLS, AUTH) does not
            # fail on the certificate. It may run out of its 5 s on a loaded machine (CI ran one at load 13 to
            # 21): a timeout says nothing of the CA, an untrusted certificate shows as `transient`.
            cell = re.search(r"email_sending/smtp_primary\s*\S\s*(\w+|\?)", done.stdout)
            assert cell and cell.group(1) in {"ok", "timeout"} and "not trusted" not in done.stdout, \
                done.stdout[-6000:]
        if line.startswith("aicmo-gateway invoke email_sending"):
            # Served at the first attempt. Which provider ranks first on a fresh deployment depends on
            # the probes so far (health, then streak, then latency), so any of the three may.
            assert done.stdout.startswith("ok via ") and done.stdout.count("  attempt ") == 1, \
                "\n".join(outputs)[-8000:]

    everything = "\n".join(outputs)
    assert WORKER_WARNING not in everything
    assert "InvalidAuthToken" not in everything and "Unauthenticated" not in everything
