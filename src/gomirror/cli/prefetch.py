"""cli.prefetch is ``gomirror prefetch [go.mod | go.sum | go.work | DIR ...]``: warm a cache before the build.

It resolves the module graph the go command will need (see
``gomirror.tools.graph``) and fetches every ``.info``, ``.mod`` and ``.zip``
of it, ``--jobs`` at a time: into the local cache through gomirror's own
service (verified like any other fetch; ``--cache-dir``, ``--upstream`` and
``--sumdb`` as for ``serve``), or through a running gomirror with
``--server URL``. A progress bar runs on a terminal; the report lists every
failure with why and ends with the summary line; ``--json`` prints one JSON
object instead. Exit status: 0 when every file is in the cache, 1 when any
failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gomirror.app import build
from gomirror.cli.common import (
    add_config_options,
    add_jobs_and_json,
    config_from_args,
    jobs_from_args,
)
from gomirror.cli.tooling import console, human_bytes, progress_console, say, tool_logging
from gomirror.config import Config
from gomirror.errors import ConfigError
from gomirror.tools.graph import Inputs, load_inputs
from gomirror.tools.prefetch import (
    DEFAULT_JOBS,
    FileResult,
    Report,
    ServerSource,
    ServiceSource,
    Source,
    prefetch,
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "prefetch",
        help="fetch every module a project needs into the cache",
        description="Resolve the module graph of go.mod/go.sum/go.work files (or project "
        "directories) and fetch every .info, .mod and .zip it needs, verified, into the cache "
        "or through a running gomirror.",
    )
    p.add_argument(
        "targets",
        nargs="*",
        type=Path,
        metavar="go.mod|go.sum|go.work|DIR",
        help="what to prefetch (default: the current directory)",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="warm a running gomirror (or any GOPROXY) at URL instead of the local cache",
    )
    add_jobs_and_json(p, DEFAULT_JOBS, "files fetched", "one JSON object")
    add_config_options(p, "prefetch")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    jobs = jobs_from_args(args)
    if args.server and not args.server.startswith(("http://", "https://")):
        raise ConfigError(f"invalid --server {args.server!r}: give http://HOST:PORT")
    inputs = load_inputs(list(args.targets) or [Path.cwd()])
    report = asyncio.run(_run(config, inputs, args.server, jobs))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        render(report, console())
    sys.stdout.flush()
    return report.exit_code


async def _run(config: Config, inputs: Inputs, server: str | None, jobs: int) -> Report:
    async with build(config) as parts:
        source: Source = (
            ServerSource(server, parts.session)
            if server
            else ServiceSource(parts.service, parts.storage)
        )
        shown = progress_console()
        if shown is None:
            return await prefetch(inputs, source, jobs=jobs)
        with Progress(
            TextColumn("prefetch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=shown,
            transient=True,
        ) as bar:
            task = bar.add_task("files", total=0, failed=0)
            failed = 0

            def on_progress(event: str, result: FileResult | None) -> None:
                nonlocal failed
                if event == "start":
                    bar.update(task, total=(bar.tasks[0].total or 0) + 1)
                    return
                if result is not None and result.outcome == "failed":
                    failed += 1
                bar.update(task, advance=1, failed=failed)

            return await prefetch(inputs, source, jobs=jobs, on_progress=on_progress)


def render(report: Report, out: Console) -> None:
    """Print failures, the counts per file kind, and the summary line."""
    failures = report.to_json()["failures"]
    assert isinstance(failures, list)
    if failures:
        table = Table(title="failed", title_justify="left")
        table.add_column("module@version", overflow="fold")
        table.add_column("file")
        table.add_column("why", overflow="fold")
        for f in failures:
            table.add_row(f"{f['module']}@{f['version']}", f["file"] or "-", f["error"])
        out.print(table)
    counts = Table(title=f"from {report.source}", title_justify="left")
    for col in ("file", "fetched", "already cached", "failed"):
        counts.add_column(col, justify="right" if col != "file" else "left")
    for kind in ("info", "mod", "zip"):
        counts.add_row(
            f".{kind}",
            str(report.count("fetched", kind)),
            str(report.count("cached", kind)),
            str(report.count("failed", kind)),
        )
    out.print(counts)
    g = report.graph
    if g.excluded:
        say(out, "excluded: " + ", ".join(sorted(str(mv) for mv in g.excluded)))
    say(out, f"{report.summary()} ({human_bytes(report.bytes_fetched)} in {report.seconds:.1f}s)")
    if report.exit_code:
        say(out, "some files are missing: fix what each line says and run gomirror prefetch again")
