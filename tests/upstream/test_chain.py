"""Tests for upstream.chain: Go's `,` / `|` fall-through, failover, bad content, error choice.

Every upstream is a real ``HttpUpstream`` talking to an ``UpstreamSimulator`` on loopback,
wrapped in an ``ObservedUpstream`` (health, metrics, events) as the composition root does; a
small ``Checking`` wrapper plays the verifying upstream so a test can decide what is bad.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from gomirror.errors import (
    ChecksumMismatch,
    Gone,
    InvalidContent,
    NotFound,
    SumdbError,
    UpstreamError,
    UpstreamOff,
    UpstreamRejected,
    UpstreamUnavailable,
)
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.observed import ObservedUpstream
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte, Upstream
from gomirror.upstream.chain import Chain
from gomirror.upstream.health import HealthBook
from gomirror.upstream.off import OffUpstream
from gomirror.upstream.policy import Link, make_policy
from gomirror.upstream.proxy import HttpUpstream
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/chain/mod", "v1.0.0"
INFO = f"/{M}/@v/{V}.info"
T = TypeVar("T")


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def sims(corpus: Corpus) -> Iterator[list[UpstreamSimulator]]:
    """Three mirrors serving the same corpus."""
    started = [UpstreamSimulator(corpus, name=f"sim{i}").start() for i in range(3)]
    yield started
    for s in started:
        s.stop()


Validate = Callable[[Upstream, bytes], Awaitable[None]]


class Checking:
    """A verifying wrapper whose verdict the test supplies."""

    def __init__(self, inner: Upstream, validate: Validate | None) -> None:
        self.inner = inner
        self._validate = validate

    @property
    def name(self) -> str:
        return self.inner.name

    async def info(self, module: str, query: str) -> Fetched:
        got = await self.inner.info(module, query)
        if self._validate is not None:
            await self._validate(self, got.body)
        return got

    async def list(self, module: str) -> Fetched:
        raise AssertionError("not used")

    latest = list

    async def mod(self, module: str, version: str) -> Fetched:
        raise AssertionError("not used")

    async def zip(
        self, module: str, version: str, dst: object, first_byte: FirstByte | None = None
    ) -> Fetched:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass


class Result:
    """What one chain run returned, with the events and metrics it left behind."""

    def __init__(self, fetched: Fetched, metrics: Metrics) -> None:
        self.upstream = fetched.source
        self.value = fetched.body
        self.metrics = metrics


def run_chain(
    spec: list[tuple[UpstreamSimulator | str, str]],
    *,
    policy: str = "go",
    direct_at: int | None = None,
    validate: Validate | None = None,
    bad: list[tuple[str, str]] | None = None,
    observed: list[tuple[str, str, str]] | None = None,
    tmp: Path | None = None,
) -> Result:
    """Build a chain of (simulator, separator-after) and fetch ``M@V.info`` through it."""

    async def main(root: Path) -> Result:
        metrics = Metrics()
        storage = DiskStorage(root)
        events = EventRecorder(storage, metrics)
        health = HealthBook()
        async with aiohttp.ClientSession() as session:
            links = []
            for i, (sim, sep) in enumerate(spec):
                up: Upstream
                if sim == "off":
                    links.append(Link(OffUpstream(), sep == "|", is_keyword=True))
                    continue
                assert isinstance(sim, UpstreamSimulator)
                http = HttpUpstream(
                    sim.url, session, connect_timeout=2, read_timeout=5, retry_after_max=2
                )
                up = ObservedUpstream(
                    Checking(http, validate), health.get(http.name), metrics, events
                )
                links.append(Link(up, sep == "|", is_direct=i == direct_at))
            chain = Chain(links, policy=make_policy(policy), health=health)
            try:
                return Result(await chain.info(M, V), metrics)
            finally:
                for ev in await events.recent():
                    if bad is not None:
                        bad.append((ev.upstream, ev.detail))
                if observed is not None:
                    for fam in metrics.registry.collect():
                        if fam.name != "gomirror_upstream_requests":
                            continue
                        for sample in fam.samples:
                            if sample.name.endswith("_total") and sample.value:
                                lab = sample.labels
                                observed.append((lab["upstream"], lab["op"], lab["outcome"]))
                await storage.close()

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return asyncio.run(main(Path(d)))


def expect_error(exc_type: type[BaseException], **kw: object) -> Callable[..., BaseException]:
    def go(spec: list[tuple[UpstreamSimulator | str, str]]) -> BaseException:
        with pytest.raises(exc_type) as info:
            run_chain(spec, **kw)  # type: ignore[arg-type]
        err: BaseException = info.value
        return err

    return go


def test_first_upstream_answers(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    got = run_chain([(a, ","), (b, ",")])
    assert got.upstream == a.url
    assert b'"Version":"v1.0.0"' in got.value
    assert b.count() == 0


def test_comma_falls_through_on_404_and_410(sims: list[UpstreamSimulator]) -> None:
    a, b, c = sims
    a.fail(INFO, 404)
    b.fail(INFO, 410)
    got = run_chain([(a, ","), (b, ","), (c, ",")])
    assert got.upstream == c.url
    assert (a.count(INFO), b.count(INFO), c.count(INFO)) == (1, 1, 1)


@pytest.mark.parametrize("status", [500, 503, 403, 400])
def test_comma_stops_on_other_errors(sims: list[UpstreamSimulator], status: int) -> None:
    a, b, _ = sims
    a.fail(INFO, status, "mirror says no")
    err = expect_error(UpstreamError)([(a, ","), (b, ",")])
    assert not isinstance(err, NotFound)
    assert f"{status}" in str(err)
    assert "mirror says no" in str(err)
    assert b.count() == 0


@pytest.mark.parametrize("status", [500, 403, 429])
def test_pipe_falls_through_on_any_error(sims: list[UpstreamSimulator], status: int) -> None:
    a, b, _ = sims
    a.fail(INFO, status, headers={"Retry-After": "3600"})
    got = run_chain([(a, "|"), (b, ",")])
    assert got.upstream == b.url


def test_pipe_falls_through_on_refused_connection(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.set_down(True)
    assert run_chain([(a, "|"), (b, ",")]).upstream == b.url
    a.set_down(False)


def test_separator_rules_apply_per_entry(sims: list[UpstreamSimulator]) -> None:
    """`a|b,c`: a's 500 falls through to b, b's 500 stops before c."""
    a, b, c = sims
    a.fail(INFO, 500)
    b.fail(INFO, 502)
    err = expect_error(UpstreamUnavailable)([(a, "|"), (b, ","), (c, ",")])
    assert "502" in str(err).split("\n")[2]
    assert c.count() == 0


@pytest.mark.parametrize("fault", ["500", "503", "refused", "reset"])
def test_failover_policy_falls_through_transient_errors_after_comma(
    sims: list[UpstreamSimulator], fault: str
) -> None:
    a, b, _ = sims
    if fault == "refused":
        a.set_down(True)
    elif fault == "reset":
        a.set_down(True, mode="reset")
    else:
        a.fail(INFO, int(fault))
    got = run_chain([(a, ","), (b, ",")], policy="failover")
    assert got.upstream == b.url
    a.set_down(False)


def test_failover_policy_still_stops_on_a_rejection(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.fail(INFO, 403)
    expect_error(UpstreamRejected, policy="failover")([(a, ","), (b, ",")])
    assert b.count() == 0


def test_go_policy_does_not_fail_over_on_refused(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.set_down(True)
    err = expect_error(UpstreamUnavailable)([(a, ","), (b, ",")])
    assert "connection failed" in str(err)
    assert b.count() == 0
    a.set_down(False)


def test_bad_content_is_reported_and_falls_through_whatever_the_separator(
    sims: list[UpstreamSimulator],
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, replace_body=b'{"Version":"v9.9.9"}')

    async def validate(up: Upstream, body: bytes) -> None:
        if b"v9.9.9" in body:
            raise InvalidContent(f"{up.name}: wrong version")

    bad: list[tuple[str, str]] = []
    got = run_chain([(a, ","), (b, ",")], validate=validate, bad=bad)
    assert got.upstream == b.url
    assert b"v1.0.0" in got.value
    assert bad == [(a.url, f"{a.url}: wrong version")]


def test_checksum_mismatch_blames_the_mirror_and_falls_through(
    sims: list[UpstreamSimulator],
) -> None:
    a, b, _ = sims
    a.add_fault(INFO, replace_body=b'{"Version":"v1.0.0","Time":"2001-01-01T00:00:00Z"}')

    async def validate(up: Upstream, body: bytes) -> None:
        if b"2001" in body:
            raise ChecksumMismatch(M, V, "zip", "h1:good=", "h1:bad=")

    bad: list[tuple[str, str]] = []
    got = run_chain([(a, ","), (b, ",")], validate=validate, bad=bad)
    assert got.upstream == b.url
    assert [u for u, _ in bad] == [a.url]


def test_checksum_database_failure_stops_the_chain_and_blames_no_mirror(
    sims: list[UpstreamSimulator],
) -> None:
    """A misbehaving sumdb is not the mirror's fault; asking more mirrors cannot help."""
    a, b, _ = sims

    async def validate(up: Upstream, body: bytes) -> None:
        raise SumdbError("SECURITY ERROR: tree#5 is inconsistent with tree#9")

    bad: list[tuple[str, str]] = []
    err = expect_error(SumdbError, validate=validate, bad=bad)([(a, "|"), (b, "|")])
    assert "inconsistent" in str(err)
    assert bad == []
    assert b.count("*") == 0


def test_bad_content_everywhere_is_invalid_content(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims

    async def validate(up: Upstream, body: bytes) -> None:
        raise InvalidContent("nope")

    bad: list[tuple[str, str]] = []
    err = expect_error(InvalidContent, validate=validate, bad=bad)([(a, ","), (b, ",")])
    assert str(err).startswith(f"invalid content from every upstream for {M}@{V}.info")
    assert [u for u, _ in bad] == [a.url, b.url]


def test_error_choice_last_non_404(sims: list[UpstreamSimulator]) -> None:
    a, b, c = sims
    a.fail(INFO, 500, "first failure")
    b.fail(INFO, 503, "second failure")
    c.fail(INFO, 404)
    err = expect_error(UpstreamUnavailable)([(a, "|"), (b, "|"), (c, ",")])
    text = str(err)
    assert text.split("\n")[0] == f"upstream error: {M}@{V}.info"
    # Every upstream asked is listed, in order.
    lines = text.split("\n")[1:]
    assert [ln.strip().split(": ", 1)[0] for ln in lines] == [a.url, b.url, c.url]
    assert "503" in lines[1] and "second failure" in lines[1]
    assert "404" in lines[2]


def test_error_choice_last_404_when_all_are_not_found(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.fail(INFO, 410)
    b.fail(INFO, 404)
    err = expect_error(NotFound)([(a, ","), (b, ",")])
    assert not isinstance(err, Gone)  # the last not-found is b's 404
    assert str(err).startswith(f"not found: {M}@{V}.info")
    b.clear_faults()
    b.fail(INFO, 410)
    a.clear_faults()
    a.fail(INFO, 404)
    assert isinstance(expect_error(Gone)([(a, ","), (b, ",")]), Gone)


def test_error_choice_prefers_direct(sims: list[UpstreamSimulator]) -> None:
    """The go command reports direct's error first, even a not-found after a 500."""
    a, b, _ = sims
    a.fail(INFO, 500)
    b.fail(INFO, 404, "direct: no such module")
    err = expect_error(NotFound, direct_at=1)([(a, "|"), (b, ",")])
    assert str(err).startswith(f"not found: {M}@{V}.info")
    # Without direct, the 500 wins.
    expect_error(UpstreamUnavailable)([(a, "|"), (b, ",")])


def test_off_ends_the_list(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.fail(INFO, 404)
    err = expect_error(UpstreamOff)([(a, ","), ("off", "|"), (b, ",")])
    assert "off" in str(err)
    assert b.count() == 0


def test_observer_sees_every_attempt(sims: list[UpstreamSimulator]) -> None:
    a, b, c = sims
    a.fail(INFO, 404)
    b.fail(INFO, 500)
    observed: list[tuple[str, str, str]] = []
    got = run_chain([(a, ","), (b, "|"), (c, ",")], observed=observed)
    assert got.upstream == c.url
    assert sorted(observed) == sorted(
        [
            (a.url, "info", "not_found"),
            (b.url, "info", "unavailable"),
            (c.url, "info", "ok"),
        ]
    )


def test_empty_chain_is_not_found() -> None:
    async def main() -> None:
        chain = Chain([])
        await chain.info("x", "v1.0.0")

    with pytest.raises(NotFound, match="no upstream configured"):
        asyncio.run(main())


def test_retry_after_is_waited_out_once(sims: list[UpstreamSimulator]) -> None:
    a, b, _ = sims
    a.fail(INFO, 429, headers={"Retry-After": "0"}, times=1)
    got = run_chain([(a, ","), (b, ",")])
    assert got.upstream == a.url
    assert a.count(INFO) == 2
    assert b.count() == 0
