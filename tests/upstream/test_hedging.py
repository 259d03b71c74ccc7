"""Tests for upstream.chain under health-aware policies: skipping down mirrors, ``fastest``, ``hedged``.

Every mirror is a real ``HttpUpstream`` talking to an ``UpstreamSimulator`` on
loopback, wrapped as the composition root wraps it: ``ObservedUpstream`` (health,
metrics) around ``VerifiedUpstream`` (content rules) around the mirror. The
checksum database is replaced by ``Agreeing``, an in-process test double that
accepts every hash (the real database is tested under tests/sumdb). Slowness is
the simulator's latency knob; where the order of two events matters, the test
orders them with ``asyncio.Event`` gates instead of relying on timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror.errors import NotFound, UpstreamUnavailable
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.observed import ObservedUpstream
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte, Upstream
from gomirror.upstream.chain import Chain
from gomirror.upstream.health import HealthBook, HealthSettings
from gomirror.upstream.off import OffUpstream
from gomirror.upstream.policy import HedgedPolicy, Link, Policy, make_policy
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.verified import Kind, VerifiedUpstream
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/hedge/mod", "v1.0.0"
INFO = f"/{M}/@v/{V}.info"
ZIP = f"/{M}/@v/{V}.zip"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    """The health records' clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class AgreeingVerdict:
    verified: bool
    note: str


class Agreeing:
    """Checksum-database test double: every hash is the database's (see the module docstring)."""

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> AgreeingVerdict:
        return AgreeingVerdict(True, "test double")

    async def prefetch(self, module: str, version: str) -> None:
        pass


class Hedges:
    """A HedgeListener that records what the chain tells it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.won: list[str] = []

    def hedge_started(self, upstream: str) -> None:
        self.started.append(upstream)

    def hedge_won(self, upstream: str) -> None:
        self.won.append(upstream)


class InFlight:
    """Counts calls running at once through every ``Counting`` wrapper sharing it."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    @contextlib.contextmanager
    def one(self) -> Iterator[None]:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            self.now -= 1


class Wrapper:
    """Passes every call through to ``inner``; subclasses hook ``info``/``zip``."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    async def list(self, module: str) -> Fetched:
        return await self.inner.list(module)

    async def info(self, module: str, query: str) -> Fetched:
        return await self.inner.info(module, query)

    async def latest(self, module: str) -> Fetched:
        return await self.inner.latest(module)

    async def mod(self, module: str, version: str) -> Fetched:
        return await self.inner.mod(module, version)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        return await self.inner.zip(module, version, dst, first_byte)

    async def close(self) -> None:
        await self.inner.close()


class Counting(Wrapper):
    def __init__(self, inner: Upstream, flight: InFlight) -> None:
        super().__init__(inner)
        self.flight = flight

    async def info(self, module: str, query: str) -> Fetched:
        with self.flight.one():
            return await self.inner.info(module, query)


class Gated(Wrapper):
    """Orders a zip attempt against another: wait for ``before``, signal ``started``/``answering``."""

    def __init__(
        self,
        inner: Upstream,
        *,
        before: asyncio.Event | None = None,
        started: asyncio.Event | None = None,
        answering: asyncio.Event | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.before, self.started, self.answering, self.then = before, started, answering, then
        self.paths: list[Path] = []

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        self.paths.append(dst)
        if self.started is not None:
            self.started.set()
        if self.before is not None:
            await self.before.wait()
        if self.then is not None:
            self.then()

        def signal() -> None:
            if first_byte is not None:
                first_byte()
            if self.answering is not None:
                self.answering.set()

        return await self.inner.zip(module, version, dst, signal)


class Keyword:
    """Stands in for ``direct``: records calls and answers from memory."""

    name = "direct"

    def __init__(self, info: bytes) -> None:
        self.body = info
        self.calls: list[str] = []

    async def list(self, module: str) -> Fetched:
        raise AssertionError("not used")

    async def info(self, module: str, query: str) -> Fetched:
        self.calls.append(f"{module}@{query}.info")
        return Fetched(self.body, self.name)

    async def latest(self, module: str) -> Fetched:
        raise AssertionError("not used")

    async def mod(self, module: str, version: str) -> Fetched:
        raise AssertionError("not used")

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


class Rig:
    """The shared parts of one test: a client session, health, metrics, events, hedge listener."""

    def __init__(self, session: aiohttp.ClientSession, root: Path, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self.health = HealthBook(HealthSettings(down_backoff=30.0, max_backoff=300.0), clock)
        self.metrics = Metrics()
        self.storage = DiskStorage(root / "events", fsync=False)
        self.events = EventRecorder(self.storage, self.metrics)
        self.hedges = Hedges()

    def mirror(self, sim: UpstreamSimulator, *, read_timeout: float = 10.0) -> Upstream:
        http = HttpUpstream(
            sim.url, self.session, connect_timeout=2, read_timeout=read_timeout, retry_after_max=0
        )
        return ObservedUpstream(
            VerifiedUpstream(http, Agreeing()),
            self.health.get(http.name),
            self.metrics,
            self.events,
        )

    def chain(self, links: list[Link], policy: Policy) -> Chain:
        return Chain(links, policy=policy, health=self.health, hedges=self.hedges, name="test")

    def outcomes(self, upstream: str, op: str = "info") -> dict[str, float]:
        out: dict[str, float] = {}
        for fam in self.metrics.registry.collect():
            if fam.name != "gomirror_upstream_requests":
                continue
            for s in fam.samples:
                lab = s.labels
                if s.name.endswith("_total") and lab["upstream"] == upstream and lab["op"] == op:
                    out[lab["outcome"]] = s.value
        return out


@contextlib.asynccontextmanager
async def rig(root: Path) -> AsyncIterator[Rig]:
    async with aiohttp.ClientSession() as session:
        r = Rig(session, root, Clock())
        try:
            yield r
        finally:
            await r.storage.close()


def links(r: Rig, *sims: UpstreamSimulator, sep: str = ",") -> list[Link]:
    return [Link(r.mirror(s), sep == "|") for s in sims]


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n", "b.go": b"package mod\n\nconst B = 1\n"})
    return c


@pytest.fixture
def sims(corpus: Corpus) -> Iterator[list[UpstreamSimulator]]:
    started = [UpstreamSimulator(corpus, name=f"sim{i}").start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


def statuses(sim: UpstreamSimulator, pattern: str) -> list[int | None]:
    return [r.status for r in sim.requests_for(pattern)]


# --- down mirrors are skipped -------------------------------------------------------------


def test_a_down_mirror_is_skipped_without_a_request(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims

    async def main() -> None:
        async with rig(tmp_path) as r:
            r.health.get(a.url).record_failure("timed out", timeout=True)
            got = await r.chain(links(r, a, b, sep="|"), make_policy("go")).info(M, V)
            assert got.source == b.url
            # With Go's `,` rule a skipped mirror counts as its failure: the walk stops there.
            with pytest.raises(UpstreamUnavailable) as info:
                await r.chain(links(r, a, b), make_policy("go")).info(M, V)
            assert "skipped: timed out, retrying in 30s" in str(info.value)
            # failover (and the policies built on it) go on to the next mirror.
            got = await r.chain(links(r, a, b), make_policy("failover")).info(M, V)
            assert got.source == b.url

    run(main())
    assert a.count() == 0
    assert b.count(INFO) == 2


def test_when_every_mirror_is_down_they_are_asked_anyway(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims

    async def main() -> None:
        async with rig(tmp_path) as r:
            for s in (a, b):
                r.health.get(s.url).record_failure("timed out", timeout=True)
            got = await r.chain(links(r, a, b), make_policy("fastest")).info(M, V)
            assert got.source == a.url
            assert r.health.get(a.url).state == "healthy"  # the answer proved it up
            assert r.health.get(b.url).state == "down"

    run(main())
    assert (a.count(INFO), b.count(INFO)) == (1, 0)


def test_a_down_mirror_gets_one_probe_after_its_backoff(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims

    async def main() -> None:
        async with rig(tmp_path) as r:
            r.health.get(a.url).record_failure("timed out", timeout=True)
            chain = r.chain(links(r, a, b), make_policy("failover"))
            assert (await chain.info(M, V)).source == b.url
            r.clock.now += 30.0
            assert (await chain.info(M, V)).source == a.url  # the probe, and it answers
            assert r.health.get(a.url).state == "healthy"
            assert (await chain.info(M, V)).source == a.url

    run(main())
    assert (a.count(INFO), b.count(INFO)) == (2, 1)


def test_a_hanging_mirror_costs_one_timeout_not_one_per_request(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, hang=True)

    async def main() -> None:
        async with rig(tmp_path) as r:
            ls = [Link(r.mirror(a, read_timeout=0.3), False), Link(r.mirror(b), False)]
            chain = r.chain(ls, make_policy("failover"))
            for _ in range(3):
                assert (await chain.info(M, V)).source == b.url
            assert r.health.get(a.url).state == "down"
            assert r.outcomes(a.url) == {"timeout": 1.0}

    run(main())
    assert a.count(INFO) == 1
    assert b.count(INFO) == 3


# --- fastest -----------------------------------------------------------------------------


def test_fastest_asks_the_fast_mirror_first_once_the_slow_one_is_measured(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=0.4)

    async def main() -> None:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), make_policy("fastest"))
            # Nothing measured yet: list order.
            assert (await chain.info(M, V)).source == a.url
            # a took 0.4 s, b is assumed to take DEFAULT_LATENCY (0.25 s): b goes first now.
            assert (await chain.info(M, V)).source == b.url
            assert (await chain.info(M, V)).source == b.url
            # go keeps the list order whatever it measured.
            assert (await r.chain(links(r, a, b), make_policy("go")).info(M, V)).source == a.url

    run(main())
    assert a.count(INFO) == 2
    assert b.count(INFO) == 2


MOD = f"/{M}/@v/{V}.mod"
LIST = f"/{M}/@v/list"


def test_a_burst_of_version_fetches_is_spread_over_the_mirrors(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    """fastest: 10 concurrent .mod fetches go half to each mirror; lists stay on the first."""
    a, b, _ = sims
    for path in (MOD, LIST):
        for sim in (a, b):
            sim.add_fault(path, latency=0.2)  # every request is still running when the next starts

    async def main() -> None:
        async with rig(tmp_path) as r:
            fastest = r.chain(links(r, a, b), make_policy("fastest"))
            answers = await asyncio.gather(*(fastest.mod(M, V) for _ in range(10)))
            assert {f.body for f in answers} == {answers[0].body}
            assert fastest.in_flight() == {}  # every finished attempt was counted out
            await asyncio.gather(*(fastest.list(M) for _ in range(6)))
            go = r.chain(links(r, a, b), make_policy("go"))
            await asyncio.gather(*(go.mod(M, V) for _ in range(4)))

    run(main())
    assert (a.count(MOD), b.count(MOD)) == (5 + 4, 5)
    # Lists are not spread: all on whichever mirror ranks first (their latencies are measured now).
    assert sorted((a.count(LIST), b.count(LIST))) == [0, 6]


# --- hedged ------------------------------------------------------------------------------


def test_hedged_starts_the_next_mirror_after_the_delay_and_the_fast_answer_wins(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=5.0)  # slow, not dead: it would answer, later
    asked: list[float] = []

    async def main() -> None:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.05, cap=0.2))
            asked.append(time.monotonic())
            got = await chain.info(M, V)
            assert got.source == b.url
            assert b'"Version":"v1.0.0"' in got.body
            # The loser was cancelled before it answered: a saw the request, sent nothing.
            assert statuses(a, INFO) == [None]
            assert statuses(b, INFO) == [200]
            assert r.hedges.started == [b.url]
            assert r.hedges.won == [b.url]
            assert r.outcomes(a.url) == {"cancelled": 1.0}
            assert r.outcomes(b.url) == {"ok": 1.0}
            # The loser's wait counts as a latency sample: it is slow, not unknown.
            p50 = r.health.get(a.url).latency("small", 0.5)
            assert p50 is not None and p50 >= 0.2

    run(main())
    # Measured from the ask, not from a's arrival: on a loaded machine a's request may reach
    # its server late, but b can never start before the delay has passed.
    gap = b.requests_for(INFO)[0].monotonic - asked[0]
    assert len(a.requests_for(INFO)) == 1
    assert 0.2 <= gap < 5.0  # started after the delay (0.2 s), long before a answered


def test_hedge_delay_follows_the_first_mirrors_own_latency(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=5.0)
    asked: list[float] = []

    async def main() -> None:
        async with rig(tmp_path) as r:
            for _ in range(10):
                r.health.get(a.url).record_success("small", 0.3)
            r.health.get(b.url).record_success("small", 0.4)  # slower on record: a goes first
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.05, cap=3.0))
            asked.append(time.monotonic())
            assert (await chain.info(M, V)).source == b.url

    run(main())
    gap = b.requests_for(INFO)[0].monotonic - asked[0]  # from the ask (see above)
    assert len(a.requests_for(INFO)) == 1
    assert 0.29 <= gap < 3.0  # a's p90 (0.3 s), neither the floor nor the cap


def test_after_losing_a_hedge_the_slow_mirror_is_no_longer_asked_first(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=5.0)

    async def main() -> None:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.3, cap=0.3))
            assert (await chain.info(M, V)).source == b.url
            assert (await chain.info(M, V)).source == b.url
            assert r.hedges.started == [b.url]  # the second request needed no hedge

    run(main())
    assert a.count(INFO) == 1
    assert b.count(INFO) == 2


def test_a_fast_mirror_needs_no_hedge(sims: list[UpstreamSimulator], tmp_path: Path) -> None:
    a, b, _ = sims

    async def main() -> None:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=1.0, cap=1.0))
            assert (await chain.info(M, V)).source == a.url
            assert r.hedges.started == []

    run(main())
    assert b.count() == 0


def test_hedged_zip_loser_is_cancelled_and_its_temp_file_removed(
    sims: list[UpstreamSimulator], corpus: Corpus, tmp_path: Path
) -> None:
    """a starts, is slow to answer, b starts; a then sends part of the zip and stalls; b wins."""
    a, b, _ = sims
    a.add_fault(ZIP, hang_after=100)  # headers and 100 bytes, then nothing
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "v1.0.0.zip"
    seen: dict[str, bool] = {}

    async def main() -> None:
        async with rig(tmp_path) as r:
            b_started, a_answering = asyncio.Event(), asyncio.Event()
            slow = Gated(r.mirror(a), before=b_started, answering=a_answering)

            def a_file_exists() -> None:
                seen["a_file"] = slow.paths[0].exists()

            fast = Gated(r.mirror(b), started=b_started, before=a_answering, then=a_file_exists)
            chain = r.chain(
                [Link(slow, False), Link(fast, False)], HedgedPolicy(floor=0.05, cap=0.05)
            )
            calls: list[int] = []
            got = await chain.zip(M, V, dst, lambda: calls.append(1))
            assert got.source == b.url
            assert got.checked is not None and got.checked.h1 == corpus[M, V].h1
            assert calls == [1]  # the caller hears of a first byte once
            assert slow.paths == [out / "v1.0.0.zip.0"]
            assert fast.paths == [out / "v1.0.0.zip.1"]
            assert r.hedges.started == [b.url] and r.hedges.won == [b.url]
            assert r.outcomes(a.url, "zip") == {"cancelled": 1.0}

    run(main())
    assert seen == {"a_file": True}  # the loser had started writing its own file
    assert sorted(out.iterdir()) == [dst]
    assert dst.read_bytes() == corpus[M, V].zip
    assert statuses(a, ZIP) == [200]  # it had begun to answer; the body never completed


def test_a_404_from_the_fast_mirror_does_not_beat_the_slow_mirror_that_has_it(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=0.25)
    a.add_fault(ZIP, latency=0.25)
    b.fail(INFO, 404)
    b.fail(ZIP, 404)
    dst = tmp_path / "out.zip"

    async def main(op: str) -> None:
        # A fresh health book each time: b's quick 404 would otherwise make it "fastest".
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.05, cap=0.05))
            if op == "info":
                assert (await chain.info(M, V)).source == a.url
            else:
                assert (await chain.zip(M, V, dst)).source == a.url
            assert r.hedges.started == [b.url]
            assert r.hedges.won == []  # the first attempt won

    run(main("info"))
    run(main("zip"))
    assert statuses(b, INFO) == [404] and statuses(b, ZIP) == [404]
    assert dst.is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out.zip"]


def test_hedged_answer_is_not_found_only_when_every_mirror_says_so(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=0.3, status=404)
    b.fail(INFO, 410)

    async def main() -> None:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.05, cap=0.05))
            with pytest.raises(NotFound) as info:
                await chain.info(M, V)
            text = str(info.value)
            assert text.startswith(f"not found: {M}@{V}.info")
            assert a.url in text and b.url in text

    run(main())
    assert statuses(a, INFO) == [404] and statuses(b, INFO) == [410]


def test_at_most_max_parallel_requests_are_in_flight(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    """a fails after 0.3 s, b is slower; c starts only when a's failure frees a slot."""
    a, b, c = sims
    a.add_fault(INFO, latency=0.3, status=500)
    b.add_fault(INFO, latency=5.0)

    async def main() -> None:
        async with rig(tmp_path) as r:
            flight = InFlight()
            ls = [Link(Counting(r.mirror(s), flight), False) for s in (a, b, c)]
            chain = r.chain(ls, HedgedPolicy(floor=0.02, cap=0.02, max_parallel=2))
            got = await chain.info(M, V)
            assert got.source == c.url
            assert flight.peak == 2
            assert flight.now == 0  # the loser b was cancelled and has stopped
            assert r.hedges.started == [b.url]  # c replaced a failure: not a hedge

    run(main())
    assert statuses(b, INFO) == [None]
    c_at = c.requests_for(INFO)[0].monotonic
    assert c_at - a.requests_for(INFO)[0].monotonic >= 0.25  # not before a failed


def test_max_parallel_three_races_three(sims: list[UpstreamSimulator], tmp_path: Path) -> None:
    a, b, c = sims
    a.add_fault(INFO, latency=5.0)
    b.add_fault(INFO, latency=5.0)

    async def main() -> None:
        async with rig(tmp_path) as r:
            flight = InFlight()
            ls = [Link(Counting(r.mirror(s), flight), False) for s in (a, b, c)]
            chain = r.chain(ls, HedgedPolicy(floor=0.02, cap=0.02, max_parallel=3))
            assert (await chain.info(M, V)).source == c.url
            assert flight.peak == 3
            assert r.hedges.started == [b.url, c.url]
            assert r.hedges.won == [c.url]

    run(main())
    assert statuses(a, INFO) == [None] and statuses(b, INFO) == [None]


def test_hedges_never_start_direct_or_off(sims: list[UpstreamSimulator], tmp_path: Path) -> None:
    a, b, _ = sims
    a.add_fault(INFO, latency=0.15)

    async def main() -> None:
        async with rig(tmp_path) as r:
            direct = Keyword(b'{"Version":"v1.0.0","Time":"2019-01-01T00:00:00Z"}')
            policy = HedgedPolicy(floor=0.02, cap=0.02)
            with_direct = [
                Link(r.mirror(a), False),
                Link(direct, False, is_direct=True, is_keyword=True),
            ]
            assert (await r.chain(with_direct, policy).info(M, V)).source == a.url
            assert direct.calls == []
            with_off = [
                Link(r.mirror(a), False),
                Link(OffUpstream(), False, is_keyword=True),
                Link(r.mirror(b), False),
            ]
            assert (await r.chain(with_off, policy).info(M, V)).source == a.url
            assert r.hedges.started == []
            # direct still runs when the mirrors fail: in turn, not as a hedge.
            a.fail(INFO, 500)
            assert (await r.chain(with_direct, policy).info(M, V)).source == "direct"
            assert direct.calls == [f"{M}@{V}.info"]

    run(main())
    assert b.count() == 0


def test_hedged_concurrent_requests_share_nothing(
    sims: list[UpstreamSimulator], corpus: Corpus, tmp_path: Path
) -> None:
    """Many hedged zip fetches at once, each into its own dst: every one gets the right bytes."""
    a, b, _ = sims
    a.add_fault(ZIP, latency=0.2)

    async def main() -> list[Fetched]:
        async with rig(tmp_path) as r:
            chain = r.chain(links(r, a, b), HedgedPolicy(floor=0.05, cap=0.05))
            calls: list[Awaitable[Fetched]] = [
                chain.zip(M, V, tmp_path / f"z{i}.zip") for i in range(8)
            ]
            return list(await asyncio.gather(*calls))

    got = run(main())
    assert len(got) == 8
    zips = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("z"))
    assert zips == sorted(f"z{i}.zip" for i in range(8))
    for i in range(8):
        assert (tmp_path / f"z{i}.zip").read_bytes() == corpus[M, V].zip
