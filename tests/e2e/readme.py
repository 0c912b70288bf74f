"""The README's shell and Python blocks, as the end-to-end tests run them:
read from README.md, so the tests and the README cannot drift apart."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RAY_START = re.compile(r"^((?:[A-Za-z_][A-Za-z0-9_]*=\S+\s+)*)ray start --head\b")


def readme_block(heading: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    return section.split(f"```{lang}\n", 1)[1].split("\n```", 1)[0]


def walkthrough() -> tuple[dict[str, str], list[str]]:
    """The variables the "Deploying on a Ray cluster" block's `ray start --head` sets, and its other lines."""
    first, *rest = [line for line in readme_block("## Deploying on a Ray cluster", "bash").splitlines() if line.strip()]
    found = RAY_START.match(first)
    assert found, f"the walkthrough no longer starts with `ray start --head`: {first!r}"
    head_env = dict(word.split("=", 1) for word in shlex.split(found.group(1)))
    return head_env, rest
