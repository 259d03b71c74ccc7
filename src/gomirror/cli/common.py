"""cli.common holds the options shared by subcommands that load the configuration."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gomirror.config import Config, load_config

CONFIG_FLAGS: tuple[tuple[str, str], ...] = (
    ("listen", "HOST:PORT to serve on (default 127.0.0.1:8080)"),
    ("cache_dir", "cache directory (default: the user cache dir)"),
    ("upstream", "upstream list in GOPROXY syntax"),
    ("policy", "go | failover"),
    ("sumdb", "checksum database in GOSUMDB syntax, repeatable; 'off' disables verification"),
    ("nosumdb", "module patterns never checked against the checksum database"),
    ("private", "module patterns fetched only with direct (GOPRIVATE syntax)"),
    ("log_level", "debug | info | warning | error"),
    ("workers", "server processes sharing the port"),
)


def add_config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML configuration file")
    for key, help_text in CONFIG_FLAGS:
        flag = "--" + key.replace("_", "-")
        if key == "sumdb":
            p.add_argument(flag, dest=key, action="append", help=help_text)
        else:
            p.add_argument(flag, dest=key, help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {k: getattr(args, k, None) for k, _ in CONFIG_FLAGS}
    return load_config(config_file=args.config, overrides=overrides)
