"""cli.bundle is ``gomirror cache export`` and ``gomirror cache import``: carry modules into an air-gapped network.

- ``export (--go-mod FILE | --all) OUT.tar``: a bundle of module files,
  their sidecars and the checksum-database proofs to verify them offline
  (``gomirror.tools.bundle``). With ``--go-mod`` the project's graph is
  resolved and fetched first, exactly as ``prefetch`` does, so the bundle
  is complete; with ``--all`` every cached version goes in. A missing file
  writes no bundle.
- ``import IN.tar [--unverified]``: verify everything in the bundle against
  this gomirror's checksum-database key, then add what the cache lacks;
  one failure refuses the whole bundle and changes nothing.

Exit status: 0 done, 1 refused or incomplete (every reason is printed),
2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from gomirror.app import Parts, build
from gomirror.cli.common import config_from_args
from gomirror.cli.tooling import console, human_bytes, say, tool_logging
from gomirror.config import Config
from gomirror.errors import ConfigError
from gomirror.sumdb.verifier import SumdbVerifier
from gomirror.tools.bundle import (
    BundleRefused,
    ExportReport,
    ImportReport,
    Skips,
    export_bundle,
    import_bundle,
)
from gomirror.tools.graph import ModuleVersion, load_inputs
from gomirror.tools.inventory import scan, versions
from gomirror.tools.prefetch import ServiceSource, prefetch
from gomirror.wiring import join_patterns


def add_parsers(cmds: Any) -> None:
    e = cmds.add_parser("export", help="write a bundle of modules and their proofs to a tar file")
    e.add_argument("out", type=Path, metavar="OUT.tar")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--go-mod", type=Path, metavar="FILE", help="the graph of this go.mod")
    which.add_argument("--all", action="store_true", help="every cached module version")
    e.set_defaults(run=run_export)

    i = cmds.add_parser("import", help="verify a bundle, then add its modules to the cache")
    i.add_argument("bundle", type=Path, metavar="IN.tar")
    i.add_argument(
        "--unverified",
        action="store_true",
        help="with sumdb = off: accept files checked only against the bundle's sidecars",
    )
    i.set_defaults(run=run_import)


def _skips(parts: Parts) -> Skips:
    """The no-sumdb rule of this configuration (the verifier's own)."""
    cfg = parts.config
    if not parts.sumdb_clients:
        return lambda _module: True
    rule = SumdbVerifier(
        parts.sumdb_clients[0], nosumdb=join_patterns(cfg.sumdb.nosumdb, cfg.direct.private)
    )
    return rule.skips


# --- export --------------------------------------------------------------------------------


def run_export(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    out: Path = args.out
    if not out.parent.is_dir():
        raise ConfigError(f"{out}: the directory {out.parent} does not exist")
    rep = asyncio.run(_export(config, args.go_mod, out))
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
        sys.stdout.flush()
    else:
        c = console()
        for line in rep.missing:
            say(c, f"MISSING {line}")
        if rep.missing:
            say(c, "no bundle written: fetch what is missing (online) and export again")
        else:
            db = ", ".join(f"{n} tree {s}" for n, s in rep.sumdb.items()) or "none (sumdb off)"
            say(
                c,
                f"wrote {out}: {rep.versions} versions, {rep.files} files,"
                f" {human_bytes(rep.bytes)}; checksum-database proofs: {db}",
            )
    return 1 if rep.missing else 0


async def _export(config: Config, go_mod: Path | None, out: Path) -> ExportReport:
    async with build(config) as parts:
        selection: dict[ModuleVersion, set[str]] = {}
        missing: list[str] = []
        if go_mod is not None:
            report = await prefetch(
                load_inputs([go_mod]), ServiceSource(parts.service, parts.storage)
            )
            for f in report.failures:
                missing.append(f"{f.mv} {f.kind}: {f.error}")
            missing += [f"{mv}: {why}" for mv, why in sorted(report.walk_failures.items())]
            for mv in report.graph.versions:
                selection[mv] = {"info", "mod"} | ({"zip"} if mv in report.graph.zips else set())
        else:
            for v in versions(await scan(parts.storage)):
                kinds = {e.file for e in v.entries if e.file in ("info", "mod", "zip")}
                if kinds:
                    selection[ModuleVersion(v.module, v.version)] = kinds
        if missing:
            rep = ExportReport(out)
            rep.missing = missing
            return rep
        client = parts.sumdb_clients[0] if parts.sumdb_clients else None
        return await export_bundle(
            parts.storage,
            selection,
            out,
            client=client,
            skips=_skips(parts),
            tmp=parts.disk.temp_dir(),
        )


# --- import --------------------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    if not args.bundle.is_file():
        raise ConfigError(f"{args.bundle}: no such file")
    try:
        rep = asyncio.run(_import(config, args.bundle, unverified=bool(args.unverified)))
    except BundleRefused as e:
        if args.json:
            print(json.dumps({"bundle": str(args.bundle), "refused": e.reasons}, indent=2))
        else:
            c = console()
            for line in e.reasons:
                say(c, f"REFUSED {line}")
            say(c, f"bundle {args.bundle} refused: nothing was added to the cache")
        sys.stdout.flush()
        return 1
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        c = console()
        for mv in rep.unverified:
            say(c, f"NOTE {mv}: not checked against a checksum database")
        db = f"{rep.sumdb} tree {rep.tree_size}" if rep.sumdb else "none (sumdb off)"
        say(
            c,
            f"imported {args.bundle}: {rep.versions} versions verified ({db}):"
            f" {rep.files_added} files added, {rep.files_present} already cached,"
            f" {rep.proofs_added} proofs added",
        )
    sys.stdout.flush()
    return 0


async def _import(config: Config, bundle: Path, *, unverified: bool) -> ImportReport:
    async with build(config) as parts:
        spec = config.sumdb.sumdb[0] if config.sumdb.sumdb else None
        rep = await import_bundle(
            bundle,
            parts.storage,
            spec=spec,
            skips=_skips(parts),
            tmp=parts.disk.temp_dir(),
            unverified=unverified,
        )
        if rep.files_added or rep.proofs_added:
            await parts.events.audit(
                "cache_imported",
                "gomirror cache import",
                file="bundle",
                detail=f"{bundle.name}: {rep.versions} versions, {rep.files_added} files and"
                f" {rep.proofs_added} proofs added, {len(rep.unverified)} without the database",
            )
        return rep
