"""coordination.redis is the Coordinator and SharedState for several instances: fenced, expiring locks in Redis.

``RedisCoordinator.once(key, fn)`` keeps the ``Coordinator`` contract across
every process and instance that shares one Redis: concurrent callers in a
process share one run (``SingleFlight``), and that run first takes the Redis
lock for ``key``; a process that finds the lock taken waits for the holder to
finish, takes the lock itself and runs ``fn``, which finds the object in
storage. So N concurrent misses across M instances cause one upstream fetch.

The lock. Taking it is one Lua script: if the key is free it draws a fencing
token (``INCR`` of one counter, never below the server's clock in
microseconds, so tokens keep increasing even when a Redis without persistence
restarts) and ``SET``\\s the lock to ``"TOKEN OWNER"`` with a TTL
(``lock_ttl``). While ``fn`` runs, a watchdog renews the TTL every third of
it; a crashed holder stops renewing and its lock expires, so nobody waits
longer than ``lock_ttl`` after a ``kill -9``. Renewing and releasing are
compare-and-set scripts on the exact value: a holder whose lock expired (it
was stopped, or partitioned from Redis) cannot extend or delete the lock a
newer holder took. ``fn`` sees its ``Lease`` through
``coordination.lease.current_lease()`` (token, ``held()``); that module says
what a storage write can rely on. Waiters learn of a release from a pub/sub
message the release script publishes, and otherwise re-try after the holder's
remaining TTL (at most ``WAIT_CAP`` seconds): a lost message or an expired
lock costs latency, never correctness.

Redis unreachable. Any Redis error (refused, timed out, authentication, a
read-only replica) marks the link *degraded* and logs one warning (then at most
one per ``WARN_EVERY`` seconds); ``once`` then runs ``fn`` under the local
coordinator's lock (in-process single-flight plus ``flock``), so serving goes
on. Instances may then fetch the same file twice, which is safe: every write
is atomic and verified, nothing partial is ever published. A background probe
pings Redis every ``reconnect_interval`` seconds and clears ``degraded`` when
it answers. ``RedisState`` falls back to a ``MemoryState`` the same way.

Secrets: the URL may hold a password; only ``safe_url(url)`` (no userinfo, no
query) is ever logged or shown. One Redis (or a Sentinel-managed primary)
is assumed, not Redis Cluster: the scripts touch two keys in different slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gomirror.coordination.lease import Lease, enter_lease, leave_lease
from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.singleflight import SingleFlight
from gomirror.coordination.state import MemoryState, check_value
from gomirror.logs import redact

log = logging.getLogger(__name__)

T = TypeVar("T")
X = TypeVar("X")

PREFIX = "gomirror:"
LOCK_PREFIX = PREFIX + "lock:"
STATE_PREFIX = PREFIX + "state:"
FENCE_KEY = PREFIX + "fence"
RELEASED_CHANNEL = PREFIX + "released"

DEFAULT_LOCK_TTL = 10.0
WARN_EVERY = 60.0  # seconds between two "still unreachable" warnings
WAIT_CAP = 1.0  # longest wait between two tries for a taken lock while subscribed
WAIT_CAP_UNSUBSCRIBED = 0.1  # ... and while the release notifications are not arriving
MIN_WAIT = 0.005
LISTEN_POLL = 1.0  # the listener wakes this often to notice it was closed

# Errors that mean "Redis did not do it": redis-py wraps socket errors in its
# own ConnectionError/TimeoutError, but a few OSErrors escape from connect.
ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)

# KEYS: lock, fence counter; ARGV: ttl ms, owner. -> {token, 0} or {0, holder's pttl ms}
ACQUIRE = """
local left = redis.call('PTTL', KEYS[1])
if left ~= -2 then
  return {0, left}
end
local now = redis.call('TIME')
local floor = tonumber(now[1]) * 1000000 + tonumber(now[2])
local n = redis.call('INCR', KEYS[2])
if n < floor then
  n = floor
  redis.call('SET', KEYS[2], string.format('%d', n))
end
redis.call('SET', KEYS[1], string.format('%d', n) .. ' ' .. ARGV[2], 'PX', ARGV[1])
return {n, 0}
"""

# KEYS: lock; ARGV: value, ttl ms -> 1 renewed, 0 not ours any more
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lock; ARGV: value, channel, key -> 1 released (and announced), 0 not ours
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""


class RedisUnavailable(Exception):
    """Redis did not answer (or refused); the link is degraded. Never leaves this package."""


def safe_url(url: str) -> str:
    """The Redis URL without userinfo and query (where a password may be), for logs and status."""
    try:
        u = urlsplit(url)
        if u.scheme == "unix":
            return f"unix://{u.path}"
        host = u.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = u.port
    except ValueError:
        return "redis://(invalid)"
    return f"{u.scheme}://{host}{f':{port}' if port else ''}{u.path}"


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {redact(str(err))[:200]}"


class RedisLink:
    """One Redis client plus its health: degraded flag, rate-limited warnings, reconnect probe."""

    def __init__(
        self,
        url: str,
        *,
        op_timeout: float = 2.0,
        reconnect_interval: float = 1.0,
        warn_every: float = WARN_EVERY,
    ) -> None:
        self.url = safe_url(url)
        # One retry on a fresh connection covers a pooled connection that a
        # Redis restart closed; more would only delay the fallback.
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=op_timeout,
            socket_connect_timeout=op_timeout,
            retry=Retry(NoBackoff(), 1),
            client_name="gomirror",
        )
        self.reconnect_interval = reconnect_interval
        self._warn_every = warn_every
        self._degraded = False
        self.degraded_since: float | None = None  # time.time() of the first failure
        self.failures = 0  # failed Redis operations, for metrics
        self._last_warn = -math.inf
        self._healthy = asyncio.Event()
        self._healthy.set()
        self._probe: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def degraded(self) -> bool:
        return self._degraded

    async def start(self) -> None:
        """Ping once, so an unreachable Redis is reported (and degraded set) at start-up."""
        with contextlib.suppress(RedisUnavailable):
            await self.call(self.client.ping)

    async def call(self, op: Callable[[], Awaitable[X]]) -> X:
        """Run one Redis operation; RedisUnavailable (and degraded) if it fails."""
        try:
            result = await op()
        except ERRORS as e:
            self.failed(e)
            raise RedisUnavailable(_describe(e)) from None
        self.ok()
        return result

    async def wait_healthy(self) -> None:
        await self._healthy.wait()

    def ok(self) -> None:
        if not self._degraded:
            return
        down_for = time.time() - (self.degraded_since or time.time())
        self._degraded = False
        self.degraded_since = None
        self._healthy.set()
        log.info(
            "redis reachable again; coordinating through it",
            extra={"redis": self.url, "down_seconds": round(down_for, 1)},
        )

    def failed(self, err: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        if not self._degraded:
            self._degraded = True
            self.degraded_since = time.time()
            self._healthy.clear()
            self._last_warn = now
            log.warning(
                "redis unreachable; coordinating locally",
                extra={"redis": self.url, "error": _describe(err)},
            )
            if not self._closed and (self._probe is None or self._probe.done()):
                self._probe = asyncio.get_running_loop().create_task(
                    self._reconnect(), name="redis-reconnect"
                )
        elif now - self._last_warn >= self._warn_every:
            self._last_warn = now
            log.warning(
                "redis still unreachable; coordinating locally",
                extra={"redis": self.url, "error": _describe(err), "failures": self.failures},
            )

    async def _reconnect(self) -> None:
        while self._degraded and not self._closed:
            await asyncio.sleep(self.reconnect_interval)  # a probe interval, not a sync
            with contextlib.suppress(RedisUnavailable):
                await self.call(self.client.ping)

    async def close(self) -> None:
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        with contextlib.suppress(*ERRORS):
            await self.client.aclose()


class RedisState:
    """SharedState in Redis (``gomirror:state:KEY``), in memory while Redis is unreachable."""

    def __init__(self, link: RedisLink, fallback: MemoryState | None = None) -> None:
        self._link = link
        self._fallback = fallback or MemoryState()

    async def get(self, key: str) -> bytes | None:
        if not self._link.degraded:
            with contextlib.suppress(RedisUnavailable):
                value: Any = await self._link.call(
                    lambda: self._link.client.get(STATE_PREFIX + key)
                )
                return bytes(value) if value is not None else None
        return await self._fallback.get(key)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        check_value(key, value, ttl)
        if not self._link.degraded:
            try:
                await self._link.call(
                    lambda: self._link.client.set(
                        STATE_PREFIX + key, value, px=max(1, round(ttl * 1000))
                    )
                )
                return
            except RedisUnavailable:
                pass
        await self._fallback.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._fallback.delete(key)
        if not self._link.degraded:
            with contextlib.suppress(RedisUnavailable):
                await self._link.call(lambda: self._link.client.delete(STATE_PREFIX + key))


class RedisCoordinator:
    """A Coordinator shared by every instance on one Redis (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        local: LocalCoordinator,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        op_timeout: float = 2.0,
        reconnect_interval: float = 1.0,
        max_wait: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.link = RedisLink(url, op_timeout=op_timeout, reconnect_interval=reconnect_interval)
        self.state = RedisState(self.link)
        self.flights = SingleFlight()
        self.lock_ttl = lock_ttl
        self._ttl_ms = max(1, round(lock_ttl * 1000))
        self._local = local
        self._max_wait = max_wait
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        client = self.link.client
        self._acquire = client.register_script(ACQUIRE)
        self._renew = client.register_script(RENEW)
        self._release = client.register_script(RELEASE)
        self._waiting: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.local_runs = 0  # runs under local coordination because Redis was unreachable
        self.lost_leases = 0  # runs whose lock expired or was taken while fn ran

    @property
    def degraded(self) -> bool:
        """True while Redis is unreachable and ``once`` coordinates locally."""
        return self.link.degraded

    async def start(self) -> None:
        """Check Redis once (a warning and ``degraded`` if unreachable); never raises."""
        await self.link.start()

    async def once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await self.flights.do(key, lambda: self._run(key, fn))

    def in_flight(self) -> int:
        return self.flights.in_flight()

    async def close(self) -> None:
        self._closed = True
        for task in [self._listener, *self._tasks]:
            if task is not None:
                task.cancel()
        if self._listener is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.link.close()
        await self._local.close()

    # --- one run ---------------------------------------------------------

    async def _run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        lease: Lease | None = None
        if not self.link.degraded:
            with contextlib.suppress(RedisUnavailable):
                lease = await self._acquire_waiting(key)
        if lease is None:
            return await self._run_local(key, fn)
        return await self._run_leased(lease, fn)

    async def _run_local(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        self.local_runs += 1
        async with self._local.lock(key):
            ctx = enter_lease(Lease(key, None))
            try:
                return await fn()
            finally:
                leave_lease(ctx)

    async def _run_leased(self, lease: Lease, fn: Callable[[], Awaitable[T]]) -> T:
        ctx = enter_lease(lease)
        watchdog = asyncio.get_running_loop().create_task(self._watchdog(lease), name="redis-lease")
        self._tasks.add(watchdog)
        watchdog.add_done_callback(self._tasks.discard)
        try:
            return await fn()
        finally:
            # Not awaited: a renew in flight either lands before the release
            # (harmless) or finds the lock gone after it (ignored: cancelled).
            watchdog.cancel()
            leave_lease(ctx)
            with contextlib.suppress(RedisUnavailable):
                await self.release(lease)  # if Redis is gone, the lock expires by itself

    async def _acquire_waiting(self, key: str) -> Lease | None:
        """The lock for key, waiting while another holds it; None after ``max_wait``."""
        started = time.monotonic()
        wake = asyncio.Event()
        # Registered before the first try, so a release between a failed try
        # and the wait still wakes us.
        self._waiting[key] = wake
        try:
            while True:
                wake.clear()
                lease, left = await self.try_acquire(key)
                if lease is not None:
                    return lease
                self._ensure_listener()
                waited = time.monotonic() - started
                if self._max_wait is not None and waited >= self._max_wait:
                    log.warning(
                        "lock wait too long; running without the redis lock",
                        extra={"key": key, "waited_seconds": round(waited, 1)},
                    )
                    return None
                cap = WAIT_CAP if self._subscribed else WAIT_CAP_UNSUBSCRIBED
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(max(left, MIN_WAIT), cap))
        finally:
            if self._waiting.get(key) is wake:
                del self._waiting[key]

    async def _watchdog(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.lock_ttl / 3)  # the renewal period, not a sync
            sent = time.monotonic()
            try:
                renewed = await self.renew(lease)
            except RedisUnavailable:
                continue  # logged by the link; the lease runs out at valid_until meanwhile
            if renewed:
                lease.valid_until = sent + self.lock_ttl
                continue
            lease.lost = True
            self.lost_leases += 1
            log.warning("redis lock lost while fetching", extra={"key": lease.key})
            return

    # --- the lock itself (also used by tests) ------------------------------

    def _value(self, lease: Lease) -> str:
        return f"{lease.token} {self._owner}"

    async def try_acquire(self, key: str) -> tuple[Lease | None, float]:
        """Take the lock for key if free: (lease, 0); else (None, seconds the holder has left)."""
        sent = time.monotonic()
        reply: Any = await self.link.call(
            lambda: self._acquire(
                keys=[LOCK_PREFIX + key, FENCE_KEY], args=[self._ttl_ms, self._owner]
            )
        )
        token, left_ms = int(reply[0]), int(reply[1])
        if token > 0:
            return Lease(key, token, valid_until=sent + self.lock_ttl), 0.0
        # -1: a lock without a TTL, which gomirror never sets; wait a TTL for it.
        return None, (left_ms / 1000 if left_ms >= 0 else self.lock_ttl)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lock by a TTL if it is still this lease's; False if not."""
        reply: Any = await self.link.call(
            lambda: self._renew(
                keys=[LOCK_PREFIX + lease.key], args=[self._value(lease), self._ttl_ms]
            )
        )
        return int(reply) == 1

    async def release(self, lease: Lease) -> bool:
        """Delete the lock if it is still this lease's and announce it; False if not."""
        reply: Any = await self.link.call(
            lambda: self._release(
                keys=[LOCK_PREFIX + lease.key],
                args=[self._value(lease), RELEASED_CHANNEL, lease.key],
            )
        )
        return int(reply) == 1

    # --- release notifications ------------------------------------------

    def _ensure_listener(self) -> None:
        if self._closed or (self._listener is not None and not self._listener.done()):
            return
        self._listener = asyncio.get_running_loop().create_task(
            self._listen(), name="redis-released"
        )

    async def _listen(self) -> None:
        """Wake the local waiter of each released key; resubscribe after Redis comes back."""
        while not self._closed:
            pubsub = self.link.client.pubsub()
            try:
                await pubsub.subscribe(RELEASED_CHANNEL)
                while True:
                    msg = await pubsub.get_message(timeout=LISTEN_POLL)
                    if msg is None:
                        continue
                    if msg.get("type") == "subscribe":
                        self._subscribed = True  # the server confirmed: no release is missed now
                    elif msg.get("type") == "message":
                        data = msg.get("data")
                        name = (
                            data.decode(errors="replace") if isinstance(data, bytes) else str(data)
                        )
                        wake = self._waiting.get(name)
                        if wake is not None:
                            wake.set()
            except Exception as e:
                # Only latency depends on this task: waiters fall back to short
                # polls, and the link's probe finds Redis again.
                log.debug("redis release notifications stopped", extra={"error": _describe(e)})
            finally:
                self._subscribed = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py
            await self.link.wait_healthy()
            await asyncio.sleep(self.link.reconnect_interval)  # do not spin on a broken subscribe
