"""gc evicts the least recently used module versions from a cache: ``cache gc``'s logic.

:func:`plan` chooses, from an inventory, whole module versions (``.info``,
``.mod``, ``.zip`` and their sidecars together) to evict: first every
version unused for longer than ``unused_for`` seconds, then, least recently
used first, as many more as it takes to bring the whole cache under
``max_size`` bytes. Only version files are candidates: the checksum
database's tiles, lookups and tree heads (``sumdb/``, ``_gomirror/sumdb/``)
and gomirror's other state are never touched, and they count towards the
size. "Used" is the newest access or write time of the version's files or
the last read a server recorded for it (see :mod:`gomirror.tools.inventory`
and :mod:`gomirror.storage.lastuse`); after a real run the read log is
compacted to the versions that are left.

:func:`collect` carries a plan out, version by version, and never removes a
file a request is serving: a version with a file open in any process it can
see (``/proc/<pid>/fd``; gomirror's servers keep a lock file of the cache
open, which is how they are found) is kept and reported ``in use``, checked
again just before its files go, and each deletion runs inside the
coordinator's ``once`` for the key of the file it removes, so it waits for
a fetch of that file in progress, in this process or another, and an
instance refetching it meanwhile (on shared storage) never sees its new
sidecar deleted under its new file: each file goes, then its sidecar, under
that file's lock; the zip first, where the in-use check is made. When a module loses a version, its cached list and ``@latest``
are dropped too, so they are fetched (or, offline, rebuilt) without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gomirror.coordination.base import Coordinator
from gomirror.errors import GomirrorError
from gomirror.module.paths import escape_path
from gomirror.storage.base import Storage
from gomirror.tools.inventory import Entry, Version, versions

Inode = tuple[int, int]


@dataclass
class Plan:
    """What gc will evict, and why it may not reach its target."""

    total: int  # bytes in the cache before
    evict: list[Version] = field(default_factory=list)
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)  # (m, v) → "unused"/"size"
    in_use: list[Version] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(v.size for v in self.evict)

    @property
    def after(self) -> int:
        return self.total - self.freed


def plan(
    entries: list[Entry],
    *,
    max_size: int | None,
    unused_for: float | None,
    busy: set[Inode] | None = None,
    inodes: dict[str, Inode] | None = None,
    uses: Mapping[str, float] | None = None,
    now: float | None = None,
) -> Plan:
    """Choose the versions to evict (see the module docstring); uses: recorded reads by id."""
    now = time.time() if now is None else now
    p = Plan(total=sum(e.size for e in entries))
    candidates = sorted(versions(entries, uses), key=lambda v: (v.last_used, v.module, v.version))
    busy, inodes = busy or set(), inodes or {}
    left = p.total
    for v in candidates:
        reason = None
        if unused_for is not None and now - v.last_used > unused_for:
            reason = "unused"
        elif max_size is not None and left > max_size:
            reason = "size"
        if reason is None:
            continue
        if any(inodes.get(k) in busy for k in v.keys):
            p.in_use.append(v)
            continue
        p.evict.append(v)
        p.reasons[(v.module, v.version)] = reason
        left -= v.size
    return p


# --- files in use -----------------------------------------------------------------------


def _fds(pid: str) -> Iterable[Path]:
    try:
        return list((Path("/proc") / pid / "fd").iterdir())
    except OSError:
        return []  # gone, or not ours to see


def _open_under(root: Path, pids: Iterable[str]) -> tuple[set[Inode], set[str]]:
    """(dev, inode) of every regular file open in pids, and the pids holding one under root."""
    busy: set[Inode] = set()
    holders: set[str] = set()
    prefix = str(root.resolve()) + os.sep
    for pid in pids:
        for fd in _fds(pid):
            try:
                target = str(fd.readlink())
                st = fd.stat()
            except OSError:
                continue
            if target.startswith(prefix):
                holders.add(pid)
                busy.add((st.st_dev, st.st_ino))
    return busy, holders


def open_files(root: Path) -> tuple[set[Inode], set[str]]:
    """Files under root open in any visible process, and those processes (Linux ``/proc``)."""
    try:
        pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return set(), set()
    return _open_under(root, pids)


def inodes_of(root: Path, keys: Iterable[str]) -> dict[str, Inode]:
    out: dict[str, Inode] = {}
    for k in keys:
        with contextlib.suppress(OSError):
            st = (root / k).stat()
            out[k] = (st.st_dev, st.st_ino)
    return out


# --- carrying it out ----------------------------------------------------------------------


def _pairs(v: Version) -> list[list[str]]:
    """The version's keys as [file, its sidecar] pairs, the zip's first (the in-use check is on it)."""
    files: dict[str, list[str]] = {}
    for key in v.keys:  # files before sidecars
        files.setdefault(key.removesuffix(".json"), []).append(key)
    first = v.zip_key or next(iter(files))
    return [[first, *(k for k in files.pop(first) if k != first)], *files.values()]


@dataclass
class Outcome:
    evicted: list[Version] = field(default_factory=list)
    in_use: list[Version] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def collect(
    chosen: list[Version],
    storage: Storage,
    coordinator: Coordinator,
    root: Path | None,
    holders: set[str],
) -> Outcome:
    """Evict the chosen versions (see the module docstring); root is the local cache, if any."""
    out = Outcome()
    touched: set[str] = set()
    for v in chosen:
        pairs = _pairs(v)

        async def evict_first(v: Version = v, first: list[str] = pairs[0]) -> bool:
            if root is not None:
                busy, _ = await asyncio.to_thread(_open_under, root, holders)
                if any(i in busy for i in inodes_of(root, v.keys).values()):
                    return False
            for key in first:
                await storage.delete(key)
            return True

        async def evict_rest(pairs: list[list[str]] = pairs) -> None:
            for pair in pairs[1:]:

                async def delete(pair: list[str] = pair) -> None:
                    for key in pair:
                        await storage.delete(key)

                await coordinator.once(pair[0], delete)

        try:
            done = await coordinator.once(pairs[0][0], evict_first)
            if done:
                await evict_rest()
        except (GomirrorError, OSError) as e:  # one version failing must not stop the rest
            out.errors.append(f"{v.module}@{v.version}: {str(e).splitlines()[0][:200]}")
            continue
        if done:
            out.evicted.append(v)
            touched.add(v.module)
        else:
            out.in_use.append(v)
    for module in sorted(touched):
        esc = escape_path(module)
        for key in (f"{esc}/@v/list", f"{esc}/@latest"):
            with contextlib.suppress(GomirrorError, OSError):
                await storage.delete(key)
    return out
