"""A production install (`pip install aicmo-gateway`, no extra) imports none
of the stand-ins: their libraries are the `sandbox` extra's, no module
outside actors/sandbox needs them, and the commands that run the stand-ins
say what to install."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from actors import sandbox

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import io, json, sys
from contextlib import redirect_stderr
from pathlib import Path

for name in LIBRARIES:
    sys.modules[name] = None            # as if not installed: importing it raises ModuleNotFoundError

import importlib
failed = {}
for path in sorted(Path("actors").rglob("*.py")):
    parts = list(path.with_suffix("").parts)
    if "sandbox" in parts:
        continue
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"

from actors.cli.main import main
answers = {}
for command in ("sandbox", "demo"):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main([command])
    answers[command] = [code, err.getvalue()]
print(json.dumps({"failed": failed, "answers": answers,
                  "loaded": sorted(m for m in sys.modules if m.startswith("actors.sandbox.") or m in LIBRARIES
                                   and sys.modules[m] is not None)}))
"""


def test_the_runtime_dependencies_leave_the_stand_ins_libraries_to_the_sandbox_extra() -> None:
    requires = importlib.metadata.requires("aicmo-gateway") or []
    runtime = [r for r in requires if "extra ==" not in r]
    extra = [r.split(";")[0].strip() for r in requires if 'extra == "sandbox"' in r]
    names = {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for r in extra}
    assert names == set(sandbox.LIBRARIES)
    assert not [r for r in runtime if any(r.lower().startswith(lib) for lib in sandbox.LIBRARIES)]


def test_every_module_but_the_stand_ins_imports_without_their_libraries() -> None:
    code = f"LIBRARIES = {sandbox.LIBRARIES!r}\n" + PROBE
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["failed"] == {}
    assert seen["loaded"] == []
    for command, (code_, message) in seen["answers"].items():
        assert code_ == 2 and "pip install 'aicmo-gateway[sandbox]'" in message, (command, message)
        assert "aiohttp" in message and f"aicmo-gateway {command}" in message
