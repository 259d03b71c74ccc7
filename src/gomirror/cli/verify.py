"""cli.verify re-checks a cache directory (placeholder until the sumdb verifier lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="re-check every cached module against the checksum database")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return 2
