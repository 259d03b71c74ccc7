"""cluster starts several real ``gomirror serve`` processes sharing one S3 bucket and one Redis, for the scale-out tests.

Contract: ``Cluster(tmp, s3, redis, prefix)`` holds a moto S3 API server's
endpoint (``storage.s3server``), a real ``redis-server``
(``coordination.redisserver``) and a key prefix of its own in the shared
bucket, so tests sharing the session's S3 server never see each other's
objects. ``instance(name, upstream=...)`` starts one ``GomirrorProcess``
(a subprocess, so ``kill -9`` is real) with ``storage = "s3"`` on that
bucket and prefix, ``redis_url`` on that Redis, ``instance = name``, a short
Redis lock TTL and the monitor off, each with its own empty local cache
directory; everything is stopped by ``stop()``. ``fetch``/``fetch_all``
are go-command-like clients (``Go-http-client`` user agent, the
``.info`` → ``.mod`` → ``.zip`` order of ``go mod download``) over aiohttp;
``wait_for`` polls a condition with a deadline (never a fixed sleep).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from coordination.redisserver import RedisServer
from storage.s3server import S3Endpoint
from support.corpus import ModuleVersion, escape_path, escape_version
from support.server import GomirrorProcess

DEADLINE = 60.0
USER_AGENT = "Go-http-client/1.1"


def file_path(mv: ModuleVersion, ext: str) -> str:
    return f"/{escape_path(mv.path)}/@v/{escape_version(mv.version)}.{ext}"


@dataclass
class Got:
    """One answer a client received: status and body, or the error that cut it."""

    status: int | None
    body: bytes = b""
    error: str = ""


@dataclass
class Cluster:
    """Gomirror instances on one bucket and one Redis (see the module docstring)."""

    tmp: Path
    s3: S3Endpoint
    redis: RedisServer
    prefix: str
    lock_ttl: float = 3.0
    started: list[GomirrorProcess] = field(default_factory=list)

    def env(self, name: str) -> dict[str, str]:
        return {
            "GOMIRROR_STORAGE": "s3",
            "GOMIRROR_S3_ENDPOINT": self.s3.url,
            "GOMIRROR_S3_BUCKET": self.s3.bucket,
            "GOMIRROR_S3_PREFIX": self.prefix,
            "GOMIRROR_S3_REGION": self.s3.region,
            "GOMIRROR_S3_ACCESS_KEY": self.s3.access_key,
            "GOMIRROR_S3_SECRET_KEY": self.s3.secret_key,
            "GOMIRROR_S3_ADDRESSING": "path",
            "GOMIRROR_REDIS_URL": self.redis.url,
            "GOMIRROR_REDIS_LOCK_TTL": str(self.lock_ttl),
            "GOMIRROR_INSTANCE": name,
            "GOMIRROR_MONITOR": "false",
            "GOMIRROR_ACCESS_LOG": "true",
            "GOMIRROR_PREDICT": "off",  # only what the clients ask: fetches are counted
        }

    def instance(
        self,
        name: str,
        *,
        upstream: str,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        sumdb: str | None = "off",
    ) -> GomirrorProcess:
        d = self.tmp / name
        d.mkdir(parents=True, exist_ok=True)
        proc = GomirrorProcess(
            d,
            upstream=upstream,
            env={**self.env(name), **(env or {})},
            extra_args=extra_args,
            sumdb=sumdb,
        )
        self.started.append(proc.start(timeout=60.0))
        return proc

    def stop(self) -> None:
        for proc in self.started:
            proc.stop()


async def fetch(session: aiohttp.ClientSession, url: str) -> Got:
    try:
        async with session.get(url, headers={"User-Agent": USER_AGENT}) as resp:
            return Got(resp.status, await resp.read())
    except (TimeoutError, aiohttp.ClientError) as e:
        return Got(None, error=f"{type(e).__name__}: {e}")


async def download(session: aiohttp.ClientSession, base: str, mv: ModuleVersion) -> list[Got]:
    """What ``go mod download`` asks for one module version, in its order."""
    return [await fetch(session, base + file_path(mv, ext)) for ext in ("info", "mod", "zip")]


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)  # polling a real condition with a deadline


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus exposition, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None
