"""upstream.off is the ``off`` keyword of a GOPROXY list: every lookup is "not found" and the list ends."""

from __future__ import annotations

from pathlib import Path

from gomirror.errors import UpstreamOff
from gomirror.upstream.base import Fetched, FirstByte

MESSAGE = "module lookup disabled by GOPROXY=off"


class OffUpstream:
    """Answers every request with ``UpstreamOff``."""

    name = "off"

    async def list(self, module: str) -> Fetched:
        raise UpstreamOff(MESSAGE)

    async def info(self, module: str, query: str) -> Fetched:
        raise UpstreamOff(MESSAGE)

    async def latest(self, module: str) -> Fetched:
        raise UpstreamOff(MESSAGE)

    async def mod(self, module: str, version: str) -> Fetched:
        raise UpstreamOff(MESSAGE)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        raise UpstreamOff(MESSAGE)

    async def close(self) -> None:
        """Nothing to release."""
