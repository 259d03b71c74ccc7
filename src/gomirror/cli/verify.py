"""cli.verify re-checks every cached module file: ``gomirror verify [--quarantine]``.

For each cached ``<esc>/@v/<v>.zip`` and ``.mod`` it recomputes the ``h1:``
(the zip rules are applied again), compares it with the sidecar ``<file>.json``
written when the file was cached, and with the primary checksum database
(``SumdbVerifier.check``; modules matching the no-sumdb patterns, or every
module with ``--sumdb off``, are only compared with the sidecar and count as
skipped). One line is printed per problem, then the summary
``checked N files: M ok, K mismatched, S skipped``. With ``--quarantine`` a
mismatched file and its sidecar move to ``_gomirror/quarantine/<key>``: gomirror
no longer serves them and fetches (and verifies) the file again on the next
request. Exit status: 0 when nothing is mismatched, 1 when something is, 2 when
the checksum database could not be consulted for some file.

It reads the configured storage (``storage = "s3"`` too) through ``app.build``,
so it may run against a cache or bucket that instances are serving: it only
reads, a file that left the cache meanwhile (``cache gc``) counts as gone,
not as a problem, and quarantining is the only thing it writes or deletes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gomirror.app import build
from gomirror.cli.common import add_config_options, config_from_args
from gomirror.config import Config
from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    StorageError,
    SumdbError,
    UpstreamError,
    VerificationError,
)
from gomirror.logs import setup_logging
from gomirror.module.dirhash import hash_gomod
from gomirror.module.modzip import check_zip
from gomirror.module.paths import unescape_path, unescape_version
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.verified import Verifier

QUARANTINE_PREFIX = "_gomirror/quarantine/"
_SKIP_PREFIXES = ("_gomirror/", "sumdb/")

Kind = Literal["zip", "mod"]
Outcome = Literal["ok", "mismatched", "skipped", "error", "gone"]


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One cached module file: storage key, module, version, kind."""

    key: str
    module: str
    version: str
    kind: Kind

    @property
    def what(self) -> str:
        return f"{self.module}@{self.version}" + ("/go.mod" if self.kind == "mod" else "")


@dataclass
class Report:
    """Counts and problem lines of one verify run."""

    ok: int = 0
    mismatched: int = 0
    skipped: int = 0
    errors: int = 0
    gone: int = 0  # listed, then evicted before it was read: not part of the cache any more
    problems: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def checked(self) -> int:
        return self.ok + self.mismatched + self.skipped + self.errors

    def summary(self) -> str:
        text = (
            f"checked {self.checked} files: {self.ok} ok, {self.mismatched} mismatched,"
            f" {self.skipped} skipped"
        )
        if self.errors:
            text += f", {self.errors} not verifiable (checksum database unavailable)"
        if self.gone:
            text += f" ({self.gone} more left the cache while it ran)"
        return text

    @property
    def exit_code(self) -> int:
        if self.mismatched:
            return 1
        if self.errors:
            return 2
        return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("verify", help="re-check every cached module against the checksum database")
    add_config_options(p, "verify")
    p.add_argument(
        "--quarantine",
        action="store_true",
        help="move mismatched files (and their sidecars) to _gomirror/quarantine/",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    setup_logging(config.server.log_level, access_log=False)
    report = asyncio.run(verify_cache(config, quarantine=bool(args.quarantine)))
    for line in report.problems:
        print(line)
    print(report.summary())
    sys.stdout.flush()
    return report.exit_code


def parse_key(key: str) -> CachedFile | None:
    """Return the module file a storage key holds, or None for anything else."""
    if key.startswith(_SKIP_PREFIXES):
        return None
    esc_path, sep, file = key.rpartition("/@v/")
    if not sep or "/" in file:
        return None
    base, dot, ext = file.rpartition(".")
    if not dot or ext not in ("zip", "mod"):
        return None
    try:
        module, version = unescape_path(esc_path), unescape_version(base)
    except GomirrorError:
        return None
    return CachedFile(key, module, version, "zip" if ext == "zip" else "mod")


async def verify_cache(config: Config, *, quarantine: bool = False) -> Report:
    """Check every cached module file (see the module docstring)."""
    report = Report()
    async with build(config) as parts:
        storage, disk, verifier = parts.storage, parts.disk, parts.verifier
        on_disk = config.storage.storage == "disk"
        keys = [k async for k in storage.keys()]  # noqa: SIM118 - an async iterator
        files = [f for k in keys if (f := parse_key(k)) is not None]
        for f in files:
            outcome, problem = await _check_file(storage, disk, verifier, f)
            if outcome == "gone":
                report.gone += 1
                continue
            if outcome == "ok":
                report.ok += 1
            elif outcome == "skipped":
                report.skipped += 1
            elif outcome == "error":
                report.errors += 1
            else:
                report.mismatched += 1
            if problem:
                report.problems.append(problem)
            if outcome == "mismatched" and quarantine:
                if on_disk:
                    dst = str(_quarantine(disk.root, f.key))
                else:
                    dst = await _quarantine_remote(storage, disk, f.key)
                report.quarantined.append(f.key)
                report.problems.append(f"{f.key}: moved to {dst}")
    return report


async def _fetch_to_temp(storage: Storage, disk: DiskStorage, key: str) -> Path | None:
    """The object copied to a temp file of the local cache directory, or None when missing."""
    chunks = await storage.stream(key)
    if chunks is None:
        return None
    tmp = disk.new_temp_path(".verify")
    try:
        with tmp.open("wb") as out:
            async for chunk in chunks:
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


async def _check_file(
    storage: Storage, disk: DiskStorage, verifier: Verifier, f: CachedFile
) -> tuple[Outcome, str]:
    local = await storage.local_path(f.key)
    tmp: Path | None = None
    try:
        if local is None:
            tmp = await _fetch_to_temp(storage, disk, f.key)
            if tmp is None:
                return "gone", ""
        path = local or tmp
        assert path is not None
        try:
            if f.kind == "zip":
                h1 = (await asyncio.to_thread(check_zip, path, f.module, f.version)).h1
            else:
                h1 = hash_gomod(path.read_bytes())
        except FileNotFoundError:
            return "gone", ""
        except (GomirrorError, OSError) as e:
            first = str(e).split("\n")[0]
            return "mismatched", f"MISMATCH {f.what}: cached file is invalid: {first}"
    except StorageError as e:
        return "error", f"ERROR {f.what}: storage: {str(e).splitlines()[0][:300]}"
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    try:
        recorded = _sidecar_h1(await storage.get(f.key + ".json"))
        if recorded is not None and recorded != h1 and await storage.stat(f.key) is None:
            return "gone", ""  # evicted between the two reads: its sidecar went with it
    except StorageError as e:
        return "error", f"ERROR {f.what}: storage: {str(e).splitlines()[0][:300]}"
    if recorded is not None and recorded != h1:
        return (
            "mismatched",
            f"MISMATCH {f.what}: cached file has {h1}, recorded when cached: {recorded}",
        )
    try:
        verdict = await verifier.check(f.module, f.version, f.kind, h1)
    except ChecksumMismatch as e:
        return (
            "mismatched",
            f"MISMATCH {f.what}: cached file has {h1}, checksum database has {e.expected}",
        )
    except SumdbError as e:
        return "error", f"ERROR {f.what}: {str(e).split(chr(10))[0]}"
    except VerificationError as e:
        return "mismatched", f"MISMATCH {f.what}: {str(e).split(chr(10))[0]}"
    except UpstreamError as e:
        return "error", f"ERROR {f.what}: checksum database unavailable: {str(e)[:300]}"
    note = "" if recorded is not None else f"NOTE {f.what}: no sidecar {f.key}.json"
    return ("ok" if verdict.verified else "skipped"), note


def _sidecar_h1(data: bytes | None) -> str | None:
    try:
        meta = json.loads(data) if data is not None else None
    except ValueError:
        return None
    h1 = meta.get("h1") if isinstance(meta, dict) else None
    return h1 if isinstance(h1, str) else None


async def _quarantine_remote(storage: Storage, disk: DiskStorage, key: str) -> str:
    """Copy key and its sidecar under ``_gomirror/quarantine/``, then delete the originals."""
    # Object stores have no rename. The sidecar goes first, as on disk: a file without
    # its sidecar is still checked (and, on S3, no longer served), never the reverse.
    sidecar = await storage.get(key + ".json")
    if sidecar is not None:
        await storage.put_bytes(QUARANTINE_PREFIX + key + ".json", sidecar)
        await storage.delete(key + ".json")
    tmp = await _fetch_to_temp(storage, disk, key)
    if tmp is not None:
        try:
            await storage.put_file(QUARANTINE_PREFIX + key, tmp)
        finally:
            tmp.unlink(missing_ok=True)
    await storage.delete(key)
    return QUARANTINE_PREFIX + key


def _quarantine(root: Path, key: str) -> Path:
    """Move key and its sidecar under ``_gomirror/quarantine/`` (atomic renames)."""
    dst = root / (QUARANTINE_PREFIX + key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # The sidecar goes first: a file without sidecar is still checked, never the reverse.
    with contextlib.suppress(FileNotFoundError):
        (root / (key + ".json")).replace(root / (QUARANTINE_PREFIX + key + ".json"))
    (root / key).replace(dst)
    return dst
