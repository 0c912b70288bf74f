"""The HTTP adapters' client, in a fresh process as a provider actor makes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]

FIRST_REQUEST = textwrap.dedent("""
    import asyncio, json, sys
    from actors.adapters.http import HttpSettings, load_httpx, make_client, send

    httpx = load_httpx()
    client = make_client(HttpSettings(base_url="https://api.example.com"),
                         transport=httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True})))
    answer = asyncio.run(send(client, "GET", "/v1/ping", "p"))
    print(json.dumps({"status": answer.status_code, "body": answer.json(),
                      "loaded": sorted(m for m in ("click", "rich", "pygments") if m in sys.modules)}))
""")


def test_a_provider_actors_first_request_does_not_import_the_httpx_command_line_client() -> None:
    # httpx's __init__ imports click, rich and pygments for its CLI when they are
    # installed (rich is, for ours): half its import time in a provider's first request.
    import json

    done = subprocess.run([sys.executable, "-c", FIRST_REQUEST], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"status": 200, "body": {"ok": True}, "loaded": []}
