"""transport fetches checksum-database paths over HTTP, failing over across equivalent routes.

``HttpSumdbTransport(routes, session)`` takes base URLs that serve the same log,
e.g. ``https://sum.golang.org`` and ``https://goproxy.cn/sumdb/sum.golang.org``.
``fetch(path)`` returns the raw body of the first route answering 200, trying
the route that last succeeded first. Connection errors, timeouts, 429 and 5xx
move on to the next route. A 404/410 also moves on (a mirror may lag or not
carry a path), but if every route answered and at least one said 404/410, the
answer is NotFound (Gone when all of them said 410); otherwise UpstreamError.
Bodies are capped: no checksum-database answer is legitimately larger than a few
hundred KiB.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp
from yarl import URL

from gomirror.errors import Gone, NotFound, UpstreamError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
MAX_BODY = 4 << 20
USER_AGENT = "gomirror-sumdb"


class HttpSumdbTransport:
    """Fetches ``<route>/<path>`` with failover (see the module docstring)."""

    def __init__(
        self,
        routes: Sequence[str],
        session: aiohttp.ClientSession,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_body: int = MAX_BODY,
    ) -> None:
        if not routes:
            raise ValueError("HttpSumdbTransport needs at least one route")
        self.routes = [r.rstrip("/") for r in routes]
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_body = max_body
        self._preferred = 0

    def _order(self) -> list[int]:
        first = self._preferred
        return [first] + [i for i in range(len(self.routes)) if i != first]

    async def fetch(self, path: str) -> bytes:
        """Return the body of ``path`` (no leading slash) from the first route that has it."""
        path = path.lstrip("/")
        not_found: list[int] = []
        failures: list[str] = []
        for i in self._order():
            url = f"{self.routes[i]}/{path}"
            try:
                status, body = await self._get(url)
            except (TimeoutError, aiohttp.ClientError, UpstreamError) as e:
                failures.append(f"{url}: {e or type(e).__name__}")
                log.warning("sumdb route failed", extra={"url": url, "error": str(e)})
                continue
            if status == 200:
                self._preferred = i
                return body
            if status in (404, 410):
                not_found.append(status)
                failures.append(f"{url}: {status}")
                continue
            failures.append(f"{url}: {status}")
            log.warning("sumdb route failed", extra={"url": url, "status": status})
        detail = "; ".join(failures)
        if not_found and all(s == 410 for s in not_found):
            raise Gone(f"{path}: gone ({detail})")
        if not_found:
            raise NotFound(f"{path}: not found ({detail})")
        raise UpstreamError(f"{path}: every checksum database route failed ({detail})")

    async def _get(self, url: str) -> tuple[int, bytes]:
        async with self._session.get(
            URL(url, encoded=True),
            timeout=self._timeout,
            headers={"User-Agent": USER_AGENT},
            allow_redirects=True,
        ) as resp:
            if resp.status != 200:
                resp.release()
                return resp.status, b""
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(64 << 10):
                size += len(chunk)
                if size > self._max_body:
                    raise UpstreamError(f"{url}: response larger than {self._max_body} bytes")
                chunks.append(chunk)
            return 200, b"".join(chunks)
