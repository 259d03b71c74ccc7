"""backends lists every Storage backend the compliance suite runs, and builds one by name.

Contract: ``BACKENDS`` names every backend; ``make_backend(name, root, s3)``
returns a fresh, empty-or-reopened Storage keeping its data under the local
directory ``root`` (a backend that is not local keeps its scratch files there).

``s3`` is ``S3Storage`` against the real S3 API server of ``storage.s3server``
(``s3`` names its endpoint): its objects live under a prefix of the test
bucket derived from ``root``, so the same root reopens the same objects, also
from a subprocess, and two tests never see each other's keys. ``stream-only``
is a ``DiskStorage`` whose ``local_path`` answers ``None``: the stream path of
an object store, without the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage
from gomirror.storage.s3 import S3Settings, S3Storage
from storage.s3server import S3Endpoint
from support.storagewrap import Passthrough

BACKENDS = ("disk", "stream-only", "s3")


def prefix_for(root: Path) -> str:
    """The test bucket's prefix for a backend rooted at root (stable across processes)."""
    return "t/" + hashlib.sha256(str(root).encode()).hexdigest()[:16] + "/"


def s3_settings(server: S3Endpoint, root: Path, **overrides: Any) -> S3Settings:
    base: dict[str, Any] = {
        "bucket": server.bucket,
        "prefix": prefix_for(root),
        "endpoint": server.url,
        "region": server.region,
        "access_key": server.access_key,
        "secret_key": server.secret_key,
        "addressing": "path",  # 127.0.0.1 has no bucket subdomains
    }
    base.update(overrides)
    return S3Settings(**base)


class ScratchS3Storage(S3Storage):
    """An S3Storage plus the local DiskStorage a test plants gomirror's litter in."""

    def __init__(self, root: Path, server: S3Endpoint, **overrides: Any) -> None:
        super().__init__(s3_settings(server, root, **overrides))
        self.scratch = DiskStorage(root)

    async def close(self) -> None:
        await super().close()
        await self.scratch.close()


class StreamOnlyStorage(Passthrough[DiskStorage]):
    """A Storage without local files: everything but ``local_path`` is the wrapped DiskStorage."""

    def __init__(self, root: Path) -> None:
        super().__init__(DiskStorage(root))

    async def local_path(self, key: str) -> Path | None:
        self.inner.path(key)  # still reject hostile keys, as every other call does
        return None  # an object store has no local file to sendfile from


def make_backend(name: str, root: Path, s3: S3Endpoint | None = None, **overrides: Any) -> Storage:
    """A backend by name; ``s3`` is required for ``s3``, whose S3Settings ``overrides`` may change."""
    if name == "disk":
        return DiskStorage(root)
    if name == "stream-only":
        return StreamOnlyStorage(root)
    if name == "s3":
        if s3 is None:
            raise ValueError("the s3 backend needs the S3 server's endpoint (fixture s3_server)")
        return ScratchS3Storage(root, s3, **overrides)
    raise ValueError(f"unknown storage backend {name!r}")


def disk_of(storage: Storage) -> DiskStorage:
    """The DiskStorage holding a test backend's files (for planting gomirror's own litter)."""
    if isinstance(storage, DiskStorage):
        return storage
    if isinstance(storage, StreamOnlyStorage):
        return storage.inner
    if isinstance(storage, ScratchS3Storage):
        return storage.scratch
    raise TypeError(f"no local files behind {type(storage).__name__}")
