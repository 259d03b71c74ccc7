"""upstream.proxy is one HTTP(S) GOPROXY mirror as an Upstream.

It speaks the client side of the protocol exactly as the go command does
(case-encoded, percent-escaped paths; plain GETs), over a pooled keep-alive
``aiohttp`` session shared by all mirrors. 404 and 410 become ``NotFound``/
``Gone``; every other status, a timeout or a connection failure becomes an
``UpstreamError`` subclass from ``gomirror.errors`` (``UpstreamTimeout``,
``UpstreamUnavailable``, ``RateLimited``, ``UpstreamRejected``), so a policy
can tell transient failures from refusals. A 429 with a short ``Retry-After``
is waited out once; a longer one is raised as ``RateLimited`` and the health
record decides how long to skip the mirror. This class keeps no state between
requests: health, parking and metrics belong to the wrappers around it.
Zips are streamed to disk and cut off past Go's 500 MiB limit.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import time
from pathlib import Path
from urllib.parse import quote

import aiohttp

from gomirror.errors import (
    Gone,
    InvalidContent,
    NotFound,
    RateLimited,
    StorageError,
    StorageFull,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gomirror.module.paths import escape_path, escape_version
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.goproxy import redact_url

MAX_ZIP_BYTES = 500 << 20
MAX_SMALL_BYTES = 16 << 20  # .mod is capped at 16 MiB by Go; list/info are far smaller
CHUNK = 256 << 10
USER_AGENT = "gomirror (+https://github.com/gomirror/gomirror)"


def url_path(module: str, suffix: str) -> str:
    """The escaped URL path for a module file, as the go command builds it."""
    return "/" + quote(escape_path(module), safe="/$&+:=@") + suffix


def version_element(version: str) -> str:
    return quote(escape_version(version), safe="$&+:=@")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpUpstream:
    """One mirror at ``base_url`` (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        connect_timeout: float,
        read_timeout: float,
        retry_after_max: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._name = redact_url(self.base_url)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout or None, sock_read=read_timeout or None
        )
        self._retry_after_max = retry_after_max

    @property
    def name(self) -> str:
        return self._name

    async def list(self, module: str) -> Fetched:
        return await self._fetch_small(url_path(module, "/@v/list"))

    async def info(self, module: str, query: str) -> Fetched:
        return await self._fetch_small(url_path(module, "/@v/") + version_element(query) + ".info")

    async def latest(self, module: str) -> Fetched:
        return await self._fetch_small(url_path(module, "/@latest"))

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._fetch_small(url_path(module, "/@v/") + version_element(version) + ".mod")

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        path = url_path(module, "/@v/") + version_element(version) + ".zip"
        started = time.monotonic()
        await self._get(path, dst=dst, limit=MAX_ZIP_BYTES, first_byte=first_byte)
        return Fetched(b"", self._name, elapsed=time.monotonic() - started)

    async def _fetch_small(self, path: str) -> Fetched:
        started = time.monotonic()
        body = await self._get_small(path)
        return Fetched(body, self._name, elapsed=time.monotonic() - started)

    async def get_raw(self, path: str) -> bytes:
        """GET an arbitrary path below the base URL (used for ``/sumdb/...`` routes)."""
        return await self._get_small(path)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the composition root."""

    async def _get_small(self, path: str) -> bytes:
        body = await self._get(path, dst=None, limit=MAX_SMALL_BYTES)
        assert body is not None
        return body

    async def _get(
        self, path: str, *, dst: Path | None, limit: int, first_byte: FirstByte | None = None
    ) -> bytes | None:
        for attempt in (1, 2):
            try:
                return await self._get_once(path, dst=dst, limit=limit, first_byte=first_byte)
            except _RetryAfter as r:
                if attempt == 1 and r.seconds <= self._retry_after_max:
                    await asyncio.sleep(r.seconds)
                    continue
                raise RateLimited(
                    f"{self._name}{path}: 429 Too Many Requests", retry_after=r.seconds
                ) from None
        raise AssertionError("unreachable")

    async def _get_once(
        self, path: str, *, dst: Path | None, limit: int, first_byte: FirstByte | None
    ) -> bytes | None:
        url = self.base_url + path
        shown = self._name + path
        try:
            async with self._session.get(
                url,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                max_redirects=10,
                allow_redirects=True,
            ) as resp:
                status = resp.status
                if status == 200:
                    if resp.url.scheme == "http" and self.base_url.startswith("https:"):
                        raise UpstreamRejected(f"{shown}: redirected from https to insecure http")
                    if first_byte is not None:
                        first_byte()
                    return await _read_body(resp, dst, limit, shown)
                reason = f"{status} {resp.reason or ''}".strip()
                detail = await _error_detail(resp)
                msg = f"{shown}: {reason}" + (f": {detail}" if detail else "")
                if status == 404:
                    raise NotFound(msg)
                if status == 410:
                    raise Gone(msg)
                if status == 429:
                    secs = _retry_after(resp.headers.get("Retry-After"))
                    raise _RetryAfter(secs if secs is not None else 60.0)
                if status >= 500:
                    raise UpstreamUnavailable(msg)
                raise UpstreamRejected(msg)
        except TimeoutError:
            raise UpstreamTimeout(f"{shown}: timed out") from None
        except aiohttp.TooManyRedirects:
            raise UpstreamRejected(f"{shown}: too many redirects") from None
        except aiohttp.ClientPayloadError as e:
            raise UpstreamUnavailable(f"{shown}: response cut short: {e}") from None
        except aiohttp.ClientConnectionError as e:
            raise UpstreamUnavailable(f"{shown}: {_conn_reason(e)}") from None
        except aiohttp.ClientError as e:
            raise UpstreamUnavailable(f"{shown}: {type(e).__name__}") from None


class _RetryAfter(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


def _conn_reason(e: aiohttp.ClientConnectionError) -> str:
    if isinstance(e, aiohttp.ClientConnectorError):
        return f"connection failed: {e.os_error.strerror or e.os_error}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return f"connection error: {type(e).__name__}"


async def _error_detail(resp: aiohttp.ClientResponse) -> str:
    """The first line of a short text/plain error body, for our own error messages."""
    if resp.content_type != "text/plain":
        return ""
    try:
        raw = await resp.content.read(600)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    line = raw.decode("utf-8", "replace").strip().split("\n", 1)[0]
    return "".join(c for c in line if c.isprintable())[:200]


async def _read_body(
    resp: aiohttp.ClientResponse, dst: Path | None, limit: int, shown: str
) -> bytes | None:
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise InvalidContent(f"{shown}: response too large ({declared} bytes)")
    total = 0
    if dst is None:
        chunks: list[bytes] = []
        async for chunk in resp.content.iter_chunked(CHUNK):
            total += len(chunk)
            if total > limit:
                raise InvalidContent(f"{shown}: response too large (over {limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)
    # Chunks are small and land in the page cache; a thread hop per chunk costs more.
    try:
        with open(dst, "wb") as f:  # noqa: ASYNC230
            async for chunk in resp.content.iter_chunked(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise InvalidContent(
                        f"{shown}: downloaded zip file too large (over {limit} bytes)"
                    )
                f.write(chunk)
    except OSError as e:
        # Our disk, not the mirror, failed: say so, so the chain stops instead of blaming it.
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"cache full (no space left) while downloading {shown}") from None
        raise StorageError(f"cannot write download of {shown}: {e.strerror or e}") from None
    return None
