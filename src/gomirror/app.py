"""app is the one composition root: it builds every part from a Config and runs the server.

``App.start`` creates, in order: storage, metrics and events, the shared HTTP
client session, the upstream chains (public, and private-only for modules
matching ``private``), the checksum-database client, verifier and pass-through,
the service and the HTTP server; ``App.stop`` tears them down in reverse.
Nothing else in gomirror constructs long-lived parts or holds global state.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import aiohttp
from aiohttp import web

from gomirror import __version__
from gomirror.config import Config
from gomirror.errors import ConfigError, NotFound
from gomirror.module.paths import match_prefix_patterns
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.server.http import Server
from gomirror.service import Service
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Upstream
from gomirror.upstream.chain import Chain, Link, OffUpstreamError
from gomirror.upstream.goproxy import parse_goproxy
from gomirror.upstream.proxy import HttpUpstream
from gomirror.wiring import build_direct, build_sumdb

log = logging.getLogger(__name__)


class OffUpstream:
    """The ``off`` keyword: every lookup fails as not found and the list ends."""

    name = "off"

    async def _off(self, *_: object) -> bytes:
        raise OffUpstreamError("module lookup disabled by GOPROXY=off")

    list = info = latest = mod = _off

    async def zip(self, module: str, version: str, dst: object) -> None:
        await self._off()

    async def close(self) -> None:
        pass


class App:
    """Owns every long-lived part of one gomirror process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closers: list[Callable[[], object]] = []
        self.service: Service | None = None
        self.port: int = config.listen_port

    def _chains(self, session: aiohttp.ClientSession, metrics: Metrics) -> Callable[[str], Chain]:
        cfg = self.config
        links: list[Link] = []
        direct: Upstream | None = None
        for entry in parse_goproxy(cfg.upstream):
            up: Upstream
            if entry.target == "off":
                up = OffUpstream()
            elif entry.target == "direct":
                direct = direct or build_direct(cfg)
                up = direct
            else:
                up = HttpUpstream(
                    entry.target,
                    session,
                    connect_timeout=cfg.connect_timeout,
                    read_timeout=cfg.read_timeout,
                    retry_after_max=cfg.retry_after_max,
                    timeout_park=cfg.timeout_park,
                )
            links.append(Link(up, entry.fallback_on_error, entry.target == "direct"))
        public = Chain(links, policy=cfg.policy, observer=metrics.observe_upstream)
        if not cfg.private:
            return lambda module: public
        # Private modules go only to direct: never to a mirror (GONOPROXY semantics).
        if direct is None:
            direct = build_direct(cfg)
        private = Chain(
            [Link(direct, False, True)], policy=cfg.policy, observer=metrics.observe_upstream
        )
        patterns = cfg.private
        return lambda module: private if match_prefix_patterns(patterns, module) else public

    async def start(self) -> None:
        cfg = self.config
        storage = DiskStorage(cfg.cache_dir)
        metrics = Metrics()
        events = EventRecorder(storage, metrics)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300),
            auto_decompress=True,
            trust_env=True,
        )
        router = self._chains(self._session, metrics)
        verifier, passthrough = build_sumdb(cfg, storage, self._session)
        self.service = Service(
            storage=storage,
            router=router,
            verifier=verifier,
            events=events,
            metrics=metrics,
            mutable_ttl=cfg.mutable_ttl,
            negative_ttl=cfg.negative_ttl,
        )
        server = Server(self.service, metrics, sumdb=passthrough, access_log_enabled=cfg.access_log)
        self.runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
        await self.runner.setup()
        sock = _listen_socket(cfg.listen_host, cfg.listen_port, reuse_port=cfg.workers > 1)
        self.port = sock.getsockname()[1]
        site = web.SockSite(self.runner, sock)
        await site.start()
        log.info(
            "listening",
            extra={
                "version": __version__,
                "addr": f"{cfg.listen_host}:{self.port}",
                "cache_dir": str(cfg.cache_dir),
                "upstream": cfg.upstream,
            },
        )

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self._session is not None:
            await self._session.close()


def _listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"invalid setting listen: cannot listen on {host}:{port}: {e.strerror}"
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


__all__ = ["App", "NotFound"]
