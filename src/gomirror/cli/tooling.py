"""cli.tooling holds what the tool commands (prefetch, cache, bench) share: logging, consoles, units.

- :func:`tool_logging`: the tools log warnings and worse unless ``--log-level``
  asks for more, so their own output is not drowned in info lines;
- :func:`console`: a rich console for the report (stdout) and one for
  progress bars (stderr, shown only on a terminal); :func:`say` prints a
  line unwrapped, so fix lines and module paths copy cleanly;
- :func:`parse_size` / :func:`parse_duration`: ``10GiB``, ``500MB``, ``30d``,
  ``12h``; a bad value raises ``ConfigError`` (exit status 2) saying what
  is accepted;
- :func:`human_bytes` / :func:`human_age`: the inverse, for tables.
"""

from __future__ import annotations

import argparse
import re
import sys

from rich.console import Console

from gomirror.config import Config
from gomirror.errors import ConfigError
from gomirror.logs import setup_logging

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(i?)b?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def tool_logging(args: argparse.Namespace, config: Config) -> None:
    """Log warnings and errors only, unless ``--log-level`` was given."""
    level = config.server.log_level if getattr(args, "log_level", None) else "warning"
    setup_logging(level, access_log=False)


PIPE_WIDTH = 160  # tables written to a file or a pipe: wide enough not to squeeze columns


def console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def say(out: Console, text: str) -> None:
    """Print one line as it is: no markup, no wrapping (it may be copied into a terminal)."""
    out.print(text, markup=False, soft_wrap=True, highlight=False)


def progress_console() -> Console | None:
    """A console for progress bars, or None when stderr is not a terminal."""
    return Console(stderr=True) if sys.stderr.isatty() else None


def parse_size(text: str, what: str = "--max-size") -> int:
    """Bytes from ``1048576``, ``500MB`` (powers of 1000) or ``10GiB`` (powers of 1024)."""
    m = _SIZE.match(text)
    if m is None:
        raise ConfigError(f"invalid {what} {text!r}: give bytes such as 500MB, 10GiB or 1048576")
    number, unit, binary = float(m.group(1)), m.group(2).lower(), m.group(3)
    base = 1024 if binary else 1000
    exponent = " kmgtp".index(unit) if unit else 0
    return int(number * base**exponent)


def parse_duration(text: str, what: str = "--unused-for") -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``30d`` or ``2w``."""
    m = _DURATION.match(text)
    if m is None:
        raise ConfigError(f"invalid {what} {text!r}: give a duration such as 30d, 12h or 90m")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"
