"""upstream.policy holds the routing policies a ``Chain`` runs its links under.

A policy answers three questions and owns no state of its own:

- ``order``: in which order to ask the links (health-aware policies sort the
  mirrors by score; ``direct`` and ``off`` always stay where the list put them,
  at its end; mirrors the monitor saw lagging go after current ones, so a new
  tag is served as soon as any trusted mirror has it, and untrusted mirrors
  go last). When the chain passes ``load`` (requests it has in flight per
  mirror, given only for a version's ``.mod`` and ``.zip``: immutable bytes,
  the same on every honest mirror and checked against the checksum
  database), health-aware policies rank by expected wait, score × (1 +
  requests in flight), so a burst of fetches (prediction, a CI fleet) is
  spread over the equally trusted mirrors instead of queueing on one; ``go``
  and ``failover`` keep the list's order, which is their contract;
- ``falls_through``: after this error from this link, may the next one be asked;
- ``hedge_delay``: how long to wait for this link's first byte before starting
  the next one as well (``None``: never run two at once).

``go`` is the go command's own rule: after ``,`` only not-found falls through,
after ``|`` everything does. ``failover`` also falls through after ``,`` on
transient failures (5xx, 429, refused connections, timeouts). ``fastest`` is
``failover`` in order of health score (list order breaks ties). ``hedged`` is
``fastest`` that also starts the next mirror when the first has not answered
within a delay derived from its own recent latency (p90, between a floor and a
cap), with at most ``max_parallel`` requests in flight. Content that failed
gomirror's checks always falls through, whatever the policy or separator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    InvalidContent,
    NotFound,
    UpstreamUnavailable,
)
from gomirror.upstream.base import Upstream
from gomirror.upstream.health import HealthBook, OpKind

POLICY_NAMES = ("go", "failover", "fastest", "hedged")


@dataclass(frozen=True, slots=True)
class Link:
    """One upstream in a chain, whether any error after it falls through, and what it is."""

    upstream: Upstream
    fallback_on_error: bool
    is_direct: bool = False
    is_keyword: bool = False  # ``direct`` or ``off``: never reordered, never hedged to


class Policy(Protocol):
    """How a chain walks its links (see the module docstring)."""

    @property
    def name(self) -> str: ...

    @property
    def max_parallel(self) -> int: ...

    def order(
        self, links: Sequence[Link], health: HealthBook, load: Mapping[str, int] | None = None
    ) -> list[Link]: ...

    def falls_through(self, link: Link, err: GomirrorError) -> bool: ...

    def hedge_delay(self, link: Link, kind: OpKind, health: HealthBook) -> float | None: ...


def _bad_content(err: GomirrorError) -> bool:
    return isinstance(err, InvalidContent | ChecksumMismatch)


def _split(links: Sequence[Link]) -> tuple[list[Link], list[Link]]:
    """The mirrors before the first keyword, and everything from that keyword on (kept as is)."""
    for i, lk in enumerate(links):
        if lk.is_keyword:
            return list(links[:i]), list(links[i:])
    return list(links), []


def _trusted_first(links: Sequence[Link], health: HealthBook) -> list[Link]:
    """Stable partition: trusted mirrors, then untrusted ones, then the keywords in place."""
    mirrors, tail = _split(links)
    return [*sorted(mirrors, key=lambda lk: _rank(lk, health)), *tail]


def _rank(link: Link, health: HealthBook) -> int:
    """0 for a trusted, current mirror; 1 for one the monitor saw lagging; 2 for untrusted."""
    h = health.get(link.upstream.name)
    return 2 if h.untrusted else 1 if h.lagging else 0


class GoPolicy:
    """Go's GOPROXY list semantics."""

    name = "go"
    max_parallel = 1

    def order(
        self, links: Sequence[Link], health: HealthBook, load: Mapping[str, int] | None = None
    ) -> list[Link]:
        return _trusted_first(links, health)

    def falls_through(self, link: Link, err: GomirrorError) -> bool:
        return isinstance(err, NotFound) or _bad_content(err) or link.fallback_on_error

    def hedge_delay(self, link: Link, kind: OpKind, health: HealthBook) -> float | None:
        return None


class FailoverPolicy(GoPolicy):
    """Go's rules, plus fall-through on transient failures after a ``,``."""

    name = "failover"

    def falls_through(self, link: Link, err: GomirrorError) -> bool:
        return super().falls_through(link, err) or isinstance(err, UpstreamUnavailable)


class FastestPolicy(FailoverPolicy):
    """``failover`` with mirrors asked in order of health score."""

    name = "fastest"

    def order(
        self, links: Sequence[Link], health: HealthBook, load: Mapping[str, int] | None = None
    ) -> list[Link]:
        mirrors, tail = _split(links)
        position = {id(lk): i for i, lk in enumerate(mirrors)}
        busy = load or {}
        ranked = sorted(
            mirrors,
            key=lambda lk: (
                _rank(lk, health),
                health.get(lk.upstream.name).score() * (1 + busy.get(lk.upstream.name, 0)),
                position[id(lk)],
            ),
        )
        return [*ranked, *tail]


class HedgedPolicy(FastestPolicy):
    """``fastest`` that races the next mirror when the first is slow to answer."""

    name = "hedged"

    def __init__(self, floor: float = 0.05, cap: float = 2.0, max_parallel: int = 2) -> None:
        self.floor = floor
        self.cap = cap
        self.max_parallel = max(1, max_parallel)

    def hedge_delay(self, link: Link, kind: OpKind, health: HealthBook) -> float | None:
        if link.is_keyword:
            return None
        return health.get(link.upstream.name).hedge_delay(kind, self.floor, self.cap)


def make_policy(
    name: str, *, hedge_floor: float = 0.05, hedge_cap: float = 2.0, max_parallel: int = 2
) -> Policy:
    """The policy called ``name`` (one of ``POLICY_NAMES``)."""
    if name == "go":
        return GoPolicy()
    if name == "failover":
        return FailoverPolicy()
    if name == "fastest":
        return FastestPolicy()
    if name == "hedged":
        return HedgedPolicy(hedge_floor, hedge_cap, max_parallel)
    raise ValueError(f"unknown policy {name!r}")
