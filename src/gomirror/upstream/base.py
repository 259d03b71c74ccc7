"""upstream.base defines the Upstream protocol: one source of module files, and what a fetch returns.

An upstream is one HTTP mirror, ``direct`` (git), or a wrapper around others:
``VerifiedUpstream`` (content checks and the checksum database),
``ObservedUpstream`` (health, metrics, events), ``Chain`` (a list under a
policy) and ``Router`` (private modules to ``direct`` only). Every one of them
is an ``Upstream``, so they nest freely. Methods take *unescaped* module paths
and versions the caller has already validated.

Contract:
- not found raises ``gomirror.errors.NotFound`` (``Gone`` for 410); these are
  the only errors that Go's ``,`` separator falls through on;
- every other failure raises ``UpstreamError`` (or a subclass), or
  ``VerificationError`` from a verifying wrapper;
- small files return a ``Fetched`` holding the body; ``zip`` writes the new
  file ``dst`` and returns a ``Fetched`` with an empty body. ``source`` names
  the upstream that really served it (a chain passes its link's through), and
  ``checked`` is set once a verifying wrapper has checked the content, and
  ``elapsed`` by the source that measured itself;
- ``zip`` calls ``first_byte()`` (when given) once the upstream has started to
  answer successfully, so a hedging chain can tell a slow mirror from a
  dead one. Each call gets its own callback: concurrent calls share nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

FirstByte = Callable[[], None]


@dataclass(frozen=True, slots=True)
class Checked:
    """What a verifying wrapper established: the ``h1:`` and the checksum-database verdict."""

    h1: str
    verdict: dict[str, Any]
    size: int = 0
    files: int = 0


@dataclass(frozen=True, slots=True)
class Fetched:
    """One successful fetch: the body (empty for zips), who served it, what was checked."""

    body: bytes
    source: str
    checked: Checked | None = None
    elapsed: float | None = None  # seconds the source itself took, without our checks
    stale_reason: str | None = None  # the source answered from its own stale copy (a gomirror)
    # A zip this process wrote itself (direct mode): its h1, size and entry count, known
    # from writing it, so a verifier need not read it again. Never set from remote input.
    built: Checked | None = None


class Upstream(Protocol):
    """One source of module files (see the module docstring for the contract)."""

    @property
    def name(self) -> str:
        """A short, stable, secret-free label for logs and metrics (e.g. the URL)."""
        ...

    async def list(self, module: str) -> Fetched:
        """The body of ``<module>/@v/list``."""
        ...

    async def info(self, module: str, query: str) -> Fetched:
        """The body of ``<module>/@v/<query>.info``; query may be non-canonical."""
        ...

    async def latest(self, module: str) -> Fetched:
        """The body of ``<module>/@latest``."""
        ...

    async def mod(self, module: str, version: str) -> Fetched:
        """The body of ``<module>/@v/<version>.mod`` (canonical version)."""
        ...

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        """Write ``<module>/@v/<version>.zip`` into the new file dst (canonical version)."""
        ...

    async def close(self) -> None:
        """Release connections, processes and other resources."""
        ...
