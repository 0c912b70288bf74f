"""`${NAME}` references in a config: `${NAME}` (or `${NAME:-default}`,
where the default may hold another reference) reads an environment variable
at load time. Which setting came from which variable is remembered, so a
self-check can say "check SMTP_PASSWORD" rather than "check the config".
Problems are reported by field path, e.g.
`capabilities.email_sending.providers[0].settings.port`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import yaml

__all__ = ["MAX_VALUES", "field_path", "interpolate_env"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Text before a reference that puts it in a URL's userinfo (`scheme://user:${PW}@host`).
_IN_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#@]*$")


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# YAML aliases make a document a graph: it is walked as a tree, so a cycle
# is refused and so is a "billion laughs" expansion past this many values.
MAX_VALUES = 100_000


def interpolate_env(node: Any, env: dict[str, str], loc: tuple[Any, ...] = (), refs: dict[str, str] | None = None,
                    problems: list[tuple[str, str]] | None = None, _above: tuple[int, ...] = (),
                    _budget: list[int] | None = None) -> Any:
    """Replace `${NAME}` in strings; record path -> NAME; report unset variables by path."""
    refs = {} if refs is None else refs
    problems = [] if problems is None else problems
    budget = [MAX_VALUES] if _budget is None else _budget
    budget[0] -= 1
    if budget[0] == -1:
        problems.append((field_path(loc), f"the document holds over {MAX_VALUES} values once its YAML aliases are expanded"))
    if budget[0] < 0:
        return None
    if isinstance(node, (dict, list)):
        if id(node) in _above:
            problems.append((field_path(loc), "the document refers to itself here (a YAML alias cycle)"))
            return None
        above = (*_above, id(node))
        if isinstance(node, dict):
            return {k: interpolate_env(v, env, (*loc, k), refs, problems, above, budget) for k, v in node.items()}
        return [interpolate_env(v, env, (*loc, i), refs, problems, above, budget) for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:
        path = field_path(loc)
        names: list[str] = []

        def lookup(name: str, default: str | None) -> str:
            names.append(name)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""

        try:
            value, whole = _expand(node, lookup)
        except ValueError as exc:
            problems.append((path, str(exc)))
            return node
        if names:
            refs[path] = names[0]  # the outermost: the variable a user sets
        # `port: ${SMTP_PORT}` should become a number: let YAML type a whole-value reference.
        if whole and value and not value.startswith(("'", '"')):
            try:
                typed = yaml.safe_load(value)
                if isinstance(typed, (int, float, bool)):
                    return typed
            except yaml.YAMLError:
                pass
        return value
    return node


def _expand(text: str, lookup: Any) -> tuple[str, bool]:
    """Expand `${NAME}` and `${NAME:-default}`, where a default may itself hold
    references (`${SMTP_PORT:-${SANDBOX_PORT:-18125}}`). Returns the text and
    whether the reference was the whole value."""
    out: list[str] = []
    i = 0
    whole = False
    while i < len(text):
        start = text.find("${", i)
        if start < 0:
            out.append(text[i:])
            break
        out.append(text[i:start])
        depth, j = 1, start + 2
        while j < len(text) and depth:
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            depth -= text[j] == "}"
            j += 1
        # These messages never quote the text: the field may be a password
        # (`abc${x`), and the error names the field path instead.
        if depth:
            raise ValueError(f"a `${{` at character {start + 1} is never closed; write ${{NAME}} or "
                             "${NAME:-default}, or put the literal text in an environment variable")
        inner = text[start + 2:j - 1]
        name, sep, default = inner.partition(":-")
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"the `${{...}}` at character {start + 1} is not a reference: write ${{NAME}} or "
                             "${NAME:-default}")
        value = lookup(name, _expand(default, lookup)[0] if sep else None)
        if _in_userinfo(text, start, j):
            # A password read from the environment is a value, not URL syntax:
            # a `/`, `#`, `?` or `@` in it would otherwise end the userinfo and
            # put the rest of the password where errors and status show it.
            value = quote(value, safe="")
        out.append(value)
        whole = start == 0 and j == len(text)
        i = j
    return "".join(out), whole


def _in_userinfo(text: str, start: int, end: int) -> bool:
    """Whether the reference at text[start:end] lies in a URL's userinfo:
    after `scheme://`, before an `@` that comes ahead of the host's path."""
    if not _IN_USERINFO.match(text[:start]):
        return False
    rest = text[end:]
    at = rest.find("@")
    return at >= 0 and not any(c in rest[:at] for c in "/?#")
