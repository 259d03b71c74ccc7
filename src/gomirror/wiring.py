"""wiring builds the optional parts of the composition root: direct mode and the sumdb.

Kept apart from ``app`` so the composition root reads as a list of steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from gomirror.config import Config
from gomirror.errors import ConfigError
from gomirror.server.http import SumdbHandler
from gomirror.service import Kind, Verifier
from gomirror.storage.base import Storage
from gomirror.upstream.base import Upstream


@dataclass(frozen=True, slots=True)
class SkippedVerdict:
    verified: bool = False
    note: str = "skipped: checksum database verification is off"


class NoVerifier:
    """Verification disabled (``--sumdb off``)."""

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> SkippedVerdict:
        return SkippedVerdict()


def build_direct(cfg: Config) -> Upstream:
    raise ConfigError("invalid setting upstream: direct is not supported yet")


def build_sumdb(
    cfg: Config, storage: Storage, session: aiohttp.ClientSession
) -> tuple[Verifier, SumdbHandler | None]:
    return NoVerifier(), None
