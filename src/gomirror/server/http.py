"""server.http is the aiohttp application: one catch-all route that dispatches to the service.

Module requests go through ``routes.parse_path`` then one ``Service`` method;
``/sumdb/...`` goes to the checksum-database pass-through; ``/healthz`` and
``/metrics`` are for operators. Every exception is turned into an answer by
``responses.error_answer`` here and nowhere else. A middleware writes one
access-log event per request and records request metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gomirror import __version__
from gomirror.errors import GomirrorError, NotFound
from gomirror.monitor.metrics import Metrics
from gomirror.server import responses as R
from gomirror.server.routes import ModuleRequest, SumdbRequest, parse_path
from gomirror.service import Answer, Service, is_canonical_for

log = logging.getLogger(__name__)
access_log = logging.getLogger("gomirror.access")

ZIP_CHUNK = 256 << 10


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """A pass-through answer (sumdb): status, type, body, cache policy."""

    status: int
    content_type: str
    body: bytes
    cache_control: str


class SumdbHandler(Protocol):
    """Serves ``/sumdb/<name>/...``; ``rest`` is the path after ``/sumdb/``."""

    async def handle_path(self, rest: str) -> RawAnswer: ...


class Server:
    """Builds the aiohttp application around a Service."""

    def __init__(
        self,
        service: Service,
        metrics: Metrics,
        *,
        sumdb: SumdbHandler | None = None,
        access_log_enabled: bool = True,
        status_page: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.sumdb = sumdb
        self.access_log_enabled = access_log_enabled
        self.status_page = status_page

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._observe], client_max_size=1024)
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        app.router.add_route("HEAD", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        resp = await handler(request)
        endpoint = request.get("endpoint", "other")
        seconds = time.monotonic() - started
        self.metrics.requests.labels(endpoint, str(resp.status)).inc()
        self.metrics.request_seconds.labels(endpoint).observe(seconds)
        size = request.get("bytes", resp.content_length or 0)
        self.metrics.bytes_served.labels(endpoint).inc(size)
        if self.access_log_enabled:
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.raw_path,
                    "status": resp.status,
                    "bytes": size,
                    "ms": round(seconds * 1000, 2),
                    "cache": request.get("cache", "-"),
                    "remote": request.remote,
                },
            )
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        try:
            if raw in ("/healthz", "/metrics", "/"):
                return await self._ops(request, raw)
            req = parse_path(raw)
            if isinstance(req, SumdbRequest):
                request["endpoint"] = "sumdb"
                return await self._sumdb(req)
            request["endpoint"] = req.endpoint
            return await self._module(request, req)
        except Exception as e:
            if not isinstance(e, GomirrorError):
                log.exception("unhandled error", extra={"path": raw})
            ans = R.error_answer(e)
            return web.Response(
                status=ans.status,
                body=ans.body,
                headers={"Content-Type": R.TEXT, "Cache-Control": ans.cache_control},
            )

    async def _module(self, request: web.Request, req: ModuleRequest) -> web.StreamResponse:
        svc = self.service
        if req.endpoint == "zip":
            z = await svc.zip(req.module, req.version)
            request["cache"] = z.cache
            request["bytes"] = z.size
            headers = {
                "Content-Type": R.ZIP,
                "Cache-Control": R.IMMUTABLE_CACHE,
                "X-Gomirror-Cache": z.cache,
            }
            if z.path is not None:
                return web.FileResponse(z.path, chunk_size=ZIP_CHUNK, headers=headers)
            return web.Response(body=z.body, headers=headers)
        if req.endpoint == "list":
            ans = await svc.list(req.module)
            return self._small(request, ans, "text/plain; charset=utf-8", mutable=True)
        if req.endpoint == "latest":
            ans = await svc.latest(req.module)
            return self._small(request, ans, R.JSON, mutable=True)
        if req.endpoint == "info":
            ans = await svc.info(req.module, req.version)
            canonical = is_canonical_for(req.module, req.version)
            return self._small(request, ans, R.JSON, mutable=not canonical)
        ans = await svc.mod(req.module, req.version)
        return self._small(request, ans, "text/plain; charset=utf-8", mutable=False)

    def _small(
        self, request: web.Request, ans: Answer, content_type: str, *, mutable: bool
    ) -> web.Response:
        request["cache"] = ans.cache
        headers = {
            "Content-Type": content_type,
            "Cache-Control": R.mutable_cache(self.service.mutable_ttl)
            if mutable
            else R.IMMUTABLE_CACHE,
            "X-Gomirror-Cache": ans.cache,
        }
        if ans.cache == "stale":
            headers["Cache-Control"] = "no-cache"
            headers["X-Gomirror-Stale"] = ans.stale_reason or "every upstream failed"
        return web.Response(body=ans.body, headers=headers)

    async def _sumdb(self, req: SumdbRequest) -> web.Response:
        if self.sumdb is None:
            raise NotFound("not found: checksum database pass-through is disabled")
        ans = await self.sumdb.handle_path(req.rest)
        return web.Response(
            status=ans.status,
            body=ans.body,
            headers={"Content-Type": ans.content_type, "Cache-Control": ans.cache_control},
        )

    async def _ops(self, request: web.Request, path: str) -> web.Response:
        request["endpoint"] = "ops"
        if path == "/healthz":
            return web.Response(text="ok\n", content_type="text/plain")
        if path == "/metrics":
            return web.Response(
                body=self.metrics.render(), headers={"Content-Type": self.metrics.content_type}
            )
        if self.status_page is not None:
            return web.Response(text=await self.status_page(), content_type="text/html")
        return web.Response(
            text=f"gomirror {__version__}: a Go module proxy. Use it with "
            f"go env -w GOPROXY=http://{request.host}\n",
            content_type="text/plain",
        )
