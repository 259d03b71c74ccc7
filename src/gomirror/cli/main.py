"""cli.main is the ``gomirror`` command: it parses arguments and dispatches to subcommands.

Each subcommand lives in its own module and returns a process exit code.
Configuration errors are printed as one line naming the key, with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gomirror import __version__
from gomirror.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gomirror", description="A verifying, caching Go module proxy."
    )
    p.add_argument("--version", action="version", version=f"gomirror {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from gomirror.cli import serve, verify

    serve.add_parser(sub)
    verify.add_parser(sub)
    from gomirror.cli import doctor, setup

    setup.add_parser(sub)
    doctor.add_parser(sub)
    from gomirror.cli import bench, cache, prefetch

    prefetch.add_parser(sub)
    cache.add_parser(sub)
    bench.add_parser(sub)
    from gomirror.cli import replicate

    replicate.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except ConfigError as e:
        print(f"gomirror: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
