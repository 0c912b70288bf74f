"""Loading a gateway config: YAML in, validated models out. Every error
names the file and the field path; all problems are reported together."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from actors.adapters.base import AdapterSettings
from actors.adapters.registry import get_adapter_class
from actors.config.env import field_path, interpolate_env
from actors.config.schema import GatewayConfig
from actors.errors import ConfigError, UnknownAdapter
from actors.payloads import CAPABILITIES

__all__ = ["json_schema", "load_config", "parse_config", "without_value"]


def _secret_fields(settings_cls: type[AdapterSettings]) -> set[str]:
    """Fields typed SecretStr (alone or optional)."""
    from pydantic import SecretStr

    out = set()
    for name, field in settings_cls.model_fields.items():
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ()):
            out.add(name)
    return out


def without_value(error: Any, hidden: set[str]) -> str:
    """A validation message fit to print: for a secret field, any echo of the
    value a validator put in its message is masked (the path says where)."""
    message = str(error["msg"])
    loc = error.get("loc") or ()
    if not (loc and loc[0] in hidden):
        return message
    value = error.get("input")
    text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    if isinstance(text, str) and len(text) >= 3:
        message = message.replace(text, "***")
    return message


def _check_providers(data: dict[str, Any], refs: dict[str, str],
                     problems: list[tuple[str, str]]) -> dict[tuple[str, int], tuple[AdapterSettings, dict[str, str]]]:
    """Validate each provider's settings against its adapter, straight from the raw data,
    so these problems are reported together with the model's own."""
    out: dict[tuple[str, int], tuple[AdapterSettings, dict[str, str]]] = {}
    caps = data.get("capabilities")
    if not isinstance(caps, dict):
        return out
    for cap_name, cap in caps.items():
        if not isinstance(cap, dict) or not isinstance(cap.get("providers"), list) or cap_name not in CAPABILITIES:
            continue
        for i, provider in enumerate(cap["providers"]):
            if not isinstance(provider, dict) or not isinstance(provider.get("adapter"), str):
                continue
            base = ("capabilities", cap_name, "providers", i)
            try:
                adapter_cls = get_adapter_class(provider["adapter"])
            except UnknownAdapter as exc:
                problems.append((field_path((*base, "adapter")), str(exc)))
                continue
            except Exception as exc:  # an adapter module that fails to import
                problems.append((field_path((*base, "adapter")), f"adapter {provider['adapter']!r} failed to load: {exc}"))
                continue
            if adapter_cls.capabilities and cap_name not in adapter_cls.capabilities:
                problems.append((field_path((*base, "adapter")),
                                 f"adapter {provider['adapter']!r} does not serve {cap_name}; "
                                 f"it serves {', '.join(sorted(adapter_cls.capabilities))}"))
                continue
            settings = provider.get("settings") or {}
            if not isinstance(settings, dict):
                continue  # the model reports it
            try:
                validated = adapter_cls.Settings.model_validate(settings)
            except ValidationError as exc:
                hidden = _secret_fields(adapter_cls.Settings)
                problems += [(field_path((*base, "settings", *e["loc"])), without_value(e, hidden)) for e in exc.errors()]
                continue
            prefix = field_path((*base, "settings")) + "."
            out[(cap_name, i)] = (validated, {p[len(prefix):]: n for p, n in refs.items() if p.startswith(prefix)})
    return out


def parse_config(raw: Any, source: str = "<config>", env: dict[str, str] | None = None) -> GatewayConfig:
    env = dict(os.environ) if env is None else env
    if not isinstance(raw, dict):
        raise ConfigError(source, [("", f"expected a mapping at the top level, got {type(raw).__name__}")])
    refs: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    data = interpolate_env(raw, env, (), refs, problems)
    raw_caps = data.get("capabilities")
    for name in raw_caps if isinstance(raw_caps, dict) else {}:
        if name not in CAPABILITIES:
            problems.append((f"capabilities.{name}", f"unknown capability; known: {', '.join(CAPABILITIES)}"))
    cfg: GatewayConfig | None = None
    try:
        cfg = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems += [(field_path(e["loc"]), e["msg"]) for e in exc.errors()
                     if not (len(e["loc"]) >= 2 and e["loc"][0] == "capabilities" and e["loc"][1] not in CAPABILITIES)]
    validated = _check_providers(data, refs, problems)
    if cfg is not None:
        from actors.policy.ranking import load_rank_policy

        for cap_name in cfg.capabilities:
            try:
                load_rank_policy(cfg.capability_policy(cap_name).routing.ranking)
            except ValueError as exc:
                problems.append((f"capabilities.{cap_name}.policy.routing.ranking", str(exc)))
            if cfg.capability_policy(cap_name).routing.ranking.endswith(":by_cost"):  # one currency to compare
                from actors.policy.cost.config import currency_problems

                costs = {p.name: p.cost for p in cfg.capabilities[cap_name].providers}
                problems += [(f"capabilities.{cap_name}.providers", m) for m in currency_problems(costs)]
    if problems or cfg is None:
        raise ConfigError(source, list(dict.fromkeys(problems)))
    for cap_name, cap in cfg.capabilities.items():
        for i, provider in enumerate(cap.providers):
            provider._validated, provider._env_refs = validated[(cap_name, i)]
    return cfg


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read the file: {exc.strerror}")]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(path), [("", f"not valid YAML: {where}{getattr(exc, 'problem', exc)}")]) from None
    return parse_config(raw, str(path), env)


def json_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aicmo-gateway config"
    return schema
