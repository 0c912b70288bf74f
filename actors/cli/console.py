"""The CLI's rich console: one place, so the command modules need not import
each other for it."""

from __future__ import annotations

import os

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, width=None if os.isatty(1) else 110)
