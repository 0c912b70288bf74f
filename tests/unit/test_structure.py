"""Structural rules of the package, checked from its source:

- packages depend one way: each top-level package of `actors/` imports only
  the packages `ALLOWED` lists for it, all of them below it, so no package
  imports one that imports it back;
- no import cycles between modules inside `actors/`;
- no module past 500 lines (one past it holds two layers: split it by layer).

An import counts wherever it is: inside a function and under TYPE_CHECKING
too (a cycle hidden in a function is still two modules that need each
other), and so does a string naming a module of the package, as
`importlib.import_module("actors.x")` or a table of `"actors.x:Attr"`
targets (the adapter registry, a default ranking) would load it: a lazy
import is still an import."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "actors"
MAX_LINES = 500

_FOUNDATION = {"errors", "names", "redaction", "clock", "telemetry"}
_BELOW_ADAPTERS = _FOUNDATION | {"payloads", "events", "durable", "policy", "messages"}
_BELOW_OPS = _BELOW_ADAPTERS | {"adapters", "config", "specs", "client"}
_BELOW_ACTORS = _BELOW_OPS | {"ops"}

# Each top-level package (or module) of actors/ -> the packages it may import
# besides itself. Lowest first: a package may import only packages listed
# before it, never one after; router, provider and supervisor, one package
# per actor, do not import each other. `actors` is the package's own
# __init__ (the types a caller sees); nothing imports it.
ALLOWED: dict[str, set[str]] = {
    # 0. shared by everyone, importing nothing of ours
    "errors": set(),
    "names": set(),
    "redaction": set(),
    "clock": set(),
    "telemetry": set(),  # traces: OpenTelemetry only (the spans read messages and specs by duck typing)
    # 1. the capabilities' methods and payloads, and the checks of invoke's options
    "payloads": {"errors"},
    # 1. delivery events: the providers' signed webhooks verified and read into typed events (pure)
    "events": {"errors"},
    # 2. the state store (its errors only, and the events it keeps); pure policy (no messages, no store)
    "durable": {"errors", "events"},
    "policy": {"errors", "payloads", "clock", "events"},
    # 3. messages between actors and to users
    "messages": {"errors", "payloads", "events", "durable", "policy"},
    # 4-6. the only code that talks to providers; the config at the edge; what the actors are built from
    "adapters": _FOUNDATION | {"payloads", "messages", "events"},
    "config": _BELOW_ADAPTERS | {"adapters"},
    "specs": _BELOW_ADAPTERS | {"adapters", "config"},
    # apart: the providers' local stand-ins (tests, the demo), which may use what adapters compute
    "sandbox": _FOUNDATION | {"payloads", "messages", "adapters"},
    # 7. the Python client (its resend budget is the policy's RetryBudget)
    "client": {"errors", "names", "payloads", "messages", "telemetry", "policy"},
    # 8. what operators see
    "ops": _BELOW_OPS,
    # 9. one package per actor
    "router": _BELOW_ACTORS,
    "provider": _BELOW_ACTORS,
    "supervisor": _BELOW_ACTORS,
    # 10-12. what `up` and `down` do; the HTTP API; the command line
    "deploy": _BELOW_ACTORS | {"router", "provider", "supervisor"},
    "http": _BELOW_ACTORS,
    "cli": _BELOW_ACTORS | {"router", "provider", "supervisor", "deploy", "http", "sandbox"},
    # the package's face: `import actors`
    "actors": {"errors", "payloads", "policy", "messages"},
}

# A string that is exactly a module path of ours, optionally with ":attr".
_MODULE_STRING = re.compile(r"actors(\.\w+)+(:\w+)?")


def _modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the modules of this package it imports (a `from package
    import name` counts as the submodule when `name` is one; a string naming
    a module, or an attribute of one, counts as importing that module)."""
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        deps.add(f"{source}.{alias.name}")
                    elif source in modules:
                        deps.add(source)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.fullmatch(node.value):
                target = node.value.partition(":")[0]
                while target and target not in modules:   # "actors.x.Attr": the module is actors.x
                    target = target.rpartition(".")[0]
                if target:
                    deps.add(target)
        graph[name] = deps - {name}
    return graph


def package_of(module: str) -> str:
    """The top-level package (or module) of actors/ a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """package -> the other packages its modules import."""
    out: dict[str, set[str]] = {}
    for module, deps in graph.items():
        out.setdefault(package_of(module), set()).update(package_of(d) for d in deps)
    return {p: deps - {p} for p, deps in out.items()}


def violations(graph: dict[str, set[str]], allowed: dict[str, set[str]]) -> list[str]:
    """Each import from a package into one it may not import, as
    'a.b -> c.d (a may import: ...)'; and each package the table does not list."""
    found = []
    for module in sorted(graph):
        package = package_of(module)
        if package not in allowed:
            found.append(f"{module}: its package {package!r} is not in the table of allowed imports")
            continue
        for dep in sorted(graph[module]):
            target = package_of(dep)
            if target != package and target not in allowed[package]:
                found.append(f"{module} -> {dep} ({package} may import: {', '.join(sorted(allowed[package])) or 'nothing'})")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# --- the checkers, on fake graphs and a fake package ----------------------------------------------

def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_check_finds_an_upward_import_and_an_unlisted_package() -> None:
    allowed = {"errors": set(), "policy": {"errors"}, "messages": {"errors", "policy"}}
    fine = {"actors.errors": set(), "actors.policy.ranking": {"actors.errors", "actors.policy.health"},
            "actors.policy.health": set(), "actors.messages": {"actors.policy.health"}}
    assert violations(fine, allowed) == []
    upward = {**fine, "actors.policy.health": {"actors.messages"}}   # policy reaching up into messages
    assert violations(upward, allowed) == ["actors.policy.health -> actors.messages (policy may import: errors)"]
    assert cycles(package_graph(upward)) == [["messages", "policy"]]
    unlisted = {**fine, "actors.runtime.router": {"actors.errors"}}
    assert violations(unlisted, allowed) == [
        "actors.runtime.router: its package 'runtime' is not in the table of allowed imports"]


def test_imports_in_functions_under_type_checking_and_in_strings_count(tmp_path: Path) -> None:
    package = tmp_path / "actors"
    (package / "low").mkdir(parents=True)
    (package / "high").mkdir()
    for path in (package / "__init__.py", package / "low" / "__init__.py", package / "high" / "__init__.py"):
        path.write_text("")
    (package / "high" / "thing.py").write_text("VALUE = 1\n")
    (package / "high" / "plugin.py").write_text("class Plugin: ...\n")
    (package / "high" / "named.py").write_text("")
    (package / "high" / "typed.py").write_text("")
    (package / "low" / "sneaky.py").write_text(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from actors.high.typed import Something\n"
        "TABLE = {'x': 'actors.high.plugin:Plugin'}\n"
        "def later():\n"
        "    from actors.high import thing\n"
        "    return importlib.import_module('actors.high.named')\n"
        "'''A docstring naming actors.high.named is not an import.'''\n")
    graph = import_graph(package)
    assert graph["actors.low.sneaky"] == {"actors.high.typed", "actors.high.plugin", "actors.high.thing",
                                          "actors.high.named"}
    found = violations(graph, {"actors": set(), "low": set(), "high": {"low"}})
    assert [v.split(" (")[0] for v in found] == [
        "actors.low.sneaky -> actors.high.named", "actors.low.sneaky -> actors.high.plugin",
        "actors.low.sneaky -> actors.high.thing", "actors.low.sneaky -> actors.high.typed"]


# --- the package itself ------------------------------------------------------------------------------

def test_each_package_imports_only_the_packages_below_it() -> None:
    graph = import_graph()
    assert len(graph) > 100 and "actors.router.core" in graph["actors.router.actor"]
    # the adapter registry's table of "module:Class" strings counts as imports
    assert "actors.adapters.email.smtp" in graph["actors.adapters.registry"]
    assert violations(graph, ALLOWED) == []


def test_the_table_lists_lower_packages_only() -> None:
    """ALLOWED itself is layered: a package may import only packages listed
    before it, so the table cannot allow a circle between two packages."""
    order = list(ALLOWED)
    for package, deps in ALLOWED.items():
        later = [d for d in deps if d not in order or order.index(d) > order.index(package)]
        assert not later, f"{package} may import {later}, listed after it (or not at all)"


def test_no_package_imports_one_that_imports_it_back() -> None:
    packages = package_graph(import_graph())
    assert {"router", "provider", "supervisor", "policy", "ops", "adapters"} <= set(packages)
    assert cycles(packages) == []


def test_the_actors_do_not_import_each_other() -> None:
    packages = package_graph(import_graph())
    for actor in ("router", "provider", "supervisor"):
        assert not packages[actor] & {"router", "provider", "supervisor"}, actor


def test_the_runtime_folder_is_gone() -> None:
    """Split by actor (router/, provider/, supervisor/, deploy/): nothing may
    bring the old catch-all back."""
    assert not (ROOT / "runtime").exists()
    assert not [m for m in import_graph() if m.startswith("actors.runtime")]


def test_no_import_cycles_inside_actors() -> None:
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_module_past_500_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT.parent)} has {lines} lines: split it by layer"
