"""Config: defaults, layers (inner wins), ${ENV}, field paths in errors, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr

from actors.config import json_schema, load_config, parse_config
from actors.errors import ConfigError
from actors.specs import build_spec


def one_provider(settings: dict[str, Any] | None = None, **provider: Any) -> dict[str, Any]:
    return {"capabilities": {"email_sending": {"providers": [
        {"name": "p", "adapter": "simulated", "settings": settings or {}, **provider}]}}}


def problems(raw: Any, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "test.yaml", env or {})
    assert str(info.value).startswith("test.yaml: invalid gateway config")
    return dict(info.value.problems)


def test_seed_defaults() -> None:
    cfg = parse_config(one_provider(), env={})
    policy = cfg.provider_policy("email_sending", cfg.capabilities["email_sending"].providers[0])
    assert (policy.health.healthy_after, policy.health.unhealthy_after, policy.routing.recent_operations) == (5, 3, 10)
    assert cfg.namespace == "aicmo" and cfg.dry_run is False


def test_policy_layers_inner_wins_field_by_field() -> None:
    raw = {
        "policy": {"health": {"cooldown_s": 10, "unhealthy_after": 4}, "routing": {"max_attempts": 5}},
        "capabilities": {"email_sending": {
            "policy": {"health": {"cooldown_s": 20}, "routing": {"deadline_s": 3}},
            "providers": [
                {"name": "a", "adapter": "simulated", "policy": {"health": {"cooldown_s": 40}}},
                {"name": "b", "adapter": "simulated"},
            ]}},
    }
    cfg = parse_config(raw, env={})
    a, b = cfg.capabilities["email_sending"].providers
    pa, pb = cfg.provider_policy("email_sending", a), cfg.provider_policy("email_sending", b)
    assert (pa.health.cooldown_s, pb.health.cooldown_s) == (40, 20)      # provider > capability
    assert pa.health.unhealthy_after == pb.health.unhealthy_after == 4   # global where nothing closer says
    assert pa.health.healthy_after == 5                                  # built-in default
    routing = cfg.capability_policy("email_sending").routing
    assert (routing.max_attempts, routing.deadline_s) == (5, 3)


def test_env_references_are_read_typed_and_remembered() -> None:
    cfg = parse_config(one_provider({"latency_ms": "${LAT}", "ledger": "${LEDGER:-/tmp/x}"}), env={"LAT": "7"})
    p = cfg.capabilities["email_sending"].providers[0]
    assert p.validated_settings.latency_ms == 7 and p.validated_settings.ledger == "/tmp/x"
    assert p.env_refs == {"latency_ms": "LAT", "ledger": "LEDGER"}


def test_missing_env_variable_names_the_field() -> None:
    found = problems(one_provider({"ledger": "${NOT_SET_ANYWHERE}"}))
    assert found == {"capabilities.email_sending.providers[0].settings.ledger": "environment variable NOT_SET_ANYWHERE is not set"}


def test_adapter_settings_errors_carry_the_full_path() -> None:
    found = problems(one_provider({"latency_ms": -1, "typo": 1}))
    assert "capabilities.email_sending.providers[0].settings.latency_ms" in found
    assert found["capabilities.email_sending.providers[0].settings.typo"] == "Extra inputs are not permitted"


def test_every_problem_is_reported_at_once() -> None:
    raw = {"capabilities": {
        "emails": {"providers": []},
        "email_sending": {"providers": [
            {"name": "Bad Name", "adapter": "simulated"},
            {"name": "x", "adapter": "nope"},
            {"name": "y", "adapter": "simulated", "settings": {"failure_rate": 2}},
        ]}}}
    found = problems(raw)
    assert set(found) == {
        "capabilities.emails",
        "capabilities.email_sending.providers[0].name",
        "capabilities.email_sending.providers[1].adapter",
        "capabilities.email_sending.providers[2].settings.failure_rate",
    }
    assert "unknown adapter 'nope'" in found["capabilities.email_sending.providers[1].adapter"]


def test_duplicate_provider_names_and_empty_providers() -> None:
    found = problems({"capabilities": {"email_sending": {"providers": [
        {"name": "a", "adapter": "noop"}, {"name": "a", "adapter": "noop"}]}}})
    assert "used twice" in found["capabilities.email_sending.providers"]
    assert "capabilities.crm_sync.providers" in problems({"capabilities": {"crm_sync": {"providers": []}}})


def test_unknown_top_level_key_and_bad_ranking_policy() -> None:
    assert "dryrun" in problems({**one_provider(), "dryrun": True})
    found = problems({**one_provider(), "policy": {"routing": {"ranking": "no.such:thing"}}})
    assert "capabilities.email_sending.policy.routing.ranking" in found


def test_yaml_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("capabilities:\n  email_sending: [\n")
    with pytest.raises(ConfigError, match=r"(?s)g.yaml.*not valid YAML: line \d+"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_shipped_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    files = sorted(root.rglob("*.yaml"))
    assert files, "config/ holds at least the default"
    env = {"AICMO_LEDGER": ""}
    for path in files:
        text = path.read_text()
        import re

        env.update({name: "placeholder-secret" for name in re.findall(r"\$\{([A-Z0-9_]+)\}", text)})
        load_config(path, env=env)


def test_secrets_never_appear_in_reprs_or_spec_digests() -> None:
    canary = "canary-Secret-0123456789"
    cfg = parse_config(one_provider({"ledger": "${LEDGER_TOKEN}"}), env={"LEDGER_TOKEN": canary})
    p = cfg.capabilities["email_sending"].providers[0]
    assert canary not in repr(cfg) and canary not in repr(p) and canary not in str(cfg)
    spec = build_spec(cfg)
    assert canary not in spec.digest
    provider = spec.capabilities[0].providers[0]
    assert [s.get_secret_value() for s in provider.env_secrets] == [canary]  # so the actor can redact it
    assert canary not in repr(provider.env_secrets) and canary in provider.secret_values()


def test_json_schema_describes_the_file() -> None:
    schema = json_schema()
    assert schema["title"] == "aicmo-gateway config"
    assert "capabilities" in schema["properties"] and "namespace" in schema["properties"]
    json.dumps(schema)


def test_placement_reaches_the_actor_options_provider_first() -> None:
    from actors.specs import build_spec

    raw = {"placement": {"providers": {"resources": {"gateway": 0.01}}, "routers": {"num_cpus": 0.1}},
           "capabilities": {"email_sending": {"providers": [
               {"name": "a", "adapter": "simulated"},
               {"name": "b", "adapter": "simulated", "placement": {"resources": {"smtp_egress": 1}, "memory_mb": 200}}]}}}
    spec = build_spec(parse_config(raw, env={}))
    a, b = spec.capabilities[0].providers
    assert a.ray_options == {"num_cpus": 0.0, "resources": {"gateway": 0.01}}
    assert b.ray_options == {"num_cpus": 0.0, "resources": {"smtp_egress": 1}, "memory": 200 * 1024 * 1024}
    assert spec.capabilities[0].ray_options == {"num_cpus": 0.1} and spec.supervisor.ray_options == {"num_cpus": 0.0}


@pytest.mark.parametrize("password, piece", [("abc${unclosed", "unclosed"), ("p4ss${zq9 secret}w0rd", "zq9 secret"),
                                             ("${}x7Secret", "x7Secret")])
def test_a_config_error_names_the_field_never_the_secret_value(password: str, piece: str) -> None:
    raw = {"capabilities": {"email_sending": {"providers": [{"name": "smtp", "adapter": "smtp", "settings": {
        "host": "smtp.example.com", "username": "bot", "password": password}}]}}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "gw.yaml", env={})
    text = str(info.value)
    assert "capabilities.email_sending.providers[0].settings.password" in text
    assert password not in text and piece not in text


def test_a_validator_that_echoes_a_secret_value_is_masked() -> None:
    from actors.config import without_value

    error = {"loc": ("secret",), "msg": "Value error, whsec_Zm9vYmFy is not base64", "input": "whsec_Zm9vYmFy"}
    assert without_value(error, {"secret"}) == "Value error, *** is not base64"
    assert without_value({**error, "loc": ("url",)}, {"secret"}) == error["msg"]


def test_a_spec_handed_out_carries_no_secret() -> None:
    import pickle

    password, token = "canary-Pa55-4f1e9b", "canary-Tok-77c2a0"
    raw = {"capabilities": {"email_sending": {"providers": [
        {"name": "smtp", "adapter": "smtp", "settings": {"host": "smtp.example.com", "username": "bot",
                                                          "password": password}},
        {"name": "sim", "adapter": "simulated", "settings": {"ledger": "${LEDGER_TOKEN}"}}]}}}
    spec = build_spec(parse_config(raw, env={"LEDGER_TOKEN": token}))
    # The store's password (PostgreSQL's, from ${PGPASSWORD}) rides in every spec too.
    store = msgspec.structs.replace(spec.state, password=SecretStr("canary-PgPass-91d3"))
    spec = msgspec.structs.replace(spec, state=store, capabilities=[
        msgspec.structs.replace(c, state=store, providers=[msgspec.structs.replace(p, state=store) for p in c.providers])
        for c in spec.capabilities])
    inside = pickle.dumps(spec)
    assert password.encode() in inside and token.encode() in inside  # the actors need them
    assert b"canary-PgPass-91d3" in inside
    out = spec.without_secrets()
    shipped = pickle.dumps(out)  # what Ray sends a client that calls the supervisor's spec()
    assert password.encode() not in shipped and token.encode() not in shipped and b"canary-PgPass-91d3" not in shipped
    smtp, sim = out.capabilities[0].providers
    assert smtp.settings["password"] == "***" and smtp.settings["host"] == "smtp.example.com"
    assert sim.settings["ledger"] == "***" and sim.env_secrets == []
