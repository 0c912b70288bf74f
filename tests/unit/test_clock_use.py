"""One clock: the gateway's code reads time and sleeps through the `Clock`
it is given (actors/clock.py), never by calling `time.time()`,
`time.monotonic()`, `time.sleep()` or `asyncio.sleep()` itself, so a test
can hand it a fake and never sleep. Checked from the source, as
test_structure.py checks imports: a call counts under any name it is
imported as (`import time as _t`, `from asyncio import sleep`); passing the
function as a default (`clock=time.monotonic`) is injection, not a call.

Two tables say where a direct call is still found, and why:

- `REAL_TIME_BY_DESIGN`: code whose time is not the gateway's to fake. The
  clock itself; the providers' local stand-ins (they play the outside
  world, with its own clock); adapters where the time is their protocol's
  (a deadline bounding a real socket, a provider's reset header compared
  with the wall clock: those take `now=`/`clock=` where a test needs it);
  the command line, the operator's own process.
- `NOT_ON_THE_CLOCK_YET`: modules that should take the Clock and do not
  yet, with who is moving them. An entry that no longer calls the clock
  fails the test too: strike it when the module is moved.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "actors"

# (module, function) pairs that read the real clock or sleep on it.
BANNED = {("time", "time"), ("time", "monotonic"), ("time", "sleep"), ("asyncio", "sleep")}

REAL_TIME_BY_DESIGN: dict[str, str] = {
    "actors/clock.py": "the one clock: SYSTEM_CLOCK is time.time, time.monotonic and asyncio.sleep",
    "actors/sandbox/": "the providers' local stand-ins (tests, the demo): the outside world's own clocks",
    "actors/adapters/http.py": "Retry-After / reset headers against the wall clock (parse functions take now=)",
    "actors/adapters/crm/hubspot.py": "HubSpot's rate-limit reset header against the wall clock (takes now=)",
    "actors/adapters/enrichment/apollo.py": "Apollo's rate-limit reset header against the wall clock (takes now=)",
    "actors/adapters/replies/gmail_api.py": "deadlines of Gmail's paged reads, and its Retry-After date",
    "actors/adapters/replies/imap.py": "the deadline of an IMAP session over a real socket",
    "actors/adapters/replies/imap_session.py": "the deadline of each IMAP command over a real socket",
    "actors/adapters/simulated.py": "the simulated provider's own stamp on what it returns (a stand-in's clock)",
    "actors/router/admission.py": "the event loop's lag, on the real clock: asyncio.sleep(0) yields one turn of the real loop",
    "actors/cli/": "the operator's process: ages shown, --watch refreshes, the demo's run time, a fault's start",
}

# module -> who moves it onto the injected Clock (issue 18, item 5). Remove the entry with the calls.
NOT_ON_THE_CLOCK_YET: dict[str, str] = {
    "actors/http/deployment.py": "http: waiting for the Serve app to answer (time.monotonic, time.sleep)",
}


def clock_calls(source: str) -> list[tuple[int, str]]:
    """(line, "module.function") of each call of a BANNED function in `source`."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}            # local name -> "time" | "asyncio"
    functions: dict[str, tuple[str, str]] = {}  # local name -> (module, function)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ("time", "asyncio"):
                    modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module in ("time", "asyncio"):
            for alias in node.names:
                if (node.module, alias.name) in BANNED:
                    functions[alias.asname or alias.name] = (node.module, alias.name)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in modules \
                and (modules[f.value.id], f.attr) in BANNED:
            found.append((node.lineno, f"{modules[f.value.id]}.{f.attr}"))
        elif isinstance(f, ast.Name) and f.id in functions:
            found.append((node.lineno, ".".join(functions[f.id])))
    return sorted(found)


def _listed(path: str, table: dict[str, str]) -> bool:
    return any(path == entry or (entry.endswith("/") and path.startswith(entry)) for entry in table)


def _calls_by_module() -> dict[str, list[tuple[int, str]]]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        calls = clock_calls(path.read_text())
        if calls:
            out[str(path.relative_to(ROOT.parent))] = calls
    return out


def test_the_finder_sees_calls_under_any_name_and_not_defaults() -> None:
    source = (
        "import asyncio, time as _t\n"
        "from time import monotonic as mono\n"
        "from asyncio import sleep\n"
        "def f(clock=_t.time, pause=asyncio.sleep):\n"
        "    _t.time(); mono(); asyncio.sleep(1); sleep(2); clock(); pause(3)\n"
        "    loop.time(); self.clock.monotonic()\n")
    assert [name for _, name in clock_calls(source)] == ["asyncio.sleep", "asyncio.sleep", "time.monotonic",
                                                         "time.time"]  # line 5, by name


def test_the_gateway_reads_time_only_through_its_clock() -> None:
    """Every module outside the two tables is on the Clock."""
    strays = {path: calls for path, calls in _calls_by_module().items()
              if not _listed(path, REAL_TIME_BY_DESIGN) and not _listed(path, NOT_ON_THE_CLOCK_YET)}
    assert strays == {}, ("these call the real clock: take a Clock (actors/clock.py) in the constructor, "
                          f"or justify them in a table here: {strays}")


@pytest.mark.parametrize("package", ["actors/provider/", "actors/policy/", "actors/ops/"])
def test_the_provider_policy_and_ops_are_on_the_clock_without_exception(package: str) -> None:
    """Where the rule is whole already: no call, and no table entry to allow one."""
    assert [p for p in _calls_by_module() if p.startswith(package)] == []
    assert [e for table in (REAL_TIME_BY_DESIGN, NOT_ON_THE_CLOCK_YET) for e in table if e.startswith(package)] == []


def test_no_entry_in_the_debt_table_is_stale() -> None:
    """A module moved onto the Clock leaves the table in the same change."""
    calling = _calls_by_module()
    stale = [entry for entry in NOT_ON_THE_CLOCK_YET if entry not in calling]
    assert stale == [], f"these no longer call the real clock: strike them from NOT_ON_THE_CLOCK_YET: {stale}"
    assert all(not entry.endswith("/") for entry in NOT_ON_THE_CLOCK_YET)  # named one by one
