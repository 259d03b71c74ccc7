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
from typing import BinaryIO, Protocol

from aiohttp import web

from gomirror import __version__
from gomirror.answers import Answer, FileAnswer
from gomirror.errors import GomirrorError, NotFound
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.readiness import ReadyState
from gomirror.server import responses as R
from gomirror.server.admin import PURGE_PATH, AdminApi
from gomirror.server.filesend import OpenFileResponse, open_zip
from gomirror.server.routes import ModuleRequest, RouteCache, SumdbRequest
from gomirror.server.status_cache import CachedStatus
from gomirror.server.status_page import (
    STATUS_HTML_PATHS,
    STATUS_JSON_PATH,
    StatusSnapshot,
    content_security_policy,
)
from gomirror.service import Endpoints

log = logging.getLogger(__name__)
access_log = logging.getLogger("gomirror.access")

ZIP_CHUNK = 256 << 10
ENDPOINT = web.RequestKey("endpoint", str)
CACHE = web.RequestKey("cache", str)
BYTES = web.RequestKey("bytes", int)


class SumdbHandler(Protocol):
    """Serves ``/sumdb/<name>/...``; ``rest`` is the path after ``/sumdb/``.

    Returns a plain answer or raises a domain error (``NotFound``, ``InvalidRequest``,
    ``UpstreamError``, ``SumdbError``), like the service.
    """

    async def handle_path(self, rest: str) -> Answer: ...


class StatusSource(Protocol):
    """Produces the status page's data (``server.status.StatusBuilder``)."""

    async def snapshot(self) -> StatusSnapshot: ...


class ReadinessCheck(Protocol):
    async def check(self) -> ReadyState: ...


class RequestListener(Protocol):
    """Told the module of every module request (the monitor's popularity count)."""

    def record(self, module: str) -> None: ...


OPS_PATHS = ("/healthz", "/readyz", "/metrics", *STATUS_HTML_PATHS, STATUS_JSON_PATH)


class Server:
    """Builds the aiohttp application around a Service."""

    def __init__(
        self,
        service: Endpoints,  # a Service, or a wrapper such as predict.PredictingService
        metrics: Metrics,
        *,
        sumdb: SumdbHandler | None = None,
        access_log_enabled: bool = True,
        status: StatusSource | None = None,
        readiness: ReadinessCheck | None = None,
        requests: RequestListener | None = None,
        metrics_text: Callable[[], Awaitable[bytes]] | None = None,
        admin: AdminApi | None = None,
    ) -> None:
        self.service = service
        self.metrics = metrics
        self.sumdb = sumdb
        self.access_log_enabled = access_log_enabled
        self.status = status
        self._status_pages = CachedStatus(status) if status is not None else None  # ~1 s reuse
        self.readiness = readiness
        self._requests = requests
        self._metrics_text = metrics_text
        self._routes = RouteCache()
        self.admin = admin

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._observe], client_max_size=1024)
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        app.router.add_route("HEAD", "/{tail:.*}", self._dispatch)
        if self.admin is not None:
            app.router.add_route("POST", PURGE_PATH, self._admin_purge)
        return app

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        started = time.monotonic()
        resp = await handler(request)
        endpoint = request.get(ENDPOINT, "other")
        seconds = time.monotonic() - started
        self.metrics.requests.labels(endpoint, str(resp.status)).inc()
        self.metrics.request_seconds.labels(endpoint).observe(seconds)
        size = request.get(BYTES, resp.content_length or 0)
        self.metrics.bytes_served.labels(endpoint).inc(size)
        cache = request.get(CACHE)
        if cache is not None and endpoint not in ("ops", "other"):
            self.metrics.cache.labels(endpoint, cache).inc()
        if self.access_log_enabled:
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.raw_path[:300],
                    "status": resp.status,
                    "bytes": size,
                    "ms": round(seconds * 1000, 2),
                    "cache": request.get(CACHE, "-"),
                    "remote": request.remote,
                },
            )
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        try:
            if raw.split("?", 1)[0] in OPS_PATHS:
                return await self._ops(request, raw.split("?", 1)[0])
            req = self._routes.parse(raw)
            if isinstance(req, SumdbRequest):
                request[ENDPOINT] = "sumdb"
                return await self._sumdb(request, req)
            request[ENDPOINT] = req.endpoint
            resp = await self._module(request, req)
            if self._requests is not None:
                self._requests.record(req.module)  # found modules only: not the prefix probes
            return resp
        except Exception as e:
            if not isinstance(e, GomirrorError):
                log.exception("unhandled error", extra={"path": raw})
            ans = R.error_answer(e)
            return web.Response(
                status=ans.status,
                body=ans.body,
                headers={"Content-Type": R.TEXT, "Cache-Control": ans.cache_control},
            )

    async def _admin_purge(self, request: web.Request) -> web.StreamResponse:
        request[ENDPOINT] = "ops"
        assert self.admin is not None
        return await self.admin.purge(request)

    async def _module(self, request: web.Request, req: ModuleRequest) -> web.StreamResponse:
        svc = self.service
        if req.endpoint == "zip":
            # Opened before answering: a gc or purge meanwhile cannot cut it (server.filesend).
            z, opened = await open_zip(lambda: svc.zip(req.module, req.version))
            return await self._file(request, z, opened)
        if req.endpoint == "list":
            ans = await svc.list(req.module)
        elif req.endpoint == "latest":
            ans = await svc.latest(req.module)
        elif req.endpoint == "info":
            ans = await svc.info(req.module, req.version)
        else:
            ans = await svc.mod(req.module, req.version)
        return self._small(request, ans)

    async def _file(
        self, request: web.Request, z: FileAnswer, opened: BinaryIO | None = None
    ) -> web.StreamResponse:
        request[CACHE] = z.cache
        request[BYTES] = z.size
        headers = {
            "Content-Type": z.content_type,
            "Cache-Control": R.cache_control(z.lifetime),
            "X-Gomirror-Cache": z.cache,
        }
        if z.redirect is not None:
            request[BYTES] = 0
            return web.Response(
                status=302, headers={"Location": z.redirect, "Cache-Control": R.ERROR_CACHE}
            )
        if z.path is not None and opened is not None:
            return OpenFileResponse(z.path, opened, chunk_size=ZIP_CHUNK, headers=headers)
        if z.path is not None:
            return web.FileResponse(z.path, chunk_size=ZIP_CHUNK, headers=headers)
        if z.chunks is not None:
            resp = web.StreamResponse(headers=headers)
            resp.content_length = z.size
            await resp.prepare(request)
            if request.method == "HEAD":  # aiohttp would send the body after HEAD's headers
                close = getattr(z.chunks, "aclose", None)
                if close is not None:
                    await close()
            else:
                async for chunk in z.chunks:
                    await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(body=z.body, headers=headers)

    def _small(self, request: web.Request, ans: Answer) -> web.Response:
        request[CACHE] = ans.cache
        headers = {
            "Content-Type": ans.content_type,
            "Cache-Control": R.cache_control(ans.lifetime),
            "X-Gomirror-Cache": ans.cache,
        }
        if ans.lifetime.stale:
            headers["X-Gomirror-Stale"] = ans.stale_reason or "every upstream failed"
        return web.Response(body=ans.body, headers=headers)

    async def _sumdb(self, request: web.Request, req: SumdbRequest) -> web.Response:
        if self.sumdb is None:
            raise NotFound("not found: checksum database pass-through is disabled")
        ans = await self.sumdb.handle_path(req.rest)
        request[CACHE] = ans.cache
        return web.Response(
            body=ans.body,
            headers={
                "Content-Type": ans.content_type,
                "Cache-Control": R.cache_control(ans.lifetime),
            },
        )

    async def _ops(self, request: web.Request, path: str) -> web.Response:
        request[ENDPOINT] = "ops"
        if path == "/healthz":
            return web.Response(text="ok\n", content_type="text/plain")
        if path == "/readyz":
            if self.readiness is None:
                return web.Response(text="ready\n", content_type="text/plain")
            state = await self.readiness.check()
            text = ("ready" if state.ready else "not ready") + "\n" + "\n".join(state.lines)
            return web.Response(
                status=200 if state.ready else 503,
                text=text + "\n",
                content_type="text/plain",
                headers={"Cache-Control": R.ERROR_CACHE},
            )
        if path == "/metrics":
            body = await self._metrics_text() if self._metrics_text else self.metrics.render()
            return web.Response(body=body, headers={"Content-Type": self.metrics.content_type})
        if self._status_pages is not None:
            if path == STATUS_JSON_PATH:
                return web.Response(
                    text=await self._status_pages.json(),
                    content_type="application/json",
                    headers={"Cache-Control": R.ERROR_CACHE},
                )
            return web.Response(
                text=await self._status_pages.page(),
                content_type="text/html",
                headers={
                    "Cache-Control": R.ERROR_CACHE,
                    "Content-Security-Policy": content_security_policy(),
                },
            )
        if path != "/":
            raise NotFound("not found: the status page is disabled")
        return web.Response(
            text=f"gomirror {__version__}: a Go module proxy. Point the go command at this "
            "server's address with go env -w GOPROXY=http://HOST:PORT\n",
            content_type="text/plain",
        )
