"""cli.common adds the configuration flags a subcommand understands and loads the Config from them.

It also holds the flags several tools share (``--jobs`` with ``--json``).
Which settings have a flag, and for which commands, is declared in
``config.SETTINGS`` (``Setting.flag``); nothing here lists keys. A flag's value
is parsed like the environment's, so it is checked and reported the same way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gomirror.config import SETTINGS, Config, load_config
from gomirror.errors import ConfigError


def add_config_options(p: argparse.ArgumentParser, command: str | None = None) -> None:
    """Add ``--config`` and the flags that apply to command (None: only the common ones)."""
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    for s in SETTINGS:
        if s.flag is None or not s.flag.applies_to(command):
            continue
        p.add_argument(
            s.option,
            dest=s.key,
            action="append" if s.flag.repeatable else "store",
            metavar=s.flag.metavar,
            # argparse treats % in help as a format directive.
            help=s.flag.help.replace("%", "%%"),
        )


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the Config with the flags given on the command line as the highest layer."""
    overrides: dict[str, Any] = {s.key: getattr(args, s.key, None) for s in SETTINGS if s.flag}
    return load_config(config_file=getattr(args, "config", None), overrides=overrides)


def add_jobs_and_json(p: argparse.ArgumentParser, default: int, what: str, output: str) -> None:
    """Add ``--jobs N`` (how many of what run at once) and ``--json`` (print output)."""
    p.add_argument(
        "--jobs",
        type=int,
        default=default,
        metavar="N",
        help=f"{what} at once (default {default})",
    )
    p.add_argument("--json", action="store_true", help=f"print {output}")


def jobs_from_args(args: argparse.Namespace) -> int:
    """The ``--jobs`` value, refused with a clear error below 1."""
    jobs = int(args.jobs)
    if jobs < 1:
        raise ConfigError("invalid --jobs: must be at least 1")
    return jobs
