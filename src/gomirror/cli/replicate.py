"""cli.replicate is ``gomirror replicate --from STORAGE --to STORAGE [--watch] [--json]``.

It copies the verified module files of one storage into another (see
``gomirror.tools.replicate`` for what is copied and checked). STORAGE is one of:

- ``s3://BUCKET[/PREFIX]``: a bucket of an S3-compatible store. Endpoint,
  region, addressing, signature, TLS options and credentials are this
  machine's configuration's (``s3_*`` in ``--config`` FILE, ``GOMIRROR_S3_*``),
  except that ``--from-endpoint``/``--from-region``/``--from-addressing`` (and
  the ``--to-`` ones) set them for one side;
- ``config:FILE``: the storage a gomirror TOML file configures (its
  ``storage`` and ``s3_*`` settings, or its ``cache_dir``), read on its own
  (the environment's ``GOMIRROR_*`` do not apply to it): one file per region,
  credentials included, when the two sides need different keys;
- ``config``: the storage of this machine's configuration itself;
- a directory (or ``file://DIR``): a disk cache; ``--from`` must exist.

Zips pass through a local temp file: in the disk side's own temp area when
one side is a disk (a rename or a hard link, no copy), else under
``cache_dir``. A progress bar runs on a terminal; the report lists every file
not copied with why, then the summary; ``--json`` prints one JSON object
instead (with ``--watch``: one line per pass). ``--watch`` runs a pass every
``--interval`` until SIGINT/SIGTERM. Exit status: 0 when every verified file
is in the target, 1 when a file was refused, conflicted or failed (or a
storage could not be reached), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from gomirror.cli.common import (
    add_config_options,
    add_jobs_and_json,
    config_from_args,
    jobs_from_args,
)
from gomirror.cli.tooling import (
    console,
    human_bytes,
    parse_duration,
    progress_console,
    say,
    tool_logging,
)
from gomirror.config import BY_KEY, Config, StorageSection, load_config
from gomirror.errors import ConfigError, StorageError
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage
from gomirror.storage.tempfiles import TempArea
from gomirror.tools.replicate import (
    DEFAULT_INTERVAL,
    DEFAULT_JOBS,
    FileResult,
    NewTemp,
    Report,
    replicate,
    watch,
)

SIDE_SETTINGS = ("endpoint", "region", "addressing")  # --from-<x> / --to-<x> → s3_<x>
TEMP_SUBDIR = "_gomirror/tmp"
LABEL = {
    "refused": "REFUSED",
    "conflict": "CONFLICT",
    "failed": "FAILED",
    "unverified": "NOTE",
    "gone": "NOTE",
}


class Unreachable(Exception):
    """A storage named on the command line does not answer (exit status 1)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replicate",
        help="copy verified module files between storages (S3 buckets, disk caches)",
        description="Copy every verified .zip/.mod (with its sidecar) and canonical .info from "
        "one storage to another, re-checking each h1: on the way; skip what the target has.",
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="STORAGE",
        help="s3://BUCKET[/PREFIX], config:FILE, config, or a cache directory",
    )
    p.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="STORAGE",
        help="where to copy to (same forms as --from)",
    )
    for side in ("from", "to"):
        for name in SIDE_SETTINGS:
            p.add_argument(
                f"--{side}-{name}",
                dest=f"{side}_{name}",
                metavar=name.upper(),
                help=f"s3_{name} for the --{side} bucket",
            )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep copying new files every --interval until interrupted",
    )
    p.add_argument(
        "--interval",
        default=f"{DEFAULT_INTERVAL:.0f}s",
        metavar="DURATION",
        help=f"--watch: time between passes (default {DEFAULT_INTERVAL:.0f}s)",
    )
    add_jobs_and_json(p, DEFAULT_JOBS, "files copied", "a JSON summary")
    add_config_options(p, "replicate")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    tool_logging(args, config)
    jobs_from_args(args)  # refused here, before anything is opened
    interval = parse_duration(args.interval, "--interval")
    if interval <= 0:
        raise ConfigError("invalid --interval: must be more than 0")
    try:
        code = asyncio.run(_main(args, config, interval))
    except Unreachable as e:
        print(f"gomirror replicate: {e}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return code


# --- the two storages --------------------------------------------------------


def _setting(key: str, raw: str, flag: str) -> Any:
    try:
        return BY_KEY[key].parse(raw)
    except ValueError as e:
        raise ConfigError(f"invalid {flag}: {e}") from None


def _side_section(
    spec: str, flag: str, config: Config, args: argparse.Namespace
) -> tuple[StorageSection, Path]:
    """The storage settings (and disk directory) a STORAGE argument names; ConfigError if bad."""
    if spec == "config" or spec.startswith("config:"):
        base = config
        if spec != "config":
            base = load_config(config_file=Path(spec.removeprefix("config:")), env={})
        section, root = base.storage, base.cache.cache_dir
    elif spec.startswith("s3://"):
        bucket, _, prefix = spec.removeprefix("s3://").partition("/")
        section = dataclasses.replace(
            config.storage,
            storage="s3",
            s3_bucket=_setting("s3_bucket", bucket, flag),
            s3_prefix=_setting("s3_prefix", prefix, flag),
        )
        root = config.cache.cache_dir
        if not section.s3_bucket:
            raise ConfigError(f"invalid {flag} {spec!r}: give s3://BUCKET[/PREFIX]")
    elif "://" in spec and not spec.startswith("file://"):
        raise ConfigError(
            f"invalid {flag} {spec!r}: give s3://BUCKET[/PREFIX], config:FILE, config or a directory"
        )
    else:
        section = dataclasses.replace(config.storage, storage="disk")
        root = Path(spec.removeprefix("file://")).expanduser()
    side = flag.removeprefix("--")
    changes = {
        f"s3_{name}": _setting(f"s3_{name}", raw, f"--{side}-{name}")
        for name in SIDE_SETTINGS
        if (raw := getattr(args, f"{side}_{name}", None)) is not None
    }
    if changes and section.storage != "s3":
        raise ConfigError(f"invalid --{side}-{next(iter(changes))[3:]}: {flag} is not an S3 bucket")
    if section.storage != "s3" and flag == "--from" and not root.is_dir():
        raise ConfigError(f"invalid --from {str(root)!r}: no such directory")
    return dataclasses.replace(section, **changes), root


def describe(section: StorageSection, root: Path) -> str:
    if section.storage != "s3":
        return str(root.resolve())
    where = f" at {section.s3_endpoint}" if section.s3_endpoint else ""
    return f"s3://{section.s3_bucket}/{section.s3_prefix}{where}"


async def _open(
    section: StorageSection, root: Path, flag: str, stack: contextlib.AsyncExitStack
) -> Storage:
    if section.storage != "s3":
        try:
            disk = DiskStorage(root)
        except StorageError as e:
            raise Unreachable(f"{flag}: {e}") from None
        stack.push_async_callback(disk.close)
        return disk
    # Imported here: aiobotocore costs start-up time that disk-only runs need not pay.
    from gomirror.storage.s3 import S3Settings, S3Storage

    # Every object is read once: a read cache would only cost memory.
    s3 = S3Storage(S3Settings.from_section(section, read_cache_bytes=0))
    stack.push_async_callback(s3.close)
    try:
        await s3.check()
    except StorageError as e:
        raise Unreachable(f"{flag}: {e}") from None
    return s3


def _temp_paths(
    source: Storage, target: Storage, config: Config, stack: contextlib.ExitStack
) -> NewTemp:
    """Where zips wait while they are checked: a disk side's temp area, else under cache_dir."""
    for side in (target, source):  # the target first: its put_file is then a rename
        if isinstance(side, DiskStorage):
            return side.new_temp_path
    try:
        area = TempArea(config.cache.cache_dir / TEMP_SUBDIR)
    except OSError as e:
        raise ConfigError(f"invalid setting cache_dir: {e.strerror or e}") from None
    stack.callback(area.close)
    return area.path


# --- running -----------------------------------------------------------------


async def _main(args: argparse.Namespace, config: Config, interval: float) -> int:
    sides = [
        _side_section(args.source, "--from", config, args),
        _side_section(args.target, "--to", config, args),
    ]
    names = (describe(*sides[0]), describe(*sides[1]))
    if names[0] == names[1]:
        raise ConfigError(f"invalid --to: it is the same storage as --from ({names[0]})")
    out = console()
    async with contextlib.AsyncExitStack() as stack:
        source = await _open(*sides[0], "--from", stack)
        target = await _open(*sides[1], "--to", stack)
        new_temp = _temp_paths(source, target, config, stack.enter_context(contextlib.ExitStack()))

        async def one_pass(skip: Collection[str]) -> Report:
            return await _with_progress(
                lambda **kw: replicate(
                    source, target, new_temp=new_temp, jobs=args.jobs, names=names, skip=skip, **kw
                )
            )

        if not args.watch:
            report = await one_pass(())
            if args.json:
                print(json.dumps(report.to_json(), indent=2))
            else:
                render(report, out, set())
            return report.exit_code
        return await _watch(one_pass, interval, args.json, out)


async def _watch(
    one_pass: Callable[[Collection[str]], Any], interval: float, as_json: bool, out: Console
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    shown: set[tuple[str, str]] = set()

    def on_pass(report: Report) -> None:
        if as_json:
            print(json.dumps(report.to_json()), flush=True)
        else:
            render(report, out, shown)

    try:
        last = await watch(one_pass, interval=interval, stop=stop, on_pass=on_pass)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0 if last is None else last.exit_code


async def _with_progress(start: Callable[..., Any]) -> Report:
    shown = progress_console()
    if shown is None:
        report: Report = await start()
        return report
    with Progress(
        TextColumn("replicate"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[copied]} copied, {task.fields[bad]} refused/failed"),
        TimeElapsedColumn(),
        console=shown,
        transient=True,
    ) as bar:
        task = bar.add_task("files", total=None, copied=0, bad=0)
        counts = {"copied": 0, "bad": 0}

        def on_planned(n: int) -> None:
            bar.update(task, total=n)

        def on_result(r: FileResult) -> None:
            if r.outcome == "copied":
                counts["copied"] += 1
            elif r.outcome in ("refused", "conflict", "failed"):
                counts["bad"] += 1
            bar.update(task, advance=1, copied=counts["copied"], bad=counts["bad"])

        report = await start(on_planned=on_planned, on_result=on_result)
        return report


def render(report: Report, out: Console, shown: set[tuple[str, str]]) -> None:
    """One line per file not copied (each once per run), then the summary line."""
    for r in report.problems:
        if (r.file.key, r.reason) in shown:
            continue
        shown.add((r.file.key, r.reason))
        say(out, f"{LABEL.get(r.outcome, r.outcome.upper())} {r.file.key}: {r.reason}")
    say(
        out,
        f"{report.source} -> {report.target}: {report.summary()}"
        f" ({human_bytes(report.bytes_copied)} in {report.seconds:.1f}s)",
    )
