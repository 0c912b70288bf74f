"""Property-based fuzzing of config files through `actors.config`: random
YAML-ish documents, and mutations of the shipped configs (config/). The
only outcomes allowed are a valid config or a `ConfigError` whose problems
name the field path; a mutation that is certainly invalid (an unknown key,
a mapping where a value belongs) is reported at its own path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from actors.config import GatewayConfig, field_path, load_config, parse_config
from actors.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "config").rglob("*.yaml"))
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = ["namespace", "dry_run", "state", "url", "policy", "health", "routing", "provider", "supervisor", "capabilities",
         "providers", "name", "adapter", "settings", "enabled", "hooks", "audit", "metrics", "email_sending",
         "crm_sync", "webhook_dispatch", "simulated", "noop", "outbox", "smtp", "host", "port", "password", "api_key",
         "max_attempts", "deadline_s", "cooldown_s", "ranking", "retry_budget", "hedging", "check_interval_s",
         "failure_rate", "latency_ms", "ledger", "on_success"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(), st.text(max_size=30),
                    st.sampled_from(WORDS), st.sampled_from(["${HOME}", "${UNSET_VAR}", "${UNSET:-3}", "${A:-${B:-x}}",
                                                             "${", "}", "$${X}", "actors.policy.ranking:by_health",
                                                             "os:system", "-1", "1e400", "nan"]))
KEYS = st.one_of(st.sampled_from(WORDS), st.text(max_size=12), st.integers(-3, 3), st.booleans(), st.none())
DOCS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=6),
                    max_leaves=40)
ENV = {"HOME": "/root", "A": "a"}


def problems_are_paths(err: ConfigError) -> None:
    assert err.problems, "a ConfigError must say what is wrong"
    for path, message in err.problems:
        assert isinstance(path, str) and isinstance(message, str) and message


def parse(raw: Any, env: dict[str, str] | None = None) -> GatewayConfig | ConfigError:
    try:
        return parse_config(raw, "<fuzz>", env=ENV if env is None else env)
    except ConfigError as err:
        problems_are_paths(err)
        return err


@FUZZ
@given(doc=st.one_of(DOCS, st.dictionaries(st.sampled_from(WORDS), DOCS, max_size=8)))
def test_any_document_is_a_config_or_a_config_error(doc: Any) -> None:
    parse(doc)


# --- mutations of the shipped configs ----------------------------------------------------
def env_for(path: Path) -> dict[str, str]:
    """Plausible values for the environment variables a shipped config reads
    without a default (those with one keep it)."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", path.read_text()))

    def value(name: str) -> str:
        if name.endswith("PORT"):
            return "2525"
        if name.endswith(("URL",)):
            return "https://api.example.com/hook"
        if name.endswith("SECRET") and "WEBHOOK" in name:
            return "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        if name.endswith("MEMBER_ID"):
            return "abc123"
        if name.endswith(("USERNAME", "FROM")):
            return "bot@example.com"
        if name.endswith("HOST"):
            return "mail.example.com"
        if name.endswith(("_S", "INTERVAL")):
            return "1"
        if name.endswith("CA_FILE") or name == "AICMO_LEDGER":
            return ""
        return "value-1"

    return {name: value(name) for name in names}


def leaves(node: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(location, value) of every node, containers included."""
    out = [(loc, node)]
    if isinstance(node, dict):
        for k, v in node.items():
            out += leaves(v, (*loc, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += leaves(v, (*loc, i))
    return out


def replaced(node: Any, loc: tuple[Any, ...], value: Any) -> Any:
    if not loc:
        return value
    head, rest = loc[0], loc[1:]
    if isinstance(node, dict):
        return {**node, head: replaced(node[head], rest, value)}
    return [replaced(v, rest, value) if i == head else v for i, v in enumerate(node)]


def test_the_shipped_configs_are_valid_with_their_variables_set() -> None:
    assert len(SHIPPED) >= 5
    for path in SHIPPED:
        load_config(path, env=env_for(path))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_an_unknown_key_anywhere_in_a_shipped_config_is_reported_at_its_path(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    env = env_for(path)
    dicts = [loc for loc, node in leaves(raw) if isinstance(node, dict)]

    @FUZZ
    @given(where=st.sampled_from(dicts), key=st.text(st.characters(categories=("L", "N", "Pc")), min_size=1, max_size=15))
    def check(where: tuple[Any, ...], key: str) -> None:
        node = raw
        for part in where:
            node = node[part]
        assume(key not in node)
        result = parse(replaced(raw, where, {**node, key: 1}), env)
        assert isinstance(result, ConfigError), f"{field_path((*where, key))} was accepted"
        expected = field_path((*where, key))
        assert any(p == expected or p.startswith(expected + ".") for p, _ in result.problems), (expected, result.problems)

    check()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_a_mapping_where_a_value_belongs_is_reported_at_its_path(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    env = env_for(path)
    scalars = [loc for loc, node in leaves(raw) if loc and not isinstance(node, (dict, list))]

    @FUZZ
    @given(where=st.sampled_from(scalars))
    def check(where: tuple[Any, ...]) -> None:
        result = parse(replaced(raw, where, {"junk": [1]}), env)
        assert isinstance(result, ConfigError), f"{field_path(where)} took a mapping"
        expected = field_path(where)
        assert any(p == expected or p.startswith(expected + ".") or p.startswith(expected + "[")
                   for p, _ in result.problems), (expected, result.problems)

    check()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_any_mutation_of_a_shipped_config_is_a_config_or_a_config_error(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    env = env_for(path)
    nodes = [loc for loc, _ in leaves(raw) if loc]

    @FUZZ
    @given(where=st.sampled_from(nodes), value=DOCS, drop=st.booleans(), env_drop=st.booleans())
    def check(where: tuple[Any, ...], value: Any, drop: bool, env_drop: bool) -> None:
        if drop:
            parent_loc, last = where[:-1], where[-1]
            parent = raw
            for part in parent_loc:
                parent = parent[part]
            if isinstance(parent, dict):
                mutated = replaced(raw, parent_loc, {k: v for k, v in parent.items() if k != last})
            else:
                mutated = replaced(raw, parent_loc, [v for i, v in enumerate(parent) if i != last])
        else:
            mutated = replaced(raw, where, value)
        parse(mutated, {} if env_drop else env)

    check()


@FUZZ
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from([s.read_text() for s in SHIPPED]).flatmap(
                          lambda t: st.integers(0, len(t)).map(lambda n: t[:n]))))
def test_any_file_text_is_a_config_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("cfg") / "gateway.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path, env=ENV)
    except ConfigError as err:
        problems_are_paths(err)


def test_a_yaml_alias_cycle_is_a_config_error(tmp_path: Path) -> None:
    # Found by this suite: it used to end in a RecursionError.
    path = tmp_path / "cycle.yaml"
    path.write_text("namespace: &a [*a]\ncapabilities: {}\n")
    try:
        load_config(path, env={})
    except ConfigError as err:
        problems_are_paths(err)
        return
    except BaseException as exc:  # noqa: BLE001 - what the test is about
        raise AssertionError(f"load_config raised {exc!r}") from None
    pytest.fail("a self-referencing document was accepted")


def test_a_billion_laughs_document_is_a_config_error_not_a_hang(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]" for i in range(1, 9)]
    path = tmp_path / "laughs.yaml"
    path.write_text("\n".join(lines) + "\ncapabilities: {}\n")
    with pytest.raises(ConfigError, match="YAML aliases are expanded"):
        load_config(path, env={})
