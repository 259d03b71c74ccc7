"""offline builds ``@v/list`` and ``@latest`` answers from what the cache holds, for when no upstream can answer.

The service calls these when the upstream list is ``off`` or every upstream
failed, so a warm cache keeps working as a GOPROXY without any network:

- :func:`cached_list`: the versions of a module whose ``.info`` or ``.zip``
  is cached (a version known only by its ``.mod`` was read for a module
  graph, never chosen), merged with the last list fetched (``stale``), one
  per line in semver order. Pseudo-versions are left out, as mirrors do.
- :func:`cached_latest`: the ``.info`` of the version the go command's
  ``@latest`` rule picks among the cached ones and the last ``@latest``
  answer (the highest release, else the highest pre-release, else the
  highest pseudo-version).

Both return ``None`` when the cache knows nothing of the module, so the
caller raises its error. Keys come from ``Storage.keys`` under the module's
own ``<escaped path>/@v/`` prefix: one directory's listing, not the cache.
"""

from __future__ import annotations

from gomirror.errors import GomirrorError
from gomirror.module import semver
from gomirror.module.info import is_canonical_for, parse_info, parse_list
from gomirror.module.paths import escape_path, escape_version, unescape_version
from gomirror.module.pseudo import is_pseudo_version
from gomirror.storage.base import Storage

__all__ = ["cached_latest", "cached_list", "cached_versions", "latest_rank"]


async def cached_versions(storage: Storage, module: str, exts: tuple[str, ...]) -> set[str]:
    """Canonical versions of module with a cached file of one of exts (``.info``, ``.zip``...)."""
    prefix = f"{escape_path(module)}/@v/"
    found: set[str] = set()
    async for key in storage.keys(prefix):
        name = key[len(prefix) :]
        base, dot, ext = name.rpartition(".")
        if "/" in name or not dot or "." + ext not in exts:
            continue
        try:
            version = unescape_version(base)
        except GomirrorError:
            continue
        if is_canonical_for(module, version):
            found.add(version)
    return found


async def cached_list(storage: Storage, module: str, stale: bytes | None) -> bytes | None:
    """The ``@v/list`` body the cache can vouch for (see the module docstring), or None."""
    versions = {
        v
        for v in await cached_versions(storage, module, (".info", ".zip"))
        if not is_pseudo_version(v)
    }
    if stale is not None:
        versions.update(parse_list(stale))
    if not versions and stale is None:
        return None
    return "".join(v + "\n" for v in semver.sort_versions(list(versions))).encode()


def latest_rank(version: str) -> tuple[int, tuple[object, ...]]:
    """Sort key of the ``@latest`` rule: releases above pre-releases above pseudo-versions."""
    if is_pseudo_version(version):
        tier = 0
    elif semver.prerelease(version):
        tier = 1
    else:
        tier = 2
    return tier, semver.sort_key(version)


async def cached_latest(storage: Storage, module: str, stale: bytes | None) -> bytes | None:
    """The ``@latest`` body the cache can vouch for (see the module docstring), or None."""
    best: tuple[tuple[int, tuple[object, ...]], bytes] | None = None
    if stale is not None:
        try:
            best = (latest_rank(parse_info(stale).version), stale)
        except GomirrorError:
            best = None
    esc = escape_path(module)
    for version in await cached_versions(storage, module, (".info",)):
        rank = latest_rank(version)
        if best is not None and rank <= best[0]:
            continue
        body = await storage.get(f"{esc}/@v/{escape_version(version)}.info")
        if body is not None:
            best = (rank, body)
    return None if best is None else best[1]
