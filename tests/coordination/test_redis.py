"""Tests for coordination.redis: one run per key across processes on one real Redis, fenced expiring locks, fallback.

Every test starts its own ``redis-server`` (``redisserver.RedisServer``) on a
free loopback port. Cross-process tests run real children (``support.child``)
that use ``RedisCoordinator`` against it: each appends "enter"/"exit"/"found"
to a shared log inside ``fn`` and reports on stdout the moment it first finds
the lock taken ("busy", through a wrapper around ``try_acquire`` installed in
the child). The "object" a run fetches is a file the first run writes (by
rename, as storage does), so a later run can find it. Expiry tests use TTLs of
0.5 s and wait on conditions with deadlines, never fixed sleeps; killing and
restarting Redis is done to the real server process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from coordination.redisserver import RedisServer
from gomirror.config import load_config
from gomirror.coordination import redis as redis_coordination
from gomirror.coordination.base import MAX_STATE_BYTES, Coordinator, SharedState
from gomirror.coordination.lease import Lease, current_lease
from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.redis import LOCK_PREFIX, RedisCoordinator, safe_url
from gomirror.coordination.state import MemoryState
from gomirror.errors import ConfigError
from gomirror.logs import KeyValueFormatter
from support.child import Child

KEY = "example.com/m/@v/v1.0.0.zip"
OTHER = "example.com/other/@v/v1.0.0.zip"
SHORT_TTL = 0.5
DEADLINE = 20.0

HOLDER_SCRIPT = r"""
import asyncio, sys
from pathlib import Path

from gomirror.coordination.lease import current_lease
from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.redis import RedisCoordinator

url, name, store, log, key, ttl = sys.argv[1:7]
store, log, ttl = Path(store), Path(log), float(ttl)

told = []
real_try = RedisCoordinator.try_acquire


async def try_acquire(self, k):
    lease, left = await real_try(self, k)
    if lease is None and not told:
        told.append(1)
        print("busy", flush=True)
    return lease, left


RedisCoordinator.try_acquire = try_acquire


def note(event):
    with open(log, "a") as f:
        f.write(f"{name} {event}\n")


async def main():
    c = RedisCoordinator(url, local=LocalCoordinator(None), lock_ttl=ttl)

    async def fetch():
        note("enter")
        if store.exists():
            note("found")
            return "found"
        lease = current_lease()
        print("in", lease.token, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # hold the lock until the test says go
        print("held", lease.held(), flush=True)
        tmp = store.with_name(store.name + "." + name)
        tmp.write_text("the verified bytes")
        tmp.replace(store)
        note("exit")
        return "fetched"

    try:
        print("result", await c.once(key, fetch), flush=True)
    finally:
        await c.close()


asyncio.run(main())
"""

# N concurrent callers in one child; all children start on the word "go".
CROWD_SCRIPT = r"""
import asyncio, sys
from pathlib import Path

from gomirror.coordination.local import LocalCoordinator
from gomirror.coordination.redis import RedisCoordinator

url, name, store, fetches, key, n = sys.argv[1:7]
store, fetches, n = Path(store), Path(fetches), int(n)


async def main():
    c = RedisCoordinator(url, local=LocalCoordinator(None), lock_ttl=5.0)

    async def fetch():
        if store.exists():
            return "hit"
        with open(fetches, "a") as f:
            f.write(name + "\n")
        await asyncio.sleep(0.05)  # the upstream takes a while; others pile up meanwhile
        tmp = store.with_name(store.name + "." + name)
        tmp.write_text("the verified bytes")
        tmp.replace(store)
        return "fetched"

    await c.start()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    results = await asyncio.gather(*(c.once(key, fetch) for _ in range(n)))
    print("result", " ".join(results), c.degraded, flush=True)
    await c.close()


asyncio.run(main())
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as s:
        yield s


def stored(server: RedisServer, key: str) -> bytes | None:
    """The value of key in Redis, read by a separate plain client."""
    with redis_sync.Redis.from_url(server.url) as r:
        value: bytes | None = r.get(key)
        return value


def locked(server: RedisServer, key: str = KEY) -> bool:
    return stored(server, LOCK_PREFIX + key) is not None


def holder(server: RedisServer, tmp: Path, name: str, ttl: float = 5.0, key: str = KEY) -> Child:
    return Child.start(
        HOLDER_SCRIPT,
        server.url,
        name,
        str(tmp / "object.zip"),
        str(tmp / "log"),
        key,
        str(ttl),
    )


def events(tmp: Path) -> list[str]:
    log = tmp / "log"
    return log.read_text().splitlines() if log.exists() else []


def coordinator(server: RedisServer, tmp: Path, **kw: Any) -> RedisCoordinator:
    kw.setdefault("local", LocalCoordinator(tmp / "locks"))
    kw.setdefault("reconnect_interval", 0.05)
    return RedisCoordinator(server.url, **kw)


async def until(cond: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll cond (sync or async) until it holds; fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        got = cond()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {DEADLINE} s")
        await asyncio.sleep(0.01)  # polling a real condition


async def settle(cond: Callable[[], bool], steps: int = 10_000) -> None:
    """Let other tasks run until cond() holds (event-loop turns, no wall-clock waits)."""
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


# --- protocol and in-process behaviour --------------------------------------


def test_it_is_a_coordinator_and_its_state_is_shared_state(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        c: Coordinator = coordinator(server, tmp_path)
        assert isinstance(c, RedisCoordinator)
        state: SharedState = c.state
        assert await state.get("nothing") is None
        assert c.in_flight() == 0
        await c.close()

    asyncio.run(main())


def test_concurrent_callers_in_one_process_share_one_run(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        c = coordinator(server, tmp_path)
        gate = asyncio.Event()
        runs: list[Lease | None] = []

        async def work() -> object:
            runs.append(current_lease())
            await gate.wait()
            return object()

        tasks = [asyncio.create_task(c.once(KEY, work)) for _ in range(20)]
        await until(lambda: len(runs) == 1 and c.flights.shared >= 19, "all callers joined")
        lease = runs[0]
        assert lease is not None and lease.token is not None and lease.held()
        assert stored(server, LOCK_PREFIX + KEY) == f"{lease.token} ".encode() + c._owner.encode()
        gate.set()
        results = await asyncio.gather(*tasks)
        assert len(runs) == 1
        assert all(r is results[0] for r in results)
        assert not locked(server)  # released
        assert current_lease() is None  # only inside a run
        await c.close()

    asyncio.run(main())


def test_errors_reach_every_caller_and_release_the_lock(
    server: RedisServer, tmp_path: Path
) -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        c = coordinator(server, tmp_path)
        gate = asyncio.Event()

        async def fail() -> None:
            await gate.wait()
            raise Boom("upstream exploded")

        tasks = [asyncio.create_task(c.once(KEY, fail)) for _ in range(5)]
        await settle(lambda: c.flights.shared >= 4)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, Boom) for r in results)
        other = coordinator(server, tmp_path)
        lease, _ = await other.try_acquire(KEY)  # free again at once
        assert lease is not None
        await other.release(lease)
        await other.close()
        await c.close()

    asyncio.run(main())


def test_two_coordinators_take_turns_and_the_waiter_wakes_on_release(
    server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once subscribed, b would wait out the holder's whole 60 s TTL between two
    # tries (longer than DEADLINE): only the release notification can wake it in time.
    monkeypatch.setattr(redis_coordination, "WAIT_CAP", 3600.0)

    async def main() -> list[str]:
        a, b = coordinator(server, tmp_path, lock_ttl=60.0), coordinator(server, tmp_path)
        order: list[str] = []
        gate = asyncio.Event()
        refused = 0
        real_try = b.try_acquire

        async def counting(key: str) -> tuple[Lease | None, float]:
            nonlocal refused
            got = await real_try(key)
            refused += got[0] is None
            return got

        b.try_acquire = counting  # type: ignore[method-assign]

        async def first() -> None:
            order.append("a enter")
            await gate.wait()
            order.append("a exit")

        async def second() -> None:
            order.append("b enter")

        ta = asyncio.create_task(a.once(KEY, first))
        await until(lambda: order == ["a enter"], "a runs")
        tb = asyncio.create_task(b.once(KEY, second))
        await until(lambda: refused >= 1 and b._subscribed, "b refused and listening")
        assert order == ["a enter"]
        # Another key is not held up by this one.
        assert await b.once(OTHER, _value("other")) == "other"
        gate.set()
        await asyncio.wait_for(asyncio.gather(ta, tb), DEADLINE)
        await a.close()
        await b.close()
        return order

    assert asyncio.run(main()) == ["a enter", "a exit", "b enter"]


def _value(v: str) -> Callable[[], Awaitable[str]]:
    async def fn() -> str:
        return v

    return fn


def test_the_watchdog_keeps_a_long_run_locked_past_its_ttl(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        c = coordinator(server, tmp_path, lock_ttl=SHORT_TTL)
        other = coordinator(server, tmp_path, lock_ttl=SHORT_TTL)
        renewals: list[float] = []

        async def long_fetch() -> str:
            lease = current_lease()
            assert lease is not None
            # Run on until the watchdog has pushed the deadline on 6 times
            # (two TTLs), well past when the first TTL alone would have ended.
            while len(renewals) < 7:
                if not renewals or lease.valid_until != renewals[-1]:
                    renewals.append(lease.valid_until)
                await asyncio.sleep(0.01)  # polling a real condition
            assert time.monotonic() > renewals[0]
            taken, left = await other.try_acquire(KEY)
            assert taken is None and left > 0  # still locked
            assert lease.held()
            return "done"

        assert await asyncio.wait_for(c.once(KEY, long_fetch), DEADLINE) == "done"
        assert renewals == sorted(renewals) and len(set(renewals)) == 7
        await c.close()
        await other.close()

    asyncio.run(main())


# --- fencing ---------------------------------------------------------------


def test_an_expired_holder_cannot_release_or_renew_the_new_holders_lock(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        old = coordinator(server, tmp_path, lock_ttl=SHORT_TTL)
        new = coordinator(server, tmp_path, lock_ttl=SHORT_TTL)
        stale, _ = await old.try_acquire(KEY)  # no watchdog: it will expire
        assert stale is not None and stale.token is not None
        taken, left = await new.try_acquire(KEY)
        assert taken is None and 0 < left <= SHORT_TTL

        fresh: list[Lease] = []

        async def acquired() -> bool:
            got, _ = await new.try_acquire(KEY)
            if got is not None:
                fresh.append(got)
            return got is not None

        await until(acquired, "the stale lock expires")
        current = fresh[0]
        assert current.token is not None and current.token > stale.token
        assert not stale.held()  # its own clock says so too
        assert await old.renew(stale) is False
        assert await old.release(stale) is False
        assert (
            stored(server, LOCK_PREFIX + KEY) == f"{current.token} ".encode() + new._owner.encode()
        )
        assert await new.renew(current) is True
        assert await new.release(current) is True
        assert not locked(server)
        await old.close()
        await new.close()

    asyncio.run(main())


def test_fencing_tokens_keep_increasing_across_a_redis_restart(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        c = coordinator(server, tmp_path)
        first, _ = await c.try_acquire(KEY)
        assert first is not None and first.token is not None
        await c.release(first)
        server.kill()  # no persistence: the counter is gone with it
        server.start()
        await until(lambda: _acquired_again(c, KEY), "redis answers again")
        second, _ = await c.try_acquire(OTHER)
        assert second is not None and second.token is not None
        assert second.token > first.token
        await c.close()

    asyncio.run(main())


async def _acquired_again(c: RedisCoordinator, key: str) -> bool:
    try:
        lease, _ = await c.try_acquire(key)
    except Exception:
        return False
    if lease is not None:
        await c.release(lease)
    return lease is not None


# --- several processes ------------------------------------------------------


def test_two_processes_run_one_key_in_turn_and_the_second_finds_the_object(
    server: RedisServer, tmp_path: Path
) -> None:
    with holder(server, tmp_path, "A") as a:
        assert a.expect().startswith("in ")
        with holder(server, tmp_path, "B") as b:
            assert b.expect() == "busy"  # B tried while A holds the lock...
            assert events(tmp_path) == ["A enter"]  # ...and stayed out
            a.send()
            assert a.expect() == "held True"
            assert a.expect() == "result fetched"
            assert a.wait() == 0, a.stderr()
            assert b.expect() == "result found"  # ran after A, found A's object
            assert b.wait() == 0, b.stderr()
    assert events(tmp_path) == ["A enter", "A exit", "B enter", "B found"]
    assert not locked(server)


def test_many_callers_in_three_processes_cause_one_fetch(
    server: RedisServer, tmp_path: Path
) -> None:
    store, fetches = tmp_path / "object.zip", tmp_path / "fetches"
    children = [
        Child.start(CROWD_SCRIPT, server.url, f"P{i}", str(store), str(fetches), KEY, "10")
        for i in range(3)
    ]
    try:
        for c in children:
            assert c.expect() == "ready"
        for c in children:
            c.send("go")
        results = [c.expect() for c in children]
        for c in children:
            assert c.wait() == 0, c.stderr()
    finally:
        for c in children:
            c.stop()
    assert len(fetches.read_text().splitlines()) == 1  # exactly one upstream fetch
    words = [w for r in results for w in r.split()[1:-1]]
    assert sorted(set(words)) == ["fetched", "hit"] and len(words) == 30
    assert words.count("fetched") == 10  # the fetching process's callers shared its run
    assert all(r.endswith(" False") for r in results)  # never degraded


def test_a_killed_holders_lock_expires_and_another_process_takes_over(
    server: RedisServer, tmp_path: Path
) -> None:
    with holder(server, tmp_path, "A", ttl=SHORT_TTL) as a:
        token_a = int(a.expect().split()[1])
        with holder(server, tmp_path, "B") as b:  # B's own lock: the default 5 s TTL
            assert b.expect() == "busy"
            a.kill()  # SIGKILL inside the locked section: no release, no clean-up
            line = b.expect()  # once A's lock has expired
            assert line.startswith("in ")
            assert int(line.split()[1]) > token_a
            assert events(tmp_path) == ["A enter", "B enter"]
            b.send()
            assert b.expect() == "held True"
            assert b.expect() == "result fetched"
            assert b.wait() == 0, b.stderr()
    assert (tmp_path / "object.zip").read_text() == "the verified bytes"


def test_a_stalled_holder_wakes_fenced_out_and_cannot_release_the_new_lock(
    server: RedisServer, tmp_path: Path
) -> None:
    """SIGSTOP stops A's watchdog too: its lock expires, B takes it; A resumes without it."""
    a = holder(server, tmp_path, "A", ttl=SHORT_TTL)
    b: Child | None = None
    try:
        token_a = int(a.expect().split()[1])
        os.kill(a.pid, signal.SIGSTOP)  # A stops inside fn, watchdog and all
        asyncio.run(until(lambda: not locked(server), "A's lock expires"))
        b = holder(server, tmp_path, "B")  # the default 5 s TTL: B keeps its lock
        token_b = int(b.expect().split()[1])  # "in TOKEN": B holds the key now
        assert token_b > token_a
        os.kill(a.pid, signal.SIGCONT)
        a.send()
        assert a.expect() == "held False"  # A knows it no longer holds the lock
        assert a.expect() == "result fetched"  # it published the same verified bytes
        assert a.wait() == 0, a.stderr()
        # A's release on the way out did not touch B's lock.
        value = stored(server, LOCK_PREFIX + KEY)
        assert value is not None and value.split()[0] == str(token_b).encode()
        b.send()
        assert b.expect() == "held True"
        assert b.expect() == "result fetched"
        assert b.wait() == 0, b.stderr()
        assert not locked(server)
    finally:
        for c in [a] + ([b] if b is not None else []):
            if c.proc.poll() is None:
                os.kill(c.pid, signal.SIGCONT)
            c.stop()
    assert (tmp_path / "object.zip").read_text() == "the verified bytes"


# --- Redis unreachable --------------------------------------------------------


def test_redis_killed_mid_test_falls_back_to_local_and_recovers(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        c = coordinator(server, tmp_path)
        await c.start()
        assert not c.degraded
        seen: list[Lease | None] = []

        async def fn() -> str:
            seen.append(current_lease())
            return "ok"

        assert await c.once(KEY, fn) == "ok"
        assert seen[-1] is not None and seen[-1].token is not None  # through Redis

        server.kill()
        assert await c.once(OTHER, fn) == "ok"  # still served...
        assert c.degraded  # ...degraded...
        assert seen[-1] is not None and seen[-1].token is None  # ...under the local lock
        assert c.local_runs == 1
        assert await c.state.get("k") is None
        await c.state.set("k", b"v", 60)  # shared state falls back to memory
        assert await c.state.get("k") == b"v"

        server.start()
        await until(lambda: not c.degraded, "degraded clears once redis is back")
        assert await c.once("example.com/third/@v/v1.0.0.zip", fn) == "ok"
        assert seen[-1] is not None and seen[-1].token is not None  # Redis again
        assert c.local_runs == 1
        await c.state.set("k2", b"shared", 60)
        assert stored(server, "gomirror:state:k2") == b"shared"
        await c.close()

    asyncio.run(main())


def test_redis_dying_under_a_holder_and_a_waiter_loses_nothing(
    server: RedisServer, tmp_path: Path
) -> None:
    """The holder finishes and returns its result; the waiter stops waiting and runs locally."""

    async def main() -> None:
        a = coordinator(server, tmp_path, local=LocalCoordinator(tmp_path / "a-locks"))
        b = coordinator(server, tmp_path, local=LocalCoordinator(tmp_path / "b-locks"))
        gate = asyncio.Event()
        refused = 0
        real_try = b.try_acquire

        async def counting(key: str) -> tuple[Lease | None, float]:
            nonlocal refused
            got = await real_try(key)
            refused += got[0] is None
            return got

        b.try_acquire = counting  # type: ignore[method-assign]

        async def slow() -> str:
            await gate.wait()
            return "holder's result"

        ta = asyncio.create_task(a.once(KEY, slow))
        await until(lambda: a.in_flight() == 1 and locked(server), "a holds")
        tb = asyncio.create_task(b.once(KEY, _value("waiter's result")))
        await until(lambda: refused >= 1, "b waits")
        server.kill()
        assert await asyncio.wait_for(tb, DEADLINE) == "waiter's result"
        assert b.degraded and b.local_runs == 1
        gate.set()
        assert await asyncio.wait_for(ta, DEADLINE) == "holder's result"
        await a.close()
        await b.close()

    asyncio.run(main())


def test_unreachable_redis_warns_once_and_never_logs_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "s3cr3t-redis-pw"
    server = RedisServer(tmp_path / "redis", password=password)
    with server:

        async def main() -> None:
            c = coordinator(server, tmp_path)
            await c.start()
            assert not c.degraded
            server.kill()
            for i in range(5):
                assert await c.once(f"example.com/m{i}/@v/v1.0.0.zip", _value("ok")) == "ok"
            assert c.degraded
            server.start()
            await until(lambda: not c.degraded, "recovered")
            await c.close()

        with caplog.at_level(logging.DEBUG, logger="gomirror.coordination.redis"):
            asyncio.run(main())
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["redis unreachable; coordinating locally"]
    assert getattr(warnings[0], "redis", None) == f"redis://127.0.0.1:{server.port}/0"
    assert any(r.getMessage().startswith("redis reachable again") for r in caplog.records)
    formatter = KeyValueFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert "127.0.0.1" in text
    assert password not in text
    assert all(password not in repr(r.__dict__) for r in caplog.records)


def test_a_wrong_password_is_degraded_at_start_and_still_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis", password="the-right-one")
    with server:
        url = f"redis://:wrong-pw-123@127.0.0.1:{server.port}/0"

        async def main() -> None:
            c = RedisCoordinator(url, local=LocalCoordinator(tmp_path / "locks"))
            await c.start()
            assert c.degraded
            assert await c.once(KEY, _value("served")) == "served"
            await c.close()

        with caplog.at_level(logging.WARNING, logger="gomirror.coordination.redis"):
            asyncio.run(main())
    assert caplog.records and "wrong-pw-123" not in caplog.text
    assert all("wrong-pw-123" not in repr(r.__dict__) for r in caplog.records)


def test_safe_url_drops_userinfo_and_query() -> None:
    assert safe_url("redis://:pw@cache.example:6380/2") == "redis://cache.example:6380/2"
    assert safe_url("rediss://user:pw@cache.example/0?password=pw2") == "rediss://cache.example/0"
    assert safe_url("unix://:pw@/run/redis.sock?db=1") == "unix:///run/redis.sock"
    assert "pw" not in safe_url("redis://:pw@[::1]:6379")


# --- shared state ---------------------------------------------------------------


def test_redis_state_is_shared_between_instances_and_expires(
    server: RedisServer, tmp_path: Path
) -> None:
    async def main() -> None:
        a, b = coordinator(server, tmp_path), coordinator(server, tmp_path)
        await a.state.set("health/goproxy.cn", b"down", 60)
        assert await b.state.get("health/goproxy.cn") == b"down"
        await b.state.delete("health/goproxy.cn")
        assert await a.state.get("health/goproxy.cn") is None
        await a.state.set("negative/x", b"410", 0.2)
        assert await b.state.get("negative/x") == b"410"
        await until(lambda: _gone(b, "negative/x"), "the value expires")
        with pytest.raises(ValueError):
            await a.state.set("big", b"x" * (MAX_STATE_BYTES + 1), 60)
        with pytest.raises(ValueError):
            await a.state.set("k", b"v", 0)
        await a.close()
        await b.close()

    asyncio.run(main())


async def _gone(c: RedisCoordinator, key: str) -> bool:
    return await c.state.get(key) is None


def test_memory_state_expires_and_stays_bounded() -> None:
    now = [1000.0]
    state: SharedState = MemoryState(max_entries=3, clock=lambda: now[0])

    async def main() -> None:
        assert isinstance(state, MemoryState)
        await state.set("a", b"1", 10)
        await state.set("b", b"2", 100)
        assert await state.get("a") == b"1"
        now[0] += 10
        assert await state.get("a") is None  # expired at exactly its TTL
        assert await state.get("b") == b"2"
        await state.set("c", b"3", 100)
        await state.set("d", b"4", 100)
        await state.set("e", b"5", 100)  # full: the oldest ("b") goes
        assert len(state) == 3
        assert await state.get("b") is None
        assert [await state.get(k) for k in "cde"] == [b"3", b"4", b"5"]
        await state.delete("c")
        assert await state.get("c") is None
        with pytest.raises(ValueError):
            await state.set("", b"x", 1)
        with pytest.raises(TypeError):
            await state.set("k", "text", 1)  # type: ignore[arg-type]

    asyncio.run(main())


# --- configuration ---------------------------------------------------------------


def test_redis_settings_load_and_hide_the_password() -> None:
    url = "redis://:pa55word@cache.internal:6380/3"
    cfg = load_config(env={"GOMIRROR_REDIS_URL": url, "GOMIRROR_REDIS_LOCK_TTL": "2.5"})
    assert cfg.storage.redis_url == url
    assert cfg.storage.redis_lock_ttl == 2.5
    assert "pa55word" not in repr(cfg)
    assert load_config(env={}).storage.redis_url == ""
    assert load_config(env={}).storage.redis_lock_ttl == 10.0
    for ok in ("rediss://cache.internal", "unix:///run/redis.sock", "redis://h:1/"):
        assert load_config(env={"GOMIRROR_REDIS_URL": ok}).storage.redis_url == ok


@pytest.mark.parametrize(
    "bad",
    [
        "http://:pa55word@cache.internal:6379",
        "redis://:pa55word@cache.internal:notaport",
        "redis://:pa55word@/0",
        "redis://:pa55word@cache.internal/zero",
        "unix://",
    ],
)
def test_a_bad_redis_url_is_rejected_without_echoing_it(bad: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(env={"GOMIRROR_REDIS_URL": bad})
    assert "redis_url" in str(e.value)
    assert "pa55word" not in str(e.value)


@pytest.mark.parametrize("bad", ["0", "0.05", "-1", "soon", "7200"])
def test_a_bad_lock_ttl_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigError, match="redis_lock_ttl"):
        load_config(env={"GOMIRROR_REDIS_LOCK_TTL": bad})
