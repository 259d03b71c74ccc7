"""cli.cache: placeholder while it is written."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    """Not registered yet."""
