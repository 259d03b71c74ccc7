"""inventory lists what a cache holds, sorted by what each key is: the shared ground of ``cache stats``, ``gc`` and ``export``.

:func:`scan` reads every key of a ``Storage`` with its size, write time and,
where the file is local, its access time, and :func:`classify` files each
key under one :class:`Kind`:

- ``version``: ``<esc>/@v/<v>.info|.mod|.zip`` and their sidecars
  ``<file>.json``: the immutable files of one module version;
- ``mutable``: ``<esc>/@v/list``, ``<esc>/@latest`` and the ``.info``
  answers of queries under ``_gomirror/query/``;
- ``sumdb``: checksum-database tiles and lookups under ``sumdb/``;
- ``state``: everything else under ``_gomirror/`` (tree heads, events,
  findings, direct-mode repositories);
- ``other``: anything else (a stray file; never touched by gc).

A :class:`Version` groups the files of one module version; its
``last_used`` is the newest of: its files' write and access times, and the
last read servers recorded for it (``storage.lastuse``: batched, so hits
answered from memory or from an object store count too, at no write per
hit). File access times alone are not enough: ``noatime`` mounts and
in-memory hits never change them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from gomirror.errors import GomirrorError
from gomirror.module.paths import escape_path, escape_version, unescape_path, unescape_version
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage

QUERY_PREFIX = "_gomirror/query/"
VERSION_EXTS = ("info", "mod", "zip")


class Kind(StrEnum):
    VERSION = "version"
    MUTABLE = "mutable"
    SUMDB = "sumdb"
    STATE = "state"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored object and what it is."""

    key: str
    size: int
    mtime: float
    atime: float
    kind: Kind
    module: str = ""
    version: str = ""  # for version files: the version; for queries: the query
    file: str = ""  # "info", "mod", "zip", "info.json"..., "list", "latest", "query"


@dataclass
class Version:
    """The cached files of one module version."""

    module: str
    version: str
    entries: list[Entry] = field(default_factory=list)
    used: float = 0.0  # the last read recorded by a server (storage.lastuse)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def last_used(self) -> float:
        return max([self.used, *(max(e.atime, e.mtime) for e in self.entries)])

    @property
    def cached_at(self) -> float:
        return min((e.mtime for e in self.entries), default=0.0)

    @property
    def keys(self) -> list[str]:
        """Its keys, files before sidecars (a file never outlives the facts it was stored with)."""
        return sorted((e.key for e in self.entries), key=lambda k: (k.endswith(".json"), k))

    @property
    def zip_key(self) -> str | None:
        return next((e.key for e in self.entries if e.file == "zip"), None)


def classify(key: str, size: int, mtime: float, atime: float) -> Entry:
    """File one key under its kind (see the module docstring)."""
    if key.startswith("sumdb/"):
        return Entry(key, size, mtime, atime, Kind.SUMDB)
    if key.startswith(QUERY_PREFIX):
        esc, sep, rest = key[len(QUERY_PREFIX) :].rpartition("/@v/")
        module = _module(esc) if sep else ""
        query = rest.removesuffix(".info")
        return Entry(key, size, mtime, atime, Kind.MUTABLE, module, query, "query")
    if key.startswith("_gomirror/"):
        return Entry(key, size, mtime, atime, Kind.STATE)
    if key.endswith("/@latest"):
        module = _module(key.removesuffix("/@latest"))
        if module:
            return Entry(key, size, mtime, atime, Kind.MUTABLE, module, "", "latest")
    esc, sep, name = key.rpartition("/@v/")
    module = _module(esc) if sep and "/" not in name else ""
    if not module:
        return Entry(key, size, mtime, atime, Kind.OTHER)
    if name == "list":
        return Entry(key, size, mtime, atime, Kind.MUTABLE, module, "", "list")
    sidecar = name.endswith(".json")
    base, dot, ext = name.removesuffix(".json").rpartition(".")
    if dot and ext in VERSION_EXTS:
        try:
            version = unescape_version(base)
        except GomirrorError:
            version = ""
        if version:
            file = ext + (".json" if sidecar else "")
            return Entry(key, size, mtime, atime, Kind.VERSION, module, version, file)
    return Entry(key, size, mtime, atime, Kind.OTHER)


def _module(esc: str) -> str:
    try:
        return unescape_path(esc)
    except GomirrorError:
        return ""


async def scan(storage: Storage, disk: DiskStorage | None = None, prefix: str = "") -> list[Entry]:
    """Every key under prefix, classified; ``disk`` (when storage is it) stats in one thread hop."""
    keys = [k async for k in storage.keys(prefix)]
    if disk is not None:
        return await asyncio.to_thread(_stat_local, disk.root, keys)
    out: list[Entry] = []
    for key in keys:
        st = await storage.stat(key)
        if st is None:
            continue  # removed while we looked
        atime = st.mtime
        path = await storage.local_path(key)
        if path is not None:
            try:
                atime = path.stat().st_atime
            except OSError:
                pass
        out.append(classify(key, st.size, st.mtime, atime))
    return out


def _stat_local(root: Path, keys: Iterable[str]) -> list[Entry]:
    out: list[Entry] = []
    for key in keys:
        try:
            st = (root / key).stat()
        except OSError:
            continue  # removed while we looked
        out.append(classify(key, st.st_size, st.st_mtime, st.st_atime))
    return out


def version_id(module: str, version: str) -> str:
    """The id ``storage.lastuse`` records a version's reads under: ``<esc>/@v/<v>``."""
    return f"{escape_path(module)}/@v/{escape_version(version)}"


def versions(entries: Iterable[Entry], uses: Mapping[str, float] | None = None) -> list[Version]:
    """The version files grouped by module version, sorted; ``uses``: recorded reads by id."""
    groups: dict[tuple[str, str], Version] = {}
    for e in entries:
        if e.kind is Kind.VERSION:
            v = groups.get((e.module, e.version))
            if v is None:
                used = uses.get(version_id(e.module, e.version), 0.0) if uses else 0.0
                v = groups[(e.module, e.version)] = Version(e.module, e.version, used=used)
            v.entries.append(e)
    return [groups[k] for k in sorted(groups)]
