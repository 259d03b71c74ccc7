"""cli.bundle: placeholder while export/import are written."""

from __future__ import annotations

from typing import Any


def add_parsers(cmds: Any) -> None:
    """Nothing yet."""
