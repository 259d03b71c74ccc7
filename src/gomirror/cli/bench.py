"""cli.bench is ``gomirror bench [MIRROR ...]``: which GOPROXY mirror is best from here, now.

Mirrors default to the configured upstreams plus the well-known public ones
(``gomirror.tools.mirrorbench.WELL_KNOWN``). The workload is a small list of
popular modules, or ``--module PATH[@VERSION]`` (repeatable), or the
requirements of ``--go-mod FILE``. The report is one table (success ratio,
median and p90 time per request kind, zip throughput, freshness, checksum
database support, verdict), one line per slow, lagging, dead or tampering
mirror saying why, and the recommended ``go env -w GOPROXY=...`` and
gomirror ``upstream`` lines; ``--json`` prints one JSON object instead.
Exit status: 0 when a mirror can be recommended and none tampers, 1
otherwise, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gomirror.app import build
from gomirror.cli.common import add_config_options, config_from_args
from gomirror.cli.tooling import console, human_bytes, progress_console, say, tool_logging
from gomirror.config import Config
from gomirror.errors import ConfigError, GomirrorError
from gomirror.module.info import is_canonical_for
from gomirror.module.paths import check_path
from gomirror.tools.mirrorbench import (
    POPULAR,
    WELL_KNOWN,
    BenchReport,
    MirrorResult,
    Options,
    bench,
    percentile,
)
from gomirror.tools.project import parse_requirements


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure which GOPROXY mirror is fastest and honest from here",
        description="Time @v/list, @latest, .info, .mod and a zip on every mirror, check "
        "their content against the checksum database, and recommend a GOPROXY line.",
    )
    p.add_argument(
        "mirrors",
        nargs="*",
        metavar="MIRROR",
        help="mirror URLs (default: the configured upstreams and the well-known public mirrors)",
    )
    p.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="PATH[@VERSION]",
        help="a module of the workload (repeatable; default: a few popular modules)",
    )
    p.add_argument("--go-mod", type=Path, metavar="FILE", help="use this go.mod's requirements")
    p.add_argument(
        "--max-modules", type=int, default=8, metavar="N", help="modules from --go-mod (default 8)"
    )
    p.add_argument("--rounds", type=int, default=3, metavar="N", help="measured rounds (default 3)")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per request (default 10)"
    )
    p.add_argument(
        "--slow",
        type=float,
        metavar="S",
        help="median seconds per small request above which a mirror is slow"
        " (default: the slow_threshold setting)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_config_options(p, "bench")
    p.set_defaults(run=run)


def _normalize(url: str) -> str:
    """A mirror as Go reads a GOPROXY entry: https:// when no scheme is given."""
    if url in ("direct", "off"):
        raise ConfigError(f"bench measures mirrors; {url!r} is not one (give a URL)")
    return url if "://" in url else "https://" + url


def mirror_set(config: Config, given: list[str]) -> list[str]:
    """The mirrors to measure, in order, without duplicates."""
    configured = [e.target for e in config.upstream.entries if not e.is_keyword]
    chosen = [_normalize(m) for m in given] if given else [*configured, *WELL_KNOWN]
    out: list[str] = []
    seen: set[str] = set()
    for m in chosen:
        key = m.rstrip("/")
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def workload(args: argparse.Namespace) -> dict[str, str | None]:
    """module → version (None: the newest every mirror has) from --module, --go-mod or defaults."""
    out: dict[str, str | None] = {}
    for spec in args.module:
        path, _, version = spec.partition("@")
        try:
            check_path(path)
        except GomirrorError as e:
            raise ConfigError(f"invalid --module {spec!r}: {e}") from None
        if version and not is_canonical_for(path, version):
            raise ConfigError(f"invalid --module {spec!r}: {version} is not a canonical version")
        out[path] = version or None
    if args.go_mod is not None:
        try:
            info = parse_requirements(args.go_mod.read_bytes())
        except OSError as e:
            raise ConfigError(f"{args.go_mod}: cannot read: {e.strerror}") from None
        direct = [r for r in info.require if not r.indirect] + [
            r for r in info.require if r.indirect
        ]
        for r in direct[: max(0, args.max_modules)]:
            if is_canonical_for(r.path, r.version):
                out.setdefault(r.path, r.version)
        if not out:
            raise ConfigError(f"{args.go_mod}: no requirements to measure")
    return out or dict.fromkeys(POPULAR)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    if args.rounds < 1 or args.timeout <= 0:
        raise ConfigError("--rounds must be at least 1 and --timeout positive")
    mirrors = mirror_set(config, list(args.mirrors))
    modules = workload(args)
    slow = args.slow if args.slow is not None else config.upstream.slow_threshold
    opts = Options(rounds=args.rounds, timeout=args.timeout, slow=slow)
    report = asyncio.run(_run(config, mirrors, modules, opts))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        render(report, console())
    sys.stdout.flush()
    return report.exit_code


async def _run(
    config: Config, mirrors: list[str], modules: dict[str, str | None], opts: Options
) -> BenchReport:
    async with build(config) as parts:
        client = parts.sumdb_clients[0] if parts.sumdb_clients else None
        opts = dataclasses.replace(opts, sumdb_name=client.name if client else None)
        args = (
            mirrors,
            modules,
            parts.session,
            parts.verifier if client else None,
            lambda: parts.disk.new_temp_path(".zip"),
            opts,
        )
        shown = progress_console()
        if shown is None:
            return await bench(*args)
        with shown.status("benchmarking") as status:
            return await bench(*args, on_progress=lambda what: status.update(f"bench: {what}"))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _cell(m: MirrorResult, kind: str) -> str:
    xs = m.seconds((kind,))
    return f"{_ms(percentile(xs, 0.5))}/{_ms(percentile(xs, 0.9))}" if xs else "-"


def render(r: BenchReport, out: Console) -> None:
    """The table, one line per problem, and the recommendation."""
    table = Table(
        title=f"{len(r.mirrors)} mirrors, {len(r.reference)} modules, {r.rounds} rounds"
        " (ms: median/p90)",
        title_justify="left",
    )
    for col in (
        "#",
        "ok",
        "list",
        "latest",
        "info",
        "mod",
        "zip",
        "zip rate",
        "fresh",
        "sumdb",
        "verdict",
    ):
        table.add_column(col, justify="left" if col in ("#", "verdict") else "right")
    for i, m in enumerate(r.mirrors, 1):
        rate = m.zip_throughput
        sumdb = (
            "-"
            if m.sumdb_supported is None
            else ("yes " + _ms(m.sumdb_seconds))
            if m.sumdb_supported
            else "no"
        )
        table.add_row(
            str(i),
            f"{m.success_ratio * 100:.0f}%",
            *(_cell(m, k) for k in ("list", "latest", "info", "mod", "zip")),
            "-" if rate is None else f"{human_bytes(rate)}/s",
            "behind" if m.lagging else "yes" if m.newest else "-",
            sumdb,
            m.verdict.upper() if m.verdict in ("tampered", "dead") else m.verdict,
        )
    out.print(table)
    for i, m in enumerate(r.mirrors, 1):
        say(out, f"  #{i} = {m.name}")
    for m in r.mirrors:
        if m.verdict == "tampered":
            for d in m.disagreements:
                say(out, f"TAMPERED {m.name}: {d}")
        elif m.verdict in ("dead", "failing"):
            first = m.errors(1)
            why = f": {first[0]}" if first else ""
            say(
                out,
                f"{m.verdict.upper()} {m.name}: {m.success_ratio * 100:.0f}% of requests answered{why}",
            )
        elif m.verdict == "slow":
            say(out, f"SLOW {m.name}: median {_ms(m.small_p50)} ms per small request")
        if m.lagging:
            behind = ", ".join(f"{mod} {m.newest[mod]}" for mod in m.lagging)
            say(out, f"LAGGING {m.name}: newest known {behind}; other mirrors have newer")
    if r.recommended:
        say(out, "recommended:")
        say(out, f"  go env -w '{r.goproxy}'")  # quoted: | is a shell pipe
        say(out, f'  gomirror.toml: [upstream] upstream = "{r.upstream}"')
    else:
        say(
            out,
            "no mirror can be recommended: each one failed, tampered or did not answer;"
            " check the network (gomirror doctor) or name other mirrors",
        )
