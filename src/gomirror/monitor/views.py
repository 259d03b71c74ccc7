"""monitor.views holds what the consistency monitor shows: plain, frozen data for the status page.

``MonitorSnapshot`` (from ``ConsistencyMonitor.snapshot()``) has the round
counters and times, the checksum database's state, one ``ModuleView`` per
watched module (which mirror reports which ``@latest``, the database's word on
each candidate version, which versions each mirror lacks), one ``MirrorRound``
per mirror, and recent findings. ``to_json()`` gives the JSON API's form; times
are epoch seconds, durations seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gomirror.module import semver
from gomirror.monitor.findings import Finding


def missing_versions(lags: Iterable[Finding]) -> dict[str, tuple[str, ...]]:
    """mirror -> the versions its open lag findings say it lacks, in semver order."""
    out: dict[str, list[str]] = {}
    for f in lags:
        out.setdefault(f.mirror, []).append(f.version)
    return {m: tuple(semver.sort_versions(vs)) for m, vs in out.items()}


@dataclass(frozen=True, slots=True)
class ModuleView:
    """One watched module after the last round that probed it."""

    path: str
    newest: str  # the newest version a mirror serves and the database does not contradict
    latest: Mapping[str, str | None]  # mirror -> its @latest; "" not found, None error
    sumdb: Mapping[str, str]  # candidate version -> SumState of its .mod (worst over mirrors)
    missing: Mapping[str, tuple[str, ...]]  # mirror -> candidate versions it lacks
    checked_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "newest": self.newest,
            "latest": dict(self.latest),
            "sumdb": dict(self.sumdb),
            "missing": {m: list(v) for m, v in self.missing.items()},
            "checked_at": self.checked_at,
        }


@dataclass(frozen=True, slots=True)
class MirrorRound:
    """One mirror's probes in the last round."""

    name: str
    state: str  # its Health state after the round
    probes: int = 0
    errors: int = 0
    slow: int = 0  # answered, but slower than healthy_threshold
    p50: float | None = None  # seconds, over this round's answered probes
    max: float | None = None
    last_error: str = ""
    abandoned: bool = False  # too many failures: not asked again this round

    @classmethod
    def of(
        cls,
        name: str,
        state: str,
        probes: int,
        errors: int,
        slow: int,
        seconds: Sequence[float],
        last_error: str,
        abandoned: bool,
    ) -> MirrorRound:
        """The round's figures, with p50 and max over the answered probes' seconds."""
        secs = sorted(seconds)
        p50 = secs[(len(secs) - 1) // 2] if secs else None
        top = secs[-1] if secs else None
        return cls(name, state, probes, errors, slow, p50, top, last_error, abandoned)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "probes": self.probes,
            "errors": self.errors,
            "slow": self.slow,
            "p50": self.p50,
            "max": self.max,
            "last_error": self.last_error,
            "abandoned": self.abandoned,
        }


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """What the monitor knows, for the status page (``to_json`` for the JSON API)."""

    rounds: int
    interval: float
    last_round_at: float | None  # epoch seconds the last round started
    last_round_seconds: float | None
    sumdb: str  # ok, unreachable, inconsistent, unknown (nothing checked yet)
    sumdb_error: str
    modules: tuple[ModuleView, ...]
    mirrors: tuple[MirrorRound, ...]
    findings: tuple[Finding, ...]  # open and recently resolved, most recent first

    def to_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "interval": self.interval,
            "last_round_at": self.last_round_at,
            "last_round_seconds": self.last_round_seconds,
            "sumdb": self.sumdb,
            "sumdb_error": self.sumdb_error,
            "modules": [m.to_json() for m in self.modules],
            "mirrors": [m.to_json() for m in self.mirrors],
            "findings": [f.to_json() for f in self.findings],
        }
