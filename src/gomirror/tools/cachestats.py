"""cachestats sums up what a cache holds, and reads a running server's hit ratio: ``cache stats``'s logic.

:func:`stats` turns an inventory (:mod:`gomirror.tools.inventory`) into
:class:`Stats`: files and bytes per kind, modules and versions, the oldest
and newest cached version, and the modules taking the most bytes.
:func:`hit_ratio` reads ``/metrics`` of a running gomirror and returns
hits and misses per endpoint from the ``gomirror_cache_total`` counters
(since that server started; summed over its workers).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from gomirror.errors import UpstreamError
from gomirror.tools.inventory import Entry, Kind, Version, versions

_SAMPLE = re.compile(r"^gomirror_cache_total\{([^}]*)\}\s+([0-9.eE+-]+)\s*$", re.M)
METRICS_TIMEOUT = aiohttp.ClientTimeout(total=10)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class ModuleBytes:
    module: str
    versions: int
    bytes: int


@dataclass
class Stats:
    """What one cache holds (see the module docstring)."""

    files: int = 0
    bytes: int = 0
    by_kind: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (files, bytes)
    modules: int = 0
    versions: int = 0
    zips: int = 0
    oldest: Version | None = None
    newest: Version | None = None
    top: list[ModuleBytes] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        def ver(v: Version | None) -> dict[str, object] | None:
            if v is None:
                return None
            return {"module": v.module, "version": v.version, "cached_at": v.cached_at}

        return {
            "files": self.files,
            "bytes": self.bytes,
            "by_kind": {k: {"files": f, "bytes": b} for k, (f, b) in self.by_kind.items()},
            "modules": self.modules,
            "versions": self.versions,
            "zips": self.zips,
            "oldest": ver(self.oldest),
            "newest": ver(self.newest),
            "top_modules": [
                {"module": m.module, "versions": m.versions, "bytes": m.bytes} for m in self.top
            ],
        }


def stats(entries: list[Entry], top: int = 10) -> Stats:
    """Sum up an inventory."""
    s = Stats(files=len(entries), bytes=sum(e.size for e in entries))
    for kind in Kind:
        chosen = [e for e in entries if e.kind is kind]
        s.by_kind[kind.value] = (len(chosen), sum(e.size for e in chosen))
    vs = versions(entries)
    s.versions = len(vs)
    s.zips = sum(1 for v in vs if v.zip_key is not None)
    per_module: dict[str, int] = Counter()
    count: dict[str, int] = Counter()
    for v in vs:
        per_module[v.module] += v.size
        count[v.module] += 1
    s.modules = len(per_module)
    if vs:
        s.oldest = min(vs, key=lambda v: v.cached_at)
        s.newest = max(vs, key=lambda v: v.cached_at)
    ranked = sorted(per_module.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    s.top = [ModuleBytes(m, count[m], b) for m, b in ranked]
    return s


@dataclass(frozen=True, slots=True)
class HitRatio:
    """Cache results of a running server since it started: endpoint → result → count."""

    server: str
    counts: dict[str, dict[str, float]]

    def ratio(self, endpoint: str | None = None) -> float | None:
        """hits / (hits + misses + stale), over one endpoint or all; None before any lookup."""
        rows = [self.counts[endpoint]] if endpoint else list(self.counts.values())
        hits = sum(r.get("hit", 0.0) for r in rows)
        total = hits + sum(r.get("miss", 0.0) + r.get("stale", 0.0) for r in rows)
        return None if total == 0 else hits / total

    def to_json(self) -> dict[str, object]:
        return {
            "server": self.server,
            "ratio": self.ratio(),
            "by_endpoint": {
                ep: {**counts, "ratio": self.ratio(ep)}
                for ep, counts in sorted(self.counts.items())
            },
        }


def parse_cache_metrics(text: str) -> dict[str, dict[str, float]]:
    """The ``gomirror_cache_total`` samples of a Prometheus text exposition."""
    out: dict[str, dict[str, float]] = {}
    for labels, value in _SAMPLE.findall(text):
        lab = dict(_LABEL.findall(labels))
        ep, result = lab.get("endpoint", ""), lab.get("result", "")
        row = out.setdefault(ep, {})
        row[result] = row.get(result, 0.0) + float(value)
    return out


async def hit_ratio(server: str, session: aiohttp.ClientSession) -> HitRatio:
    """Read ``server``'s ``/metrics``; UpstreamError says why it could not."""
    url = server.rstrip("/") + "/metrics"
    try:
        async with session.get(url, timeout=METRICS_TIMEOUT) as resp:
            if resp.status != 200:
                raise UpstreamError(f"{url}: {resp.status}; is this a gomirror server?")
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as e:
        raise UpstreamError(f"{url}: {type(e).__name__}: {e}; is the server running?") from None
    counts = parse_cache_metrics(text)
    if not counts and "gomirror_" not in text:
        raise UpstreamError(f"{url}: no gomirror metrics; is this a gomirror server?")
    return HitRatio(server.rstrip("/"), counts)
