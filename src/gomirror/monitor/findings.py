"""monitor.findings is the append-only store of the consistency monitor's findings.

A finding is one problem the monitor saw: a mirror lagging behind the others
(``lag``), ``.info`` answers that disagree (``info_mismatch``), content the
checksum database contradicts (``tamper``), content that breaks the protocol
(``invalid_content``), or the database itself failing (``sumdb_unreachable``,
``sumdb_inconsistent``). Its identity is (type, mirror, module, version,
aspect); one identity has at most one *open* finding at a time, and a problem
that comes back after being resolved is a new finding.

Contract:

- Everything lives in Storage under ``FINDINGS_PREFIX``, one small JSON object
  per event, written once and never rewritten: ``<fid>/<ms>-open-<r>.json``
  (the whole finding: what each side said), ``<fid>/<ms>-seen-<r>.json`` and
  ``<fid>/<ms>-resolved-<r>.json`` (markers; their time is in the key, so
  loading never reads them). ``fid`` is ``<first-seen ms>-<identity digest + random>``,
  so keys sort by first sighting. No object is ever read-modify-written, so
  several gomirrors may share one object store.
- ``observe`` updates ``last_seen`` in memory on every call, but writes a
  ``seen`` marker at most once per ``seen_every`` seconds per finding: probing
  the same lag a hundred times writes a handful of objects, not a hundred.
- ``load()`` rebuilds the in-memory index by listing keys (once per start;
  ``ensure_loaded`` is idempotent), and deletes the objects of findings
  resolved more than ``retention`` seconds ago, so storage stays bounded.
  Memory holds every open finding plus the ``keep_resolved`` newest resolved.
- Reads (``open``, ``current``, ``recent``) are synchronous and do no I/O.
  Writes never raise: a storage failure is logged and the index stays right.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gomirror.errors import StorageError
from gomirror.storage.base import Storage

log = logging.getLogger(__name__)

FINDINGS_PREFIX = "_gomirror/events/findings/"
TYPES = (
    "lag",
    "info_mismatch",
    "tamper",
    "invalid_content",
    "sumdb_unreachable",
    "sumdb_inconsistent",
)
SEVERITY: Mapping[str, str] = {
    "tamper": "critical",
    "sumdb_inconsistent": "critical",
    "sumdb_unreachable": "critical",
    "lag": "warning",
    "invalid_content": "warning",
    "info_mismatch": "info",
}
LOAD_CONCURRENCY = 16

Identity = tuple[str, str, str, str, str]  # type, mirror, module, version, aspect


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding as the store knows it; times are epoch seconds."""

    id: str
    type: str
    mirror: str  # the upstream's name; "" when no single mirror is at fault
    module: str
    version: str
    aspect: str  # what was compared: "mod", "zip", "info", "list", ...; may be ""
    said: Mapping[str, Any] = field(default_factory=dict)  # what each side said
    detail: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    resolved_at: float | None = None

    @property
    def identity(self) -> Identity:
        return (self.type, self.mirror, self.module, self.version, self.aspect)

    @property
    def open(self) -> bool:
        return self.resolved_at is None

    @property
    def severity(self) -> str:
        return SEVERITY.get(self.type, "warning")

    def duration(self, now: float) -> float:
        """How long the problem has lasted (until resolution, or until now)."""
        end = self.resolved_at if self.resolved_at is not None else now
        return max(0.0, end - self.first_seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "mirror": self.mirror,
            "module": self.module,
            "version": self.version,
            "aspect": self.aspect,
            "said": dict(self.said),
            "detail": self.detail,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "resolved_at": self.resolved_at,
        }


def _digest(identity: Identity) -> str:
    return hashlib.sha256("\x00".join(identity).encode()).hexdigest()[:16]


def _ms(t: float) -> str:
    return f"{int(t * 1000):013d}"


@dataclass(slots=True)
class _Entry:
    finding: Finding
    marked: float  # when the last object about it was written (open or seen)


class FindingStore:
    """The findings index over Storage (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        seen_every: float = 600.0,
        retention: float = 30 * 86400.0,
        keep_resolved: int = 500,
        clock: Callable[[], float] = time.time,
        prefix: str = FINDINGS_PREFIX,
    ) -> None:
        self._storage = storage
        self._seen_every = seen_every
        self._retention = retention
        self._keep_resolved = keep_resolved
        self._clock = clock
        self._prefix = prefix
        self._open: dict[Identity, _Entry] = {}
        self._resolved: dict[str, Finding] = {}  # fid -> finding, oldest resolution first
        self._loaded = False
        self._load_lock = asyncio.Lock()

    # --- reading (no I/O) ---------------------------------------------------

    def current(self, identity: Identity) -> Finding | None:
        """The open finding with this identity, if any."""
        entry = self._open.get(identity)
        return entry.finding if entry is not None else None

    def open(
        self, type: str | None = None, *, mirror: str | None = None, module: str | None = None
    ) -> list[Finding]:
        """Open findings, oldest first, filtered by type, mirror and module when given."""
        found = [
            e.finding
            for e in self._open.values()
            if (type is None or e.finding.type == type)
            and (mirror is None or e.finding.mirror == mirror)
            and (module is None or e.finding.module == module)
        ]
        return sorted(found, key=lambda f: (f.first_seen, f.id))

    def recent(self, limit: int = 50) -> list[Finding]:
        """Open and recently resolved findings, the most recently active first."""
        every = [e.finding for e in self._open.values()] + list(self._resolved.values())

        def active(f: Finding) -> float:
            return max(f.last_seen, f.resolved_at or 0.0)

        return sorted(every, key=lambda f: (active(f), f.id), reverse=True)[:limit]

    # --- writing ------------------------------------------------------------

    async def observe(
        self,
        type: str,
        *,
        mirror: str = "",
        module: str = "",
        version: str = "",
        aspect: str = "",
        said: Mapping[str, Any] | None = None,
        detail: str = "",
        now: float | None = None,
    ) -> tuple[Finding, bool]:
        """Record that the problem is present now; return the finding and whether it is new."""
        t = self._clock() if now is None else now
        identity: Identity = (type, mirror, module, version, aspect)
        entry = self._open.get(identity)
        if entry is not None:
            f = replace(
                entry.finding,
                last_seen=max(t, entry.finding.last_seen),
                said=dict(said) if said is not None else entry.finding.said,
                detail=detail or entry.finding.detail,
            )
            entry.finding = f
            if t - entry.marked >= self._seen_every:
                entry.marked = t  # set before the write: a concurrent observe writes nothing
                await self._put(f.id, "seen", t, {"op": "seen", "time": t})
            return f, False
        # The random tail keeps a problem that reopens in the same millisecond apart.
        fid = f"{_ms(t)}-{_digest(identity)}{uuid.uuid4().hex[:4]}"
        f = Finding(fid, type, mirror, module, version, aspect, dict(said or {}), detail, t, t)
        self._open[identity] = _Entry(f, t)  # indexed before the write, so no duplicate opens
        await self._put(fid, "open", t, {"op": "open", **f.to_json()})
        return f, True

    async def resolve(
        self,
        type: str,
        *,
        mirror: str = "",
        module: str = "",
        version: str = "",
        aspect: str = "",
        note: str = "",
        now: float | None = None,
    ) -> Finding | None:
        """Mark the open finding with this identity resolved; None when none is open."""
        identity: Identity = (type, mirror, module, version, aspect)
        entry = self._open.pop(identity, None)
        if entry is None:
            return None
        t = self._clock() if now is None else now
        f = replace(entry.finding, resolved_at=t)
        self._remember_resolved(f)
        await self._put(f.id, "resolved", t, {"op": "resolved", "time": t, "note": note})
        return f

    async def _put(self, fid: str, op: str, t: float, body: Mapping[str, Any]) -> None:
        key = f"{self._prefix}{fid}/{_ms(t)}-{op}-{uuid.uuid4().hex[:6]}.json"
        try:
            await self._storage.put_bytes(key, json.dumps(body, sort_keys=True).encode())
        except (StorageError, OSError) as e:
            log.warning("finding not stored", extra={"key": key, "reason": str(e)[:200]})

    def _remember_resolved(self, f: Finding) -> None:
        self._resolved[f.id] = f
        while len(self._resolved) > self._keep_resolved:
            del self._resolved[next(iter(self._resolved))]

    # --- loading ------------------------------------------------------------

    async def ensure_loaded(self) -> None:
        """``load()`` once; later calls return at once."""
        async with self._load_lock:
            if not self._loaded:
                await self.load()

    async def load(self) -> None:
        """Rebuild the index from storage (see the module docstring); never raises."""
        groups: dict[str, dict[str, Any]] = {}
        try:
            async for key in self._storage.keys(self._prefix):
                parsed = _parse_key(key[len(self._prefix) :])
                if parsed is None:
                    continue
                fid, op, t = parsed
                g = groups.setdefault(
                    fid, {"open": None, "seen": 0.0, "resolved": None, "keys": []}
                )
                g["keys"].append(key)
                if op == "open":
                    g["open"] = key
                elif op == "seen":
                    g["seen"] = max(g["seen"], t)
                elif op == "resolved":
                    g["resolved"] = t if g["resolved"] is None else min(g["resolved"], t)
        except (StorageError, OSError) as e:
            log.warning("findings not loaded", extra={"reason": str(e)[:200]})
            self._loaded = True
            return
        now = self._clock()
        gone = {
            fid
            for fid, g in groups.items()
            if g["resolved"] is not None and now - g["resolved"] > self._retention
        }
        expired = [groups[fid] for fid in sorted(gone)]
        live = {fid: g for fid, g in groups.items() if fid not in gone}
        sem = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def read(fid: str, g: dict[str, Any]) -> Finding | None:
            if g["open"] is None:
                return None  # its open object was never written (a failed write)
            async with sem:
                try:
                    data = await self._storage.get(g["open"])
                except (StorageError, OSError):
                    data = None
            f = _finding_from(data)
            if f is None:
                log.warning("finding unreadable", extra={"key": g["open"]})
                return None
            last = max(f.last_seen, g["seen"], g["resolved"] or 0.0)
            return replace(f, id=fid, last_seen=last, resolved_at=g["resolved"])

        found = await asyncio.gather(*(read(fid, g) for fid, g in sorted(live.items())))
        self._open.clear()
        self._resolved.clear()
        resolved: list[Finding] = []
        for f in found:
            if f is None:
                continue
            if f.resolved_at is not None:
                resolved.append(f)
                continue
            older = self._open.get(f.identity)
            if older is not None:
                # Two instances opened the same problem: keep the first, close the other.
                note = f"duplicate of {older.finding.id}"
                await self._put(
                    f.id, "resolved", now, {"op": "resolved", "time": now, "note": note}
                )
                continue
            self._open[f.identity] = _Entry(f, f.last_seen)
        for f in sorted(resolved, key=lambda f: (f.resolved_at or 0.0, f.id)):
            self._remember_resolved(f)
        for g in expired:
            for key in g["keys"]:
                try:
                    await self._storage.delete(key)
                except (StorageError, OSError):
                    break
        self._loaded = True
        log.info(
            "findings loaded",
            extra={"open": len(self._open), "resolved": len(resolved), "expired": len(expired)},
        )


def _parse_key(rest: str) -> tuple[str, str, float] | None:
    """``<fid>/<ms>-<op>-<r>.json`` -> (fid, op, seconds); None for anything else."""
    fid, slash, name = rest.partition("/")
    if not slash or "/" in name or not name.endswith(".json"):
        return None
    parts = name[: -len(".json")].split("-")
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in ("open", "seen", "resolved"):
        return None
    return fid, parts[1], int(parts[0]) / 1000.0


def _finding_from(data: bytes | None) -> Finding | None:
    if not data:
        return None
    try:
        obj = json.loads(data)
        said = obj.get("said") or {}
        return Finding(
            id=str(obj["id"]),
            type=str(obj["type"]),
            mirror=str(obj.get("mirror", "")),
            module=str(obj.get("module", "")),
            version=str(obj.get("version", "")),
            aspect=str(obj.get("aspect", "")),
            said=said if isinstance(said, dict) else {},
            detail=str(obj.get("detail", "")),
            first_seen=float(obj["first_seen"]),
            last_seen=float(obj.get("last_seen", obj["first_seen"])),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
