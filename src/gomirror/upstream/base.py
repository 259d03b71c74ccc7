"""upstream.base defines the Upstream protocol: one source of module files.

An upstream is one HTTP mirror, ``direct`` (git), or a wrapper that combines
others (the chain, hedging, health tracking). Methods take *unescaped*
module paths and versions that the caller has already validated.

Contract:
- not found raises ``gomirror.errors.NotFound`` (``Gone`` for 410); these are
  the only errors that Go's ``,`` separator falls through on;
- every other failure raises ``gomirror.errors.UpstreamError`` (or a subclass);
- methods return raw bytes exactly as the source served them; checking the
  content is the caller's job (``gomirror.service``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Upstream(Protocol):
    """One source of module files (see the module docstring for the contract)."""

    @property
    def name(self) -> str:
        """A short, stable, secret-free label for logs and metrics (e.g. the URL)."""
        ...

    async def list(self, module: str) -> bytes:
        """The body of ``<module>/@v/list``."""
        ...

    async def info(self, module: str, query: str) -> bytes:
        """The body of ``<module>/@v/<query>.info``; query may be non-canonical."""
        ...

    async def latest(self, module: str) -> bytes:
        """The body of ``<module>/@latest``."""
        ...

    async def mod(self, module: str, version: str) -> bytes:
        """The body of ``<module>/@v/<version>.mod`` (canonical version)."""
        ...

    async def zip(self, module: str, version: str, dst: Path) -> None:
        """Write ``<module>/@v/<version>.zip`` into the new file dst (canonical version)."""
        ...

    async def close(self) -> None:
        """Release connections and other resources."""
        ...
