"""Tests for coordination.negative and coordination.sharedhealth: instances agree through one real Redis.

Each test starts its own ``redis-server``. Two "instances" are two
``RedisCoordinator``s (two clients, two in-memory fallbacks) on it: what one
records, the other must see, within the TTL and not after it; with Redis
killed, nothing raises and each instance keeps its own view. The service test
runs two real ``Service``s (disk storage each, a counting upstream) sharing
only Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from coordination.redisserver import RedisServer
from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.negative import SharedNegatives
from gomirror.coordination.redis import RedisCoordinator
from gomirror.coordination.sharedhealth import HealthSyncedUpstream, SharedHealth
from gomirror.errors import Gone, NotFound, UpstreamOff
from gomirror.service import Service
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.health import HealthBook, HealthSettings

DEADLINE = 20.0
MIRROR = "https://goproxy.example"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as s:
        yield s


def instance(server: RedisServer) -> RedisCoordinator:
    return RedisCoordinator(
        server.url, local=LocalCoordinator(None), op_timeout=0.5, reconnect_interval=0.1
    )


async def until(cond: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.01)  # polling a condition with a deadline
    raise AssertionError(f"never: {what}")


# --- negative answers ----------------------------------------------------------


def test_a_not_found_recorded_by_one_instance_is_seen_by_another_until_it_expires(
    server: RedisServer,
) -> None:
    async def main() -> None:
        a, b = instance(server), instance(server)
        na, nb = SharedNegatives(a.state, 0.4), SharedNegatives(b.state, 0.4)
        key = "example.com/nope/@v/v1.0.0.zip"
        assert await nb.get(key) is None
        await na.put(key, NotFound("example.com/nope@v1.0.0: not found"))
        got = await nb.get(key)
        assert type(got) is NotFound and str(got) == "example.com/nope@v1.0.0: not found"
        await na.put("gone/@v/list", Gone("withdrawn"))
        assert type(await nb.get("gone/@v/list")) is Gone
        assert nb.shared_hits == 2

        async def expired() -> bool:
            return await nb.get(key) is None

        await until(expired, "the shared not-found expires")
        # Instance-specific kinds stay with their instance.
        await na.put("off/@v/list", UpstreamOff("off"))
        assert await nb.get("off/@v/list") is None
        await a.close()
        await b.close()

    asyncio.run(main())


def test_garbage_in_shared_state_is_no_answer(server: RedisServer) -> None:
    async def main() -> None:
        a = instance(server)
        n = SharedNegatives(a.state, 30)
        await a.state.set("neg:k1", b"not json", 30)
        await a.state.set("neg:k2", b'{"kind": "teapot", "message": "x"}', 30)
        assert await n.get("k1") is None and await n.get("k2") is None
        await a.close()

    asyncio.run(main())


class CountingUpstream:
    """Answers "not found" for everything and counts the questions."""

    def __init__(self) -> None:
        self.calls = 0

    @property
    def name(self) -> str:
        return "counting"

    async def _nope(self) -> Fetched:
        self.calls += 1
        raise NotFound("example.com/missing@v1.0.0: not found upstream")

    async def list(self, module: str) -> Fetched:
        return await self._nope()

    async def info(self, module: str, query: str) -> Fetched:
        return await self._nope()

    async def latest(self, module: str) -> Fetched:
        return await self._nope()

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._nope()

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        return await self._nope()

    async def close(self) -> None:
        pass


def test_two_services_ask_the_upstream_once_for_a_missing_module(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        services, upstreams, closers = [], [], []
        for name in ("a", "b"):
            c = instance(server)
            disk = DiskStorage(tmp_path / name)
            up = CountingUpstream()
            services.append(
                Service(
                    storage=disk,
                    coordinator=c,
                    upstream=up,
                    tmp_dir=lambda d=disk: d.new_temp_path(".zip"),  # type: ignore[misc]
                    shared_negatives=SharedNegatives(c.state, 30),
                )
            )
            upstreams.append(up)
            closers += [c.close, disk.close]
        for svc in services:
            for _ in range(3):
                with pytest.raises(NotFound, match="not found upstream"):
                    await svc.zip("example.com/missing", "v1.0.0")
                with pytest.raises(NotFound):
                    await svc.mod("example.com/missing", "v1.0.0")
        # One question per file for both instances together.
        assert [u.calls for u in upstreams] == [2, 0]
        for close in closers:
            await close()

    asyncio.run(main())


def test_negative_answers_survive_redis_going_away(server: RedisServer) -> None:
    async def main() -> None:
        a = instance(server)
        n = SharedNegatives(a.state, 30)
        server.kill()
        await n.put("k", NotFound("nope"))  # Redis gone: kept in this process only
        got = await n.get("k")
        assert type(got) is NotFound
        assert a.degraded
        await a.close()

    asyncio.run(main())


# --- mirror health -------------------------------------------------------------


def book() -> HealthBook:
    return HealthBook(HealthSettings(down_after=2, down_backoff=30.0, max_backoff=300.0))


def test_a_mirror_marked_down_by_one_instance_is_down_for_the_other_and_comes_back(
    server: RedisServer,
) -> None:
    async def main() -> None:
        ca, cb = instance(server), instance(server)
        ha, hb = book(), book()
        sa = SharedHealth(ca.state, "a:8080", refresh_every=0.0)
        sb = SharedHealth(cb.state, "b:8080", refresh_every=0.0)
        sa.attach(ha.get(MIRROR))
        sb.attach(hb.get(MIRROR))

        ha.get(MIRROR).record_failure("timed out", timeout=True)
        await sa.flush()
        await sb.refresh()
        rb = hb.get(MIRROR)
        assert rb.down and rb.state == "down"
        assert rb.skip_reason() is not None and "seen by a:8080" in rb.skip_reason()  # type: ignore[operator]
        assert sb.adopted == 1
        # Adopting does not publish again, and a's own value is not re-applied to a.
        await sb.flush()
        await sa.refresh()
        assert sa.adopted == 0

        ha.get(MIRROR).record_success("small", 0.01)  # a's probe got through
        await sa.flush()
        await sb.refresh()
        assert not rb.down and sb.adopted == 2
        await sb.refresh()  # the same value again: applied once only
        assert sb.adopted == 2
        for x in (sa, sb, ca, cb):
            await x.close()

    asyncio.run(main())


def test_an_outage_whose_time_is_up_is_not_adopted(server: RedisServer) -> None:
    async def main() -> None:
        ca, cb = instance(server), instance(server)
        ha, hb = book(), book()
        sa = SharedHealth(ca.state, "a", refresh_every=0.0)
        sb = SharedHealth(cb.state, "b", refresh_every=0.0)
        sa.attach(ha.get(MIRROR))
        sb.attach(hb.get(MIRROR))
        ha.get(MIRROR).record_failure("429", retry_after=0.2)
        await sa.flush()

        async def expired() -> bool:
            return await cb.state.get("health:" + MIRROR) is None

        await until(expired, "the down value expires with the outage")
        await sb.refresh()
        assert not hb.get(MIRROR).down
        for x in (sa, sb, ca, cb):
            await x.close()

    asyncio.run(main())


class Recorder:
    """An upstream that records the health state its caller saw at call time."""

    def __init__(self, health: HealthBook) -> None:
        self.health = health
        self.seen: list[bool] = []

    @property
    def name(self) -> str:
        return "recorder"

    async def _seen(self) -> Fetched:
        self.seen.append(self.health.get(MIRROR).down)
        return Fetched(b"v1.0.0\n", "recorder")

    async def list(self, module: str) -> Fetched:
        return await self._seen()

    async def info(self, module: str, query: str) -> Fetched:
        return await self._seen()

    async def latest(self, module: str) -> Fetched:
        return await self._seen()

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._seen()

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        return await self._seen()

    async def close(self) -> None:
        pass


def test_the_synced_upstream_reads_shared_health_before_deciding(server: RedisServer) -> None:
    async def main() -> None:
        ca, cb = instance(server), instance(server)
        ha, hb = book(), book()
        sa = SharedHealth(ca.state, "a", refresh_every=0.0)
        sb = SharedHealth(cb.state, "b", refresh_every=0.0)
        sa.attach(ha.get(MIRROR))
        sb.attach(hb.get(MIRROR))
        inner = Recorder(hb)
        up = HealthSyncedUpstream(inner, sb)
        await up.list("m")
        ha.get(MIRROR).record_failure("timed out", timeout=True)
        await sa.flush()
        await up.mod("m", "v1.0.0")
        await up.zip("m", "v1.0.0", Path("/nonexistent"))
        assert inner.seen == [False, True, True]
        assert up.name == "recorder"
        await up.close()
        for x in (sa, sb, ca, cb):
            await x.close()

    asyncio.run(main())


def test_refresh_is_rate_limited_and_fail_soft(server: RedisServer) -> None:
    async def main() -> None:
        now = [0.0]
        c = instance(server)
        h = book()
        reads = []

        class CountingState:
            async def get(self, key: str) -> bytes | None:
                reads.append(key)
                raise OSError("state store broken")

            async def set(self, key: str, value: bytes, ttl: float) -> None:
                raise OSError("state store broken")

            async def delete(self, key: str) -> None:
                pass

        s = SharedHealth(CountingState(), "x", refresh_every=1.0, clock=lambda: now[0])
        s.attach(h.get(MIRROR))
        await asyncio.gather(*(s.refresh() for _ in range(10)))
        assert len(reads) == 1
        await s.refresh()
        assert len(reads) == 1
        now[0] = 2.0
        await s.refresh()
        assert len(reads) == 2
        h.get(MIRROR).record_failure("timed out", timeout=True)  # a failing write is no error
        await s.flush()
        assert h.get(MIRROR).down
        # With Redis itself gone, RedisState answers from memory: still no error.
        shared = SharedHealth(c.state, "y", refresh_every=0.0)
        shared.attach(book().get(MIRROR))
        server.kill()
        await shared.refresh()
        await s.close()
        await shared.close()
        await c.close()

    asyncio.run(main())
