"""answers defines what the domain hands the HTTP layer: a body, its type and how long it may be cached.

Domain code (the service, the ``/sumdb/`` pass-through) decides what an answer
is and how long it stays true; ``server.responses`` turns that into headers.
The server never recomputes a domain fact such as "is this version canonical".

``Lifetime`` is the caching fact: ``IMMUTABLE`` (never changes: a ``.zip``,
a ``.mod``, a tile), ``fresh(seconds)`` (a mutable answer such as ``@v/list``),
or ``STALE`` (served after every upstream failed; must be revalidated).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CacheResult = Literal["hit", "miss", "stale", "negative", "pass"]


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How long an answer may be cached by clients: ``seconds=None`` means forever."""

    seconds: float | None
    stale: bool = False

    @staticmethod
    def fresh(seconds: float) -> Lifetime:
        return Lifetime(max(0.0, seconds))


IMMUTABLE = Lifetime(None)
STALE = Lifetime(0.0, stale=True)
NO_STORE = Lifetime(0.0)


@dataclass(frozen=True, slots=True)
class Answer:
    """A small answer held in memory: list, info, mod, latest, sumdb notes and tiles."""

    body: bytes
    content_type: str
    lifetime: Lifetime
    cache: CacheResult = "miss"
    stale_reason: str = ""


@dataclass(frozen=True, slots=True)
class FileAnswer:
    """A large answer (a zip) held by storage, in the form the backend can give it.

    Exactly one of ``path`` (a local file to send zero-copy), ``chunks`` (an
    async byte stream), ``body`` (bytes already in memory) or ``redirect`` (a
    presigned URL the client may fetch directly) is set.
    """

    size: int
    content_type: str
    lifetime: Lifetime
    cache: CacheResult
    path: Path | None = None
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    redirect: str | None = None
