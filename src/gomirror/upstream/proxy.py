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

A mirror is not trusted to behave:

- zips are streamed to disk and cut off past Go's 500 MiB limit, other files
  past 16 MiB;
- besides ``read_timeout`` (silence), every answer must keep a minimum
  transfer rate and finish within a deadline (``upstream.transfer``);
  breaking either is an ``UpstreamTimeout``;
- it asks for ``Accept-Encoding: identity`` and decodes nothing on the event
  loop: a zip with any ``Content-Encoding`` is ``InvalidContent``; a small
  file in ``gzip``/``deflate`` is decoded in a worker thread, its output
  capped at 16 MiB; any other encoding is ``InvalidContent``;
- redirects are followed by hand, each hop judged by
  ``upstream.redirects.RedirectPolicy`` before it is requested; a refused
  one is ``UpstreamRejected``.

A mirror that is itself a gomirror marks an answer it served stale with
``X-Gomirror-Stale: <reason>``; that reason is carried in
``Fetched.stale_reason`` so an edge instance answers it stale too instead of
caching it as fresh.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import time
import zlib
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import aiohttp
from yarl import URL

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
from gomirror.upstream.redirects import REDIRECT_STATUSES, RedirectPolicy, Resolve
from gomirror.upstream.transfer import RateGuard, TransferLimits

MAX_ZIP_BYTES = 500 << 20
MAX_SMALL_BYTES = 16 << 20  # .mod is capped at 16 MiB by Go; list/info are far smaller
CHUNK = 256 << 10
USER_AGENT = "gomirror (+https://github.com/gomirror/gomirror)"
ERROR_DETAIL_SECONDS = 5.0  # an error body is a courtesy: never wait long for it
_GZIP = frozenset({"gzip", "x-gzip"})
_IDENTITY = frozenset({"", "identity"})
_MAX_GZIP_MEMBERS = 64
STALE_HEADER = "X-Gomirror-Stale"
MAX_STALE_REASON = 200


class _Got(NamedTuple):
    body: bytes | None  # None for a zip, which went to its destination file
    stale: str | None  # the upstream's own stale marker, if it sent one


def _stale_reason(resp: aiohttp.ClientResponse) -> str | None:
    value = resp.headers.get(STALE_HEADER)
    if value is None:
        return None
    text = "".join(c if c.isprintable() else "?" for c in value[:MAX_STALE_REASON]).strip()
    return text or "stale"


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
        limits: TransferLimits | None = None,
        follow_redirects: str = "safe",
        resolve: Resolve | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._name = redact_url(self.base_url)
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout or None, sock_read=read_timeout or None
        )
        self._retry_after_max = retry_after_max
        self._limits = limits or TransferLimits()
        self._redirects = RedirectPolicy(URL(self.base_url), follow_redirects, resolve)

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
        got = await self._get(path, dst=None, limit=MAX_SMALL_BYTES)
        assert got.body is not None
        return Fetched(
            got.body, self._name, elapsed=time.monotonic() - started, stale_reason=got.stale
        )

    async def get_raw(self, path: str) -> bytes:
        """GET an arbitrary path below the base URL (used for ``/sumdb/...`` routes)."""
        return await self._get_small(path)

    async def close(self) -> None:
        """Nothing to release: the session belongs to the composition root."""

    async def _get_small(self, path: str) -> bytes:
        got = await self._get(path, dst=None, limit=MAX_SMALL_BYTES)
        assert got.body is not None
        return got.body

    async def _get(
        self, path: str, *, dst: Path | None, limit: int, first_byte: FirstByte | None = None
    ) -> _Got:
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
    ) -> _Got:
        shown = self._name + path
        deadline = self._limits.deadline(zip=dst is not None)
        bound = asyncio.timeout(deadline)
        try:
            async with bound:
                return await self._follow(path, shown, dst=dst, limit=limit, first_byte=first_byte)
        except TimeoutError:
            if bound.expired():
                raise UpstreamTimeout(
                    f"{shown}: not complete within the {deadline:g}s deadline"
                ) from None
            raise UpstreamTimeout(f"{shown}: timed out") from None
        except aiohttp.TooManyRedirects:
            raise UpstreamRejected(f"{shown}: too many redirects") from None
        except aiohttp.ClientPayloadError as e:
            raise UpstreamUnavailable(f"{shown}: response cut short: {e}") from None
        except aiohttp.ClientConnectionError as e:
            raise UpstreamUnavailable(f"{shown}: {_conn_reason(e)}") from None
        except aiohttp.ClientError as e:
            raise UpstreamUnavailable(f"{shown}: {type(e).__name__}") from None

    async def _follow(
        self,
        path: str,
        shown: str,
        *,
        dst: Path | None,
        limit: int,
        first_byte: FirstByte | None,
    ) -> _Got:
        url = URL(self.base_url + path)
        hop = 0
        while True:
            async with self._session.get(
                url,
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                allow_redirects=False,
                auto_decompress=False,
            ) as resp:
                status = resp.status
                if status in REDIRECT_STATUSES and "Location" in resp.headers:
                    hop += 1
                    url = await self._next_hop(url, resp.headers["Location"], hop, shown)
                    continue
                if status == 200:
                    if first_byte is not None:
                        first_byte()
                    body = await self._read_ok(resp, dst, limit, shown)
                    return _Got(body, _stale_reason(resp))
                await self._raise_for(resp, shown)

    async def _next_hop(self, current: URL, location: str, hop: int, shown: str) -> URL:
        try:
            target = current.join(URL(location))
        except ValueError:
            raise UpstreamRejected(f"{shown}: redirect to an invalid URL") from None
        if target.scheme not in ("http", "https") or not target.host:  # file:, data: (no origin)
            scheme = target.scheme or "no"
            raise UpstreamRejected(f"{shown}: redirect to an unsupported URL ({scheme} scheme)")
        if (target.scheme, target.host, target.port) != (
            current.scheme,
            current.host,
            current.port,
        ):
            target = target.with_user(None)  # credentials never travel to another origin
        why = await self._redirects.refusal(current, target, hop)
        if why is not None:
            raise UpstreamRejected(f"{shown}: {why}")
        return target

    async def _read_ok(
        self, resp: aiohttp.ClientResponse, dst: Path | None, limit: int, shown: str
    ) -> bytes | None:
        encoding = resp.headers.get("Content-Encoding", "").strip().lower()
        if dst is not None:
            if encoding not in _IDENTITY:
                raise InvalidContent(f"{shown}: zip sent with Content-Encoding {encoding[:40]!r}")
            return await _read_body(resp, dst, limit, shown, self._limits.guard())
        if encoding not in _IDENTITY and encoding not in _GZIP and encoding != "deflate":
            raise InvalidContent(f"{shown}: unsupported Content-Encoding {encoding[:40]!r}")
        body = await _read_body(resp, None, limit, shown, self._limits.guard())
        assert body is not None
        if encoding in _IDENTITY:
            return body
        return await asyncio.to_thread(_decode, body, encoding, limit, shown)

    async def _raise_for(self, resp: aiohttp.ClientResponse, shown: str) -> None:
        status = resp.status
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
    """The first line of a short, unencoded text/plain error body, for our own error messages."""
    if resp.content_type != "text/plain" or resp.headers.get("Content-Encoding", "").strip():
        return ""
    try:
        async with asyncio.timeout(ERROR_DETAIL_SECONDS):
            raw = await resp.content.read(600)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    line = raw.decode("utf-8", "replace").strip().split("\n", 1)[0]
    return "".join(c for c in line if c.isprintable())[:200]


def _check_rate(guard: RateGuard | None, total: int, shown: str) -> None:
    if guard is None:
        return
    rate = guard.too_slow(total)
    if rate is not None:
        raise UpstreamTimeout(f"{shown}: too slow ({rate:.0f} bytes/s)")


async def _read_body(
    resp: aiohttp.ClientResponse,
    dst: Path | None,
    limit: int,
    shown: str,
    guard: RateGuard | None,
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
            _check_rate(guard, total, shown)
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
                _check_rate(guard, total, shown)
    except OSError as e:
        # Our disk, not the mirror, failed: say so, so the chain stops instead of blaming it.
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"cache full (no space left) while downloading {shown}") from None
        raise StorageError(f"cannot write download of {shown}: {e.strerror or e}") from None
    return None


def _decode(body: bytes, encoding: str, limit: int, shown: str) -> bytes:
    """Undo a gzip or deflate Content-Encoding, at most ``limit`` bytes out (a worker thread's job)."""
    too_large = InvalidContent(f"{shown}: response too large (over {limit} bytes decoded)")
    bad = InvalidContent(f"{shown}: invalid {encoding} encoding")
    out: list[bytes] = []
    produced = 0
    if encoding in _GZIP:
        data, members = body, 0
        while data:
            members += 1
            if members > _MAX_GZIP_MEMBERS:
                raise bad
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            produced = _inflate(d, data, out, produced, limit, too_large, bad)
            data = d.unused_data
            if not d.eof:
                raise bad
        return b"".join(out)
    # "deflate" is meant to be zlib-wrapped; some servers send raw deflate: accept both.
    wrapped = len(body) >= 2 and (body[0] & 0x0F) == 8 and ((body[0] << 8) | body[1]) % 31 == 0
    d = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    _inflate(d, body, out, produced, limit, too_large, bad)
    if not d.eof:
        raise bad
    return b"".join(out)


def _inflate(
    d: zlib._Decompress,
    data: bytes,
    out: list[bytes],
    produced: int,
    limit: int,
    too_large: InvalidContent,
    bad: InvalidContent,
) -> int:
    try:
        while data and not d.eof:
            piece = d.decompress(data, limit + 1 - produced)
            produced += len(piece)
            if produced > limit:
                raise too_large
            out.append(piece)
            data = d.unconsumed_tail
    except zlib.error:
        raise bad from None
    return produced
