"""app is the one composition root: ``build(config)`` makes the running parts, ``serve(parts)`` binds the socket.

``build`` is an async context manager. In order it creates: storage (wrapped to
be observed) and the coordinator, metrics and events, the shared HTTP client
session, one health record per upstream, the checksum-database client,
verifier and ``/sumdb/`` pass-through, the upstream tree (a router over chains
of observed, verified mirrors and ``direct``), and the service. Every resource
is registered on one ``AsyncExitStack`` as it is made, so leaving the context
closes them in reverse order (upstream sessions and git processes included),
also when a later step fails. Every command uses ``build``; nothing else in
gomirror wires parts together or holds global state.

Who wraps whom, for one mirror: ``Chain(policy) → ObservedUpstream →
VerifiedUpstream → HttpUpstream``; storage: ``ObservedStorage → DiskStorage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from gomirror import __version__
from gomirror.config import Config
from gomirror.coordination.base import Coordinator
from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.negative import SharedNegatives
from gomirror.coordination.sharedhealth import HealthSyncedUpstream, SharedHealth
from gomirror.errors import ConfigError, StorageError
from gomirror.monitor.aggregate import MetricsSource, metrics_source
from gomirror.monitor.alerts import Alerter
from gomirror.monitor.cachefull import CacheFullReporter
from gomirror.monitor.consistency import ConsistencyMonitor
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.findings import FindingStore
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.observed import ObservedStorage, ObservedUpstream, ObservedVerifier
from gomirror.monitor.popularity import Popularity, watch_set
from gomirror.monitor.readiness import Reachable, Readiness
from gomirror.predict import PredictingService, Predictor, predict_settings
from gomirror.server.admin import AdminApi
from gomirror.server.fastpath import FastPath, FastPathSite
from gomirror.server.http import Server, SumdbHandler
from gomirror.server.limits import limit_connections, raise_fd_limit
from gomirror.server.protocol import QuietAppRunner
from gomirror.server.status import MonitorAdapter, StatusBuilder
from gomirror.server.status_page import SumdbStatus
from gomirror.service import Service
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage
from gomirror.storage.lastuse import UseRecorder
from gomirror.sumdb.client import SumdbClient
from gomirror.upstream.base import Upstream
from gomirror.upstream.chain import Chain
from gomirror.upstream.goproxy import redact_url
from gomirror.upstream.health import HealthBook, HealthSettings
from gomirror.upstream.off import OffUpstream
from gomirror.upstream.policy import Link, make_policy
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.router import Router
from gomirror.upstream.transfer import TransferLimits
from gomirror.upstream.verified import VerifiedUpstream, Verifier
from gomirror.wiring import build_direct, build_sumdb

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 8190  # request line and each header line; the go command's are far shorter
MAX_HEADERS = 64


@dataclass
class Parts:
    """The running parts of one gomirror process, as ``build`` made them."""

    config: Config
    storage: Storage
    disk: DiskStorage
    coordinator: Coordinator
    metrics: Metrics
    metrics_source: MetricsSource
    events: EventRecorder
    health: HealthBook
    verifier: ObservedVerifier
    sumdb: SumdbHandler | None
    sumdb_clients: tuple[SumdbClient, ...]
    upstream: Upstream
    chains: list[Chain]
    service: Service
    session: aiohttp.ClientSession
    popularity: Popularity
    alerter: Alerter
    monitor: ConsistencyMonitor | None
    remote_storage: Reachable | None = None  # shared object storage /readyz must reach
    predictor: Predictor | None = None  # what the server serves goes through it (gomirror.predict)
    uses: UseRecorder | None = (
        None  # records version reads for cache gc; touch(key) for hits served elsewhere
    )
    stack: contextlib.AsyncExitStack = field(repr=False, default_factory=contextlib.AsyncExitStack)


def open_disk(config: Config) -> DiskStorage:
    """The disk cache, checked writable; any problem is a one-line ConfigError naming cache_dir."""
    try:
        disk = DiskStorage(config.cache.cache_dir)
        disk.check_writable()
    except StorageError as e:
        raise ConfigError(f"invalid setting cache_dir: {e}") from None
    return disk


async def open_backend(
    config: Config, disk: DiskStorage, stack: contextlib.AsyncExitStack
) -> Storage:
    """The configured store of module files: the disk cache itself, or an S3 bucket that answers."""
    st = config.storage
    if st.storage != "s3":
        return disk
    # Imported here: aiobotocore costs 0.2 s of start-up that disk users need not pay.
    from gomirror.storage.s3 import S3Settings, S3Storage

    s3 = S3Storage(S3Settings.from_section(st))
    stack.push_async_callback(s3.close)
    try:
        await s3.check()
    except StorageError as e:
        raise ConfigError(f"invalid setting s3_bucket: {e}") from None
    return s3


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def preflight(config: Config) -> None:
    """Check what start-up needs before forking workers: a one-line ConfigError if not."""
    disk = open_disk(config)
    asyncio.run(disk.close())


@contextlib.asynccontextmanager
async def build(
    config: Config, *, worker_group: Path | None = None, monitor: bool = False
) -> AsyncIterator[Parts]:
    """Make every part from config; close them all, in reverse order, on exit."""
    async with contextlib.AsyncExitStack() as stack:
        disk = open_disk(config)
        stack.push_async_callback(disk.close)
        instance = instance_name(config)
        metrics = Metrics(instance=instance or None)
        source = await stack.enter_async_context(metrics_source(metrics, worker_group))
        backend = await open_backend(config, disk, stack)
        uses = UseRecorder(ObservedStorage(backend, metrics), interval=config.cache.last_use_flush)
        uses.start()  # what is read, for cache gc, written in batches (storage.lastuse)
        stack.push_async_callback(uses.stop)
        storage: Storage = uses
        local = LocalCoordinator(disk.lock_dir())
        coordinator: Coordinator = local
        negatives: SharedNegatives | None = None
        shared_health: SharedHealth | None = None
        if config.storage.redis_url:  # several instances: Redis, with local as its fallback
            from gomirror.coordination.redis import RedisCoordinator  # only then pay its import

            shared = RedisCoordinator(
                config.storage.redis_url, local=local, lock_ttl=config.storage.redis_lock_ttl
            )
            await shared.start()  # unreachable: one warning and degraded; never raises
            coordinator = shared
            metrics.watch_coordination(shared)
            negatives = SharedNegatives(shared.state, config.cache.negative_ttl)
            shared_health = SharedHealth(shared.state, instance or socket.gethostname())
            stack.push_async_callback(shared_health.close)
        stack.push_async_callback(coordinator.close)
        events = EventRecorder(storage, metrics)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=64, ttl_dns_cache=300),
            auto_decompress=True,
            trust_env=True,
        )
        stack.push_async_callback(session.close)
        up = config.upstream
        health = HealthBook(
            HealthSettings(
                slow_threshold=up.slow_threshold,
                down_after=up.down_after,
                down_backoff=up.timeout_park,
                max_backoff=up.timeout_park * 10,
                untrusted_for=up.untrusted_for,
            )
        )
        metrics.watch_health(health)
        sumdb = build_sumdb(config, storage, session, events)
        verifier = ObservedVerifier(sumdb.verifier, metrics)
        upstream, chains, raw_mirrors = _upstreams(
            config, session, verifier, health, metrics, events
        )
        if shared_health is not None:  # instances agree which mirror is down
            for name in mirror_names(config):
                shared_health.attach(health.get(name))
            upstream = HealthSyncedUpstream(upstream, shared_health)
        stack.push_async_callback(upstream.close)
        service = Service(
            storage=storage,
            coordinator=coordinator,
            upstream=upstream,
            tmp_dir=lambda: disk.new_temp_path(".zip"),
            mutable_ttl=config.cache.mutable_ttl,
            negative_ttl=config.cache.negative_ttl,
            bad_answer_ttl=config.upstream.bad_answer_ttl,
            on_cache_full=CacheFullReporter(metrics.registry).report,
            redirect_min_size=config.storage.redirect_min_size,
            redirect_expiry=config.storage.redirect_expiry,
            shared_negatives=negatives,
        )
        predictor: Predictor | None = None
        if config.cache.predict != "off":
            predictor = Predictor(
                service,
                storage,
                predict_settings(config),
                on_outcome=lambda o: metrics.predictions.labels(o).inc(),
            )
            metrics.watch_predictions(predictor.hit_ratio)
            stack.push_async_callback(predictor.close)  # before the upstreams and storage close
        popularity = Popularity()
        alerter = await stack.enter_async_context(Alerter(config.monitor.alerts, session))
        consistency: ConsistencyMonitor | None = None
        if monitor and config.monitor.monitor and raw_mirrors:
            consistency = ConsistencyMonitor(
                raw_mirrors,
                health=health,
                verifier=sumdb.verifier,
                findings=FindingStore(storage),
                alerter=alerter,
                watch=watch_set(
                    config.monitor.watch,
                    popularity.top,
                    config.monitor.watch_top,
                    private=config.direct.private,
                ),
                interval=config.monitor.monitor_interval,
                probe_zips=config.monitor.probe_zips,
                healthy_threshold=config.upstream.slow_threshold,
                lag_alert_after=config.monitor.lag_alert_after,
                first_delay=min(30.0, config.monitor.monitor_interval),
                tmp_path=lambda: disk.new_temp_path(".zip"),
                on_probe=metrics.observe_probe,
                on_finding=lambda f: metrics.findings.labels(f.type).inc(),
                private=config.direct.private,
            )
            metrics.watch_lags(consistency.lags)
            task = asyncio.get_running_loop().create_task(consistency.run(), name="monitor")
            stack.push_async_callback(_stop_task, task)
        yield Parts(
            config=config,
            storage=storage,
            disk=disk,
            coordinator=coordinator,
            metrics=metrics,
            metrics_source=source,
            events=events,
            health=health,
            verifier=verifier,
            sumdb=sumdb.handler,
            sumdb_clients=sumdb.clients,
            upstream=upstream,
            chains=chains,
            service=service,
            session=session,
            popularity=popularity,
            alerter=alerter,
            monitor=consistency,
            remote_storage=backend if isinstance(backend, Reachable) else None,
            predictor=predictor,
            uses=uses,
            stack=stack,
        )


def _upstreams(
    config: Config,
    session: aiohttp.ClientSession,
    verifier: Verifier,
    health: HealthBook,
    metrics: Metrics,
    events: EventRecorder,
) -> tuple[Upstream, list[Chain], list[Upstream]]:
    up_cfg = config.upstream
    policy = make_policy(
        up_cfg.policy,
        hedge_floor=up_cfg.hedge_delay_min,
        hedge_cap=up_cfg.hedge_delay_max,
        max_parallel=up_cfg.hedge_max_parallel,
    )
    direct: Upstream | None = None

    def wrap(inner: Upstream) -> Upstream:
        return ObservedUpstream(
            VerifiedUpstream(inner, verifier), health.get(inner.name), metrics, events
        )

    links: list[Link] = []
    mirrors: list[Upstream] = []
    for entry in up_cfg.entries:
        if entry.target == "off":
            links.append(Link(OffUpstream(), entry.fallback_on_error, is_keyword=True))
        elif entry.target == "direct":
            direct = direct or wrap(build_direct(config))
            links.append(Link(direct, entry.fallback_on_error, is_direct=True, is_keyword=True))
        else:
            mirror = HttpUpstream(
                entry.target,
                session,
                connect_timeout=up_cfg.connect_timeout,
                read_timeout=up_cfg.read_timeout,
                retry_after_max=up_cfg.retry_after_max,
                limits=TransferLimits(
                    min_rate=up_cfg.min_transfer_rate,
                    rate_grace=up_cfg.rate_grace,
                    small_deadline=up_cfg.small_fetch_deadline,
                    zip_deadline=up_cfg.fetch_deadline,
                ),
                follow_redirects=up_cfg.follow_redirects,
            )
            mirrors.append(mirror)
            links.append(Link(wrap(mirror), entry.fallback_on_error))
    public = Chain(links, policy=policy, health=health, hedges=metrics, name="public")
    if not config.direct.private:
        return Router(public), [public], mirrors
    # Private modules go only to direct: never to a mirror (GONOPROXY semantics).
    private_direct = direct or wrap(build_direct(config))
    private = Chain(
        [Link(private_direct, False, is_direct=True, is_keyword=True)],
        policy=policy,
        health=health,
        name="private",
    )
    return Router(public, private, config.direct.private), [public, private], mirrors


def instance_name(config: Config) -> str:
    """The ``instance`` label: as configured; else HOSTNAME:PORT when storage is shared; else none."""
    if config.server.instance:
        return config.server.instance
    if config.storage.storage == "s3" or config.storage.redis_url:
        return f"{socket.gethostname()}:{config.server.listen_port}"
    return ""


def mirror_names(config: Config) -> list[str]:
    """The configured mirrors' health-record names, in list order."""
    return [redact_url(e.target) for e in config.upstream.entries if not e.is_keyword]


def sumdb_status(parts: Parts) -> list[SumdbStatus]:
    """The checksum databases' verified state, for the status page."""
    if not parts.sumdb_clients:
        return [SumdbStatus(name="checksum database", state="off")]
    v = parts.verifier
    failing = v.last_error_at is not None and (
        v.last_verified_at is None or v.last_error_at > v.last_verified_at
    )
    out = []
    for i, client in enumerate(parts.sumdb_clients):
        primary = i == 0
        out.append(
            SumdbStatus(
                name=client.name,
                state="unreachable" if primary and failing else "ok",
                tree_size=client.latest.n or None,
                verified_at=v.last_verified_at if primary else None,
                error=v.last_error if primary and failing else "",
            )
        )
    return out


def listen_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound, listening, non-blocking socket; a bind failure is a ConfigError naming listen."""
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


@contextlib.asynccontextmanager
async def serve(parts: Parts, sock: socket.socket | None = None) -> AsyncIterator[int]:
    """Serve HTTP on sock (or on the configured address) until the context exits; yield the port."""
    cfg = parts.config.server
    mirrors = mirror_names(parts.config)
    fast = fast_path(parts) if cfg.fast_path else None
    # A scrape first flushes the fast path's batched counts, so /metrics is never behind.
    metrics_text: Callable[[], Awaitable[bytes]] = parts.metrics_source.render
    if fast is not None:
        metrics_text = fast.flushed(metrics_text)
    server = Server(
        parts.service
        if parts.predictor is None
        else PredictingService(parts.service, parts.predictor),
        parts.metrics,
        metrics_text=metrics_text,
        sumdb=parts.sumdb,
        access_log_enabled=cfg.access_log,
        requests=parts.popularity,
        admin=AdminApi(parts.storage, parts.events, cfg.admin_token),
        status=StatusBuilder(
            health=parts.health,
            mirrors=mirrors,
            metrics=parts.metrics,
            events=parts.events,
            policy=parts.config.upstream.policy,
            sumdb=lambda: sumdb_status(parts),
            metrics_text=metrics_text,
            monitor=MonitorAdapter(parts.monitor) if parts.monitor is not None else None,
        ),
        readiness=Readiness(
            parts.disk,
            parts.health,
            mirrors,
            has_direct=any(e.target == "direct" for e in parts.config.upstream.entries),
            degraded=lambda: bool(getattr(parts.coordinator, "degraded", False)),
            remote=parts.remote_storage,
        ),
    )
    application = server.app()
    if fast is not None:
        application.on_response_prepare.append(fast.learn)
    runner = QuietAppRunner(  # fixed 400s for unparsable requests, never an echo
        application,
        access_log=None,
        handle_signals=False,
        keepalive_timeout=cfg.idle_timeout,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_LINE_BYTES,
        max_headers=MAX_HEADERS,
    )
    await runner.setup()
    assert runner.server is not None
    limit_connections(runner.server, cfg.max_connections)
    try:
        raise_fd_limit()
        if sock is None:
            sock = listen_socket(cfg.listen_host, cfg.listen_port, reuse_port=cfg.workers > 1)
        port = int(sock.getsockname()[1])
        if fast is not None:
            fast.bind(runner.server)  # handovers get whatever handler the runner's server makes
            await FastPathSite(runner, sock, fast).start()
        else:
            await web.SockSite(runner, sock).start()
        log.info(
            "listening",
            extra={
                "version": __version__,
                "addr": f"{cfg.listen_host}:{port}",
                "cache_dir": str(parts.config.cache.cache_dir),
                "upstream": " ".join(redact_url(e.target) for e in parts.config.upstream.entries),
            },
        )
        yield port
    finally:
        await runner.cleanup()


def fast_path(parts: Parts) -> FastPath:
    """The cache-hit fast path; it answers from local files only, so not for ``s3`` storage."""
    cfg = parts.config
    disk = parts.disk if cfg.storage.storage == "disk" else None
    return FastPath(
        parts.metrics,
        locate=(lambda key: disk.path(key)) if disk is not None else (lambda key: None),
        idle_timeout=cfg.server.idle_timeout,
        max_connections=cfg.server.max_connections,
        mutable_ttl=cfg.cache.mutable_ttl,
        access_log_enabled=cfg.server.access_log,
        requests=parts.popularity,
        touch=parts.uses.touch if parts.uses is not None else None,
    )


async def run_forever(
    config: Config, stop: asyncio.Event, *, worker_group: Path | None = None, monitor: bool = True
) -> None:
    """Build, serve until ``stop`` is set, then close everything."""
    async with build(config, worker_group=worker_group, monitor=monitor) as parts, serve(parts):
        await stop.wait()
