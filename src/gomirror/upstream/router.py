"""upstream.router sends each module to the chain that may see it: private modules to ``direct`` only.

``Router(public, private, patterns)`` is an Upstream. Modules matching the
``private`` patterns (GOPRIVATE syntax, Go's prefix matching) go to
``private`` (a chain holding only ``direct``), so their paths never reach a
mirror; everything else goes to ``public``. With no patterns it is ``public``.
"""

from __future__ import annotations

from pathlib import Path

from gomirror.module.paths import match_prefix_patterns
from gomirror.upstream.base import Fetched, FirstByte, Upstream


class Router:
    """Chooses the chain for a module (see the module docstring)."""

    def __init__(
        self, public: Upstream, private: Upstream | None = None, patterns: str = ""
    ) -> None:
        self.public = public
        self.private = private
        self.patterns = patterns if private is not None else ""

    @property
    def name(self) -> str:
        return "router"

    def route(self, module: str) -> Upstream:
        if (
            self.private is not None
            and self.patterns
            and match_prefix_patterns(self.patterns, module)
        ):
            return self.private
        return self.public

    async def list(self, module: str) -> Fetched:
        return await self.route(module).list(module)

    async def info(self, module: str, query: str) -> Fetched:
        return await self.route(module).info(module, query)

    async def latest(self, module: str) -> Fetched:
        return await self.route(module).latest(module)

    async def mod(self, module: str, version: str) -> Fetched:
        return await self.route(module).mod(module, version)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        return await self.route(module).zip(module, version, dst, first_byte)

    async def close(self) -> None:
        await self.public.close()
        if self.private is not None:
            await self.private.close()
