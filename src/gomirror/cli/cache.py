"""cli.cache is ``gomirror cache stats | gc | purge | export | import``: look after the module cache.

- ``stats [--server URL] [--top N]``: files, bytes per kind, modules,
  versions, the oldest and newest cached version, the modules taking the
  most space, and with ``--server`` that server's hit ratio since it started;
- ``gc --max-size SIZE | --unused-for DURATION [--dry-run]``: evict whole
  module versions, least recently used first (``gomirror.tools.gc``);
  never the checksum database's state, never a file being served;
- ``purge MODULE[@VERSION] ... [--force] [--server URL]``: drop cached
  lists, ``@latest`` and queries so a new tag shows now; a canonical
  version's verified files only with ``--force``, recorded as an audit
  event; with ``--server``, through that gomirror's admin endpoint (its
  ``admin_token`` from ``--token`` or ``GOMIRROR_ADMIN_TOKEN``);
- ``export`` / ``import``: bundles for air-gapped networks (``cli.bundle``).

Every subcommand uses the configuration of ``serve`` (``--cache-dir``...),
prints tables or, with ``--json``, one JSON object. Exit status: 0 done,
1 a problem (gc could not reach its target, a purge refused, a server
unreachable), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from gomirror.app import Parts, build
from gomirror.cli.common import add_config_options, config_from_args
from gomirror.cli.tooling import (
    console,
    human_age,
    human_bytes,
    parse_duration,
    parse_size,
    say,
    tool_logging,
)
from gomirror.config import Config
from gomirror.errors import ConfigError, GomirrorError, InvalidRequest, Refused, UpstreamError
from gomirror.storage.disk import DiskStorage
from gomirror.storage.lastuse import compact, read_uses
from gomirror.tools import gc as gc_tool
from gomirror.tools.cachestats import HitRatio, Stats, hit_ratio, stats
from gomirror.tools.inventory import Kind, Version, scan, version_id
from gomirror.tools.purge import Purged, purge, remote_purge


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cache",
        help="inspect, clean, purge, export and import the module cache",
        description="Inspect and maintain gomirror's module cache.",
    )
    cmds = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)

    s = cmds.add_parser("stats", help="what the cache holds")
    s.add_argument("--server", metavar="URL", help="also read this running gomirror's hit ratio")
    s.add_argument("--top", type=int, default=10, metavar="N", help="modules by size (default 10)")
    s.set_defaults(run=run_stats)

    g = cmds.add_parser("gc", help="evict least recently used module versions")
    g.add_argument("--max-size", metavar="SIZE", help="shrink the cache to SIZE (e.g. 20GiB)")
    g.add_argument(
        "--unused-for", metavar="DURATION", help="evict versions unused for DURATION (e.g. 90d)"
    )
    g.add_argument("--dry-run", action="store_true", help="only show what would be evicted")
    g.set_defaults(run=run_gc)

    u = cmds.add_parser("purge", help="drop cached lists and @latest so new tags show now")
    u.add_argument("targets", nargs="+", metavar="MODULE[@VERSION]")
    u.add_argument(
        "--force",
        action="store_true",
        help="also delete a version's verified files (recorded as an audit event)",
    )
    u.add_argument(
        "--server",
        metavar="URL",
        help="purge a running gomirror's cache through its admin endpoint instead",
    )
    u.add_argument(
        "--token",
        metavar="TOKEN",
        help="that server's admin_token (better: GOMIRROR_ADMIN_TOKEN, not shown by ps)",
    )
    u.set_defaults(run=run_purge)

    from gomirror.cli import bundle

    bundle.add_parsers(cmds)
    for c in cmds.choices.values():
        c.add_argument("--json", action="store_true", help="print one JSON object")
        add_config_options(c, "cache")


def local_disk(parts: Parts) -> DiskStorage | None:
    """The DiskStorage that is the cache, when it is on local disk (stats in one thread hop)."""
    return parts.disk if parts.config.storage.storage == "disk" else None


def _emit(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
        sys.stdout.flush()


# --- stats ---------------------------------------------------------------------------------


def run_stats(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    if args.top < 0:
        raise ConfigError("invalid --top: must be 0 or more")
    st, ratio, problem = asyncio.run(_stats(config, args.server, args.top))
    if args.json:
        _emit(
            args,
            {
                "cache_dir": str(config.cache.cache_dir),
                **st.to_json(),
                "hit_ratio": ratio.to_json() if ratio else None,
                "error": problem or None,
            },
        )
    else:
        render_stats(st, ratio, problem, config, console())
    return 1 if problem else 0


async def _stats(
    config: Config, server: str | None, top: int
) -> tuple[Stats, HitRatio | None, str]:
    async with build(config) as parts:
        st = stats(await scan(parts.storage, local_disk(parts)), top)
        if not server:
            return st, None, ""
        try:
            return st, await hit_ratio(server, parts.session), ""
        except UpstreamError as e:
            return st, None, str(e)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def render_stats(
    st: Stats, ratio: HitRatio | None, problem: str, config: Config, out: Console
) -> None:
    say(out, f"cache {config.cache.cache_dir}")
    kinds = Table(title="contents", title_justify="left")
    for col in ("kind", "files", "bytes"):
        kinds.add_column(col, justify="left" if col == "kind" else "right")
    labels = {
        "version": "module files (.info .mod .zip + sidecars)",
        "mutable": "lists, @latest, queries",
        "sumdb": "checksum database tiles and lookups",
        "state": "gomirror state",
        "other": "other",
    }
    for kind, (files, size) in st.by_kind.items():
        if files:
            kinds.add_row(labels[kind], str(files), human_bytes(size))
    kinds.add_row("total", str(st.files), human_bytes(st.bytes))
    out.print(kinds)
    now = time.time()
    line = f"{st.modules} modules, {st.versions} versions, {st.zips} zips"
    if st.oldest and st.newest:
        line += (
            f"; oldest {st.oldest.module}@{st.oldest.version} ({human_age(now - st.oldest.cached_at)} ago),"
            f" newest {st.newest.module}@{st.newest.version} ({human_age(now - st.newest.cached_at)} ago)"
        )
    say(out, line)
    if st.top:
        table = Table(title="largest modules", title_justify="left")
        table.add_column("module", overflow="fold")
        table.add_column("versions", justify="right")
        table.add_column("bytes", justify="right")
        for m in st.top:
            table.add_row(m.module, str(m.versions), human_bytes(m.bytes))
        out.print(table)
    if ratio is not None:
        table = Table(title=f"hit ratio of {ratio.server} since it started", title_justify="left")
        for col in ("endpoint", "hit", "miss", "stale", "ratio"):
            table.add_column(col, justify="left" if col == "endpoint" else "right")
        for ep, counts in sorted(ratio.counts.items()):
            table.add_row(
                ep,
                *(f"{counts.get(r, 0):.0f}" for r in ("hit", "miss", "stale")),
                _pct(ratio.ratio(ep)),
            )
        table.add_row("all", "", "", "", _pct(ratio.ratio()))
        out.print(table)
    if problem:
        say(out, f"cannot read the hit ratio: {problem}")


# --- gc ------------------------------------------------------------------------------------


def run_gc(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    if args.max_size is None and args.unused_for is None:
        raise ConfigError("gc needs --max-size SIZE or --unused-for DURATION (or both)")
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    unused = parse_duration(args.unused_for) if args.unused_for is not None else None
    p, outcome = asyncio.run(_gc(config, max_size, unused, dry_run=bool(args.dry_run)))
    evicted = p.evict if outcome is None else outcome.evicted
    in_use = p.in_use + ([] if outcome is None else outcome.in_use)
    errors = [] if outcome is None else outcome.errors
    freed = sum(v.size for v in evicted)
    after = p.total - freed
    reached = max_size is None or after <= max_size
    data = {
        "dry_run": bool(args.dry_run),
        "bytes_before": p.total,
        "bytes_after": after,
        "freed": freed,
        "evicted": [_version_json(v, p) for v in evicted],
        "in_use": [f"{v.module}@{v.version}" for v in in_use],
        "errors": errors,
        "target_reached": reached,
    }
    if args.json:
        _emit(args, data)
    else:
        render_gc(data, evicted, p, console())
    return 0 if reached and not errors else 1


def _version_json(v: Version, p: gc_tool.Plan) -> dict[str, Any]:
    return {
        "module": v.module,
        "version": v.version,
        "bytes": v.size,
        "last_used": v.last_used,
        "reason": p.reasons.get((v.module, v.version), ""),
    }


async def _gc(
    config: Config, max_size: int | None, unused: float | None, *, dry_run: bool
) -> tuple[gc_tool.Plan, gc_tool.Outcome | None]:
    async with build(config) as parts:
        disk = local_disk(parts)
        entries = await scan(parts.storage, disk)
        busy: set[gc_tool.Inode] = set()
        holders: set[str] = set()
        inodes: dict[str, gc_tool.Inode] = {}
        if disk is not None:
            busy, holders = await asyncio.to_thread(gc_tool.open_files, disk.root)
            inodes = await asyncio.to_thread(gc_tool.inodes_of, disk.root, [e.key for e in entries])
        uses, logs = await read_uses(parts.storage)
        p = gc_tool.plan(
            entries, max_size=max_size, unused_for=unused, busy=busy, inodes=inodes, uses=uses
        )
        if dry_run:
            return p, None
        root = disk.root if disk is not None else None
        outcome = await gc_tool.collect(p.evict, parts.storage, parts.coordinator, root, holders)
        gone = {version_id(v.module, v.version) for v in outcome.evicted}
        cached = {version_id(e.module, e.version) for e in entries if e.kind is Kind.VERSION}
        left = {k: t for k, t in uses.items() if k in cached and k not in gone}
        with contextlib.suppress(GomirrorError):  # a failed compaction is retried next time
            await compact(parts.storage, logs, left)
        if outcome.evicted:
            names = ", ".join(f"{v.module}@{v.version}" for v in outcome.evicted)
            await parts.events.audit(
                "cache_gc",
                "gomirror cache gc",
                file="zip+mod+info",
                detail=f"evicted {len(outcome.evicted)} versions"
                f" ({sum(v.size for v in outcome.evicted)} bytes): {names}",
            )
        return p, outcome


def render_gc(data: dict[str, Any], evicted: list[Version], p: gc_tool.Plan, out: Console) -> None:
    now = time.time()
    verb = "would evict" if data["dry_run"] else "evicted"
    if evicted:
        table = Table(title=verb, title_justify="left")
        for col in ("module@version", "bytes", "last used", "why"):
            table.add_column(col, justify="right" if col == "bytes" else "left", overflow="fold")
        for v in evicted:
            why = p.reasons.get((v.module, v.version), "")
            table.add_row(
                f"{v.module}@{v.version}",
                human_bytes(v.size),
                f"{human_age(now - v.last_used)} ago",
                "unused" if why == "unused" else "over --max-size",
            )
        out.print(table)
    for name in data["in_use"]:
        say(out, f"kept {name}: being served right now")
    for err in data["errors"]:
        say(out, f"ERROR {err}")
    say(
        out,
        f"{verb} {len(evicted)} versions ({human_bytes(data['freed'])});"
        f" cache {human_bytes(data['bytes_before'])} -> {human_bytes(data['bytes_after'])}",
    )
    if not data["target_reached"]:
        say(
            out,
            "the cache is still over --max-size: what is left is in use, or is checksum-database"
            " and gomirror state gc never removes; raise --max-size or run gc again later",
        )


# --- purge ---------------------------------------------------------------------------------


def run_purge(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    targets, force = list(args.targets), bool(args.force)
    if args.server:
        token = args.token or config.server.admin_token
        results, problems = asyncio.run(_remote_purge(args.server, targets, token, force=force))
    else:
        results, problems = asyncio.run(_purge(config, targets, force=force))
    if args.json:
        _emit(args, {"purged": [r.to_json() for r in results], "errors": problems})
    else:
        out = console()
        for r in results:
            what = ", ".join(r.removed) if r.removed else "nothing cached"
            say(out, f"{r.target}: removed {len(r.removed)} ({what})")
        for line in problems:
            say(out, f"ERROR {line}")
    return 1 if problems else 0


async def _purge(
    config: Config, targets: list[str], *, force: bool
) -> tuple[list[Purged], list[str]]:
    results: list[Purged] = []
    problems: list[str] = []
    async with build(config) as parts:
        for t in targets:
            try:
                results.append(
                    await purge(
                        parts.storage,
                        t,
                        events=parts.events,
                        force=force,
                        who="gomirror cache purge",
                    )
                )
            except (Refused, InvalidRequest, GomirrorError) as e:
                problems.append(f"{t}: {e}")
    return results, problems


async def _remote_purge(
    server: str, targets: list[str], token: str, *, force: bool
) -> tuple[list[Purged], list[str]]:
    results: list[Purged] = []
    problems: list[str] = []
    async with aiohttp.ClientSession() as session:
        for t in targets:
            try:
                results.append(await remote_purge(server, t, token, session, force=force))
            except GomirrorError as e:
                problems.append(f"{t}: {e}")
    return results, problems
