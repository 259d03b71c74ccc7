"""Tests for monitor.observed: what ObservedUpstream/Storage/Verifier record, and that they change nothing.

``Scripted`` is an in-process upstream that answers or raises as the test says;
one test uses a real ``HttpUpstream`` against an ``UpstreamSimulator`` so the
warning log line is the one a real 500 produces. Metrics are read back from the
injected registry, events from the real ``EventRecorder`` on a ``DiskStorage``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    Gone,
    InvalidContent,
    NotFound,
    RateLimited,
    StorageError,
    SumdbError,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    VerificationError,
)
from gomirror.monitor.events import EventRecorder
from gomirror.monitor.metrics import Metrics
from gomirror.monitor.observed import (
    ObservedStorage,
    ObservedUpstream,
    ObservedVerifier,
    outcome_of,
)
from gomirror.storage.base import ObjectInfo
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.health import Health, HealthSettings
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.verified import Kind
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

NAME = "http://mirror.test"
M, V = "example.com/obs/mod", "v1.0.0"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Scripted:
    """An Upstream whose next answer the test sets: a Fetched, or an error to raise."""

    name = NAME

    def __init__(self) -> None:
        self.result: Fetched | BaseException = Fetched(b"body", NAME)
        self.zip_gate: asyncio.Event | None = None
        self.zip_started = asyncio.Event()
        self.signal_first_byte = True

    def _give(self) -> Fetched:
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    async def list(self, module: str) -> Fetched:
        return self._give()

    async def info(self, module: str, query: str) -> Fetched:
        return self._give()

    async def latest(self, module: str) -> Fetched:
        return self._give()

    async def mod(self, module: str, version: str) -> Fetched:
        return self._give()

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        if self.signal_first_byte and first_byte is not None:
            first_byte()
        self.zip_started.set()
        if self.zip_gate is not None:
            await self.zip_gate.wait()
        return self._give()

    async def close(self) -> None:
        pass


class Rig:
    def __init__(self, root: Path) -> None:
        self.metrics = Metrics()
        self.storage = DiskStorage(root / "store", fsync=False)
        self.events = EventRecorder(self.storage, self.metrics)
        self.health = Health(NAME, HealthSettings(down_after=3))
        self.inner = Scripted()
        self.up = ObservedUpstream(self.inner, self.health, self.metrics, self.events)

    def count(self, op: str, outcome: str, upstream: str = NAME) -> float:
        value = self.metrics.registry.get_sample_value(
            "gomirror_upstream_requests_total",
            {"upstream": upstream, "op": op, "outcome": outcome},
        )
        return value or 0.0

    def sample(self, name: str, labels: dict[str, str]) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def with_rig(tmp: Path, body: Any) -> None:
    async def main() -> None:
        r = Rig(tmp)
        try:
            await body(r)
        finally:
            await r.storage.close()

    run(main())


MISMATCH = ChecksumMismatch(M, V, "zip", "h1:good=", "h1:evil=")


@pytest.mark.parametrize(
    ("err", "label"),
    [
        (None, "ok"),
        (Gone("410"), "gone"),
        (NotFound("404"), "not_found"),
        (MISMATCH, "checksum_mismatch"),
        (InvalidContent("bad"), "invalid_content"),
        (SumdbError("fork"), "verification_error"),
        (VerificationError("db down"), "verification_error"),
        (UpstreamTimeout("slow"), "timeout"),
        (RateLimited("429", 5.0), "unavailable"),
        (UpstreamUnavailable("503"), "unavailable"),
        (UpstreamRejected("403"), "error"),
        (asyncio.CancelledError(), "cancelled"),
    ],
)
def test_outcome_labels(err: BaseException | None, label: str) -> None:
    assert outcome_of(err) == label


@pytest.mark.parametrize(
    ("err", "label"),
    [
        (NotFound("404"), "not_found"),
        (UpstreamUnavailable("503"), "unavailable"),
        (UpstreamTimeout("timed out"), "timeout"),
        (InvalidContent("bad json"), "invalid_content"),
        (MISMATCH, "checksum_mismatch"),
        (SumdbError("fork"), "verification_error"),
    ],
)
def test_every_call_is_counted_by_op_and_outcome_and_the_error_passes_unchanged(
    tmp_path: Path, err: GomirrorError, label: str
) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = err
        with pytest.raises(type(err)) as info:
            await r.up.mod(M, V)
        assert info.value is err
        assert r.count("mod", label) == 1
        assert r.count("mod", "ok") == 0
        assert (
            r.sample("gomirror_upstream_duration_seconds_count", {"upstream": NAME, "op": "mod"})
            == 1
        )

    with_rig(tmp_path, body)


def test_success_is_returned_as_is_and_recorded(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        fetched = Fetched(b"v1.0.0\n", NAME, elapsed=0.7)
        r.inner.result = fetched
        for op in ("list", "latest", "info", "mod"):
            if op in ("list", "latest"):
                got = await getattr(r.up, op)(M)
            else:
                got = await getattr(r.up, op)(M, V)
            assert got is fetched
            assert r.count(op, "ok") == 1
        assert r.health.requests == 4
        assert r.health.success_ratio == 1.0
        # The source's own time (0.7 s, without our checks) is what health learns.
        assert r.health.latency("small", 0.5) == pytest.approx(0.7)
        assert r.health.state == "slow"
        assert r.up.name == NAME

    with_rig(tmp_path, body)


def test_zip_time_to_first_byte_is_measured_and_passed_on(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = Fetched(b"", NAME, elapsed=4.0)
        calls: list[int] = []
        await r.up.zip(M, V, tmp_path / "x.zip", lambda: calls.append(1))
        assert calls == [1]
        assert r.count("zip", "ok") == 1
        ttfb = r.health.latency("zip", 0.5)
        assert ttfb is not None and ttfb < 4.0  # the first byte came at once, not after 4 s
        assert (
            r.sample(
                "gomirror_upstream_first_byte_seconds_count", {"upstream": NAME, "kind": "zip"}
            )
            == 1
        )
        assert r.health.state == "healthy"  # zips do not make a mirror "slow"

    with_rig(tmp_path, body)


def test_an_unexpected_exception_is_not_counted_as_ok(tmp_path: Path) -> None:
    """E.g. the disk filling up while a zip is written: the call failed, whatever its type."""

    async def body(r: Rig) -> None:
        r.inner.result = OSError(28, "No space left on device")
        with pytest.raises(OSError):
            await r.up.zip(M, V, tmp_path / "x.zip")
        assert r.count("zip", "ok") == 0
        assert r.count("zip", "error") == 1

    with_rig(tmp_path, body)


def test_checksum_mismatch_marks_untrusted_and_stores_an_event(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = MISMATCH
        with pytest.raises(ChecksumMismatch):
            await r.up.zip(M, V, tmp_path / "x.zip")
        assert r.health.untrusted and r.health.state == "untrusted"
        assert r.health.untrusted_reason.startswith(f"checksum mismatch for {M}@{V}")
        events = await r.events.recent()
        assert len(events) == 1
        ev = events[0]
        assert (ev.kind, ev.upstream, ev.module, ev.version, ev.file) == (
            "checksum_mismatch",
            NAME,
            M,
            V,
            "zip",
        )
        assert (ev.expected, ev.got) == ("h1:good=", "h1:evil=")
        keys = [k async for k in r.storage.keys("_gomirror/events/")]
        assert len(keys) == 1
        assert (
            r.sample(
                "gomirror_tamper_events_total", {"upstream": NAME, "kind": "checksum_mismatch"}
            )
            == 1
        )
        # Not a connectivity failure: the mirror is not "down".
        assert r.health.consecutive_failures == 0 and not r.health.down

    with_rig(tmp_path, body)


def test_invalid_content_is_a_failure_and_an_event(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = InvalidContent("info names invalid version 'x'")
        with pytest.raises(InvalidContent):
            await r.up.info(M, V)
        assert r.health.consecutive_failures == 1
        assert not r.health.untrusted
        events = await r.events.recent()
        assert [(e.kind, e.file) for e in events] == [("invalid_content", "info")]

    with_rig(tmp_path, body)


@pytest.mark.parametrize(
    "err", [SumdbError("tree inconsistent"), VerificationError("checksum database unavailable")]
)
def test_a_database_failure_does_not_affect_the_mirror(tmp_path: Path, err: GomirrorError) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = err
        for _ in range(5):  # more than down_after
            with pytest.raises(VerificationError):
                await r.up.mod(M, V)
        assert r.health.requests == 0
        assert r.health.consecutive_failures == 0
        assert r.health.state == "healthy" and r.health.skip_reason() is None
        assert await r.events.recent() == []
        assert r.count("mod", "verification_error") == 5

    with_rig(tmp_path, body)


def test_not_found_is_an_answer_not_a_failure(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = UpstreamUnavailable("503")
        for _ in range(2):
            with pytest.raises(UpstreamUnavailable):
                await r.up.list(M)
        r.inner.result = NotFound("404")
        with pytest.raises(NotFound):
            await r.up.list(M)
        assert r.health.consecutive_failures == 0
        assert r.health.requests == 3
        assert r.health.success_ratio == pytest.approx(1 / 3)

    with_rig(tmp_path, body)


def test_timeouts_rate_limits_and_repeated_failures_take_it_down(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.result = UpstreamTimeout(f"{NAME}/x: timed out")
        with pytest.raises(UpstreamTimeout):
            await r.up.info(M, V)
        reason = r.health.skip_reason()
        assert reason is not None and "timed out" in reason

    with_rig(tmp_path / "a", body)

    async def limited(r: Rig) -> None:
        r.inner.result = RateLimited(f"{NAME}/x: 429 Too Many Requests", retry_after=120.0)
        with pytest.raises(RateLimited):
            await r.up.info(M, V)
        reason = r.health.skip_reason()
        assert reason is not None and "rate limited" in reason

    with_rig(tmp_path / "b", limited)

    async def flaky(r: Rig) -> None:
        r.inner.result = UpstreamUnavailable("502")
        for i in range(3):
            assert r.health.skip_reason() is None, i
            with pytest.raises(UpstreamUnavailable):
                await r.up.info(M, V)
        assert r.health.state == "down"

    with_rig(tmp_path / "c", flaky)


def test_a_cancelled_call_is_counted_and_its_wait_is_a_latency_sample(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.inner.zip_gate = asyncio.Event()  # never set: the call hangs until cancelled
        r.inner.signal_first_byte = False
        task = asyncio.create_task(r.up.zip(M, V, tmp_path / "x.zip"))
        await r.inner.zip_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert r.count("zip", "cancelled") == 1
        assert r.health.latency("zip", 0.5) is not None
        assert r.health.requests == 0  # neither a success nor a failure

    with_rig(tmp_path, body)


def test_a_500_is_logged_at_warning_naming_the_upstream_and_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = Corpus()
    corpus.add_module(M, V)
    with UpstreamSimulator(corpus, name="mirror") as sim:
        sim.fail(f"/{M}/@v/{V}.mod", 500, "database on fire")

        async def main() -> None:
            metrics = Metrics()
            storage = DiskStorage(tmp_path / "store", fsync=False)
            try:
                async with aiohttp.ClientSession() as session:
                    http = HttpUpstream(sim.url, session, connect_timeout=2, read_timeout=5)
                    up = ObservedUpstream(
                        http,
                        Health(http.name, HealthSettings()),
                        metrics,
                        EventRecorder(storage, metrics),
                    )
                    with pytest.raises(UpstreamError):
                        await up.mod(M, V)
            finally:
                await storage.close()

        with caplog.at_level(logging.WARNING, logger="gomirror"):
            run(main())
    records = [r for r in caplog.records if r.getMessage() == "upstream request failed"]
    assert len(records) == 1
    rec = records[0]
    assert rec.levelno == logging.WARNING
    assert rec.name == "gomirror.monitor.observed"
    fields: dict[str, Any] = rec.__dict__
    assert fields["upstream"] == sim.url
    assert (fields["op"], fields["mod"], fields["version"]) == ("mod", M, V)
    assert "500" in fields["reason"] and "database on fire" in fields["reason"]


def test_not_found_and_database_failures_are_not_logged_as_mirror_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(r: Rig) -> None:
        for err in (NotFound("404"), SumdbError("fork")):
            r.inner.result = err
            with pytest.raises(GomirrorError):
                await r.up.mod(M, V)

    with caplog.at_level(logging.WARNING, logger="gomirror"):
        with_rig(tmp_path, body)
    assert [r for r in caplog.records if r.getMessage() == "upstream request failed"] == []


# --- storage and verifier --------------------------------------------------------------------


class FailingStorage(DiskStorage):
    """A DiskStorage whose reads fail, as a broken backend's would."""

    async def get(self, key: str) -> bytes | None:
        raise StorageError(f"cache reading {key} failed: I/O error")


def test_observed_storage_counts_operations_and_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        metrics = Metrics()
        disk = DiskStorage(tmp_path / "s", fsync=False)
        st = ObservedStorage(disk, metrics)
        try:
            await st.put_bytes("a/b", b"hello")
            src = tmp_path / "src"
            src.write_bytes(b"file")
            await st.put_file("a/c", src)
            assert await st.get("a/b") == b"hello"
            assert await st.get("missing") is None
            info = await st.stat("a/c")
            assert isinstance(info, ObjectInfo) and info.size == 4
            assert await st.local_path("a/c") == disk.root / "a/c"
            chunks = await st.stream("a/c")
            assert chunks is not None and b"".join([c async for c in chunks]) == b"file"
            assert await st.presign("a/c", 60) is None
            assert sorted([k async for k in st.keys("a/")]) == ["a/b", "a/c"]
            await st.delete("a/b")
            assert await st.get("a/b") is None

            def ops(op: str, result: str) -> float:
                return (
                    metrics.registry.get_sample_value(
                        "gomirror_storage_operations_total", {"op": op, "result": result}
                    )
                    or 0.0
                )

            assert ops("put", "ok") == 2
            assert ops("get", "ok") == 3
            assert ops("stat", "ok") == 1
            assert ops("delete", "ok") == 1
            broken = ObservedStorage(FailingStorage(tmp_path / "f", fsync=False), metrics)
            with pytest.raises(StorageError):
                await broken.get("x")
            assert ops("get", "error") == 1
            await broken.close()
        finally:
            await st.close()

    run(main())


@dataclass(frozen=True)
class SimpleVerdict:
    verified: bool


class ScriptedVerifier:
    """Checksum-database test double for ObservedVerifier: returns or raises as told."""

    def __init__(self) -> None:
        self.result: SimpleVerdict | Exception = SimpleVerdict(True)
        self.prefetched: list[tuple[str, str]] = []

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> SimpleVerdict:
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    async def prefetch(self, module: str, version: str) -> None:
        self.prefetched.append((module, version))


def test_observed_verifier_counts_results() -> None:
    async def main() -> None:
        metrics = Metrics()
        inner = ScriptedVerifier()
        v = ObservedVerifier(inner, metrics)
        assert (await v.check(M, V, "zip", "h1:x=")).verified
        inner.result = SimpleVerdict(False)
        assert not (await v.check(M, V, "mod", "h1:x=")).verified
        for err in (MISMATCH, NotFound("no such record"), UpstreamTimeout("db slow")):
            inner.result = err
            with pytest.raises(type(err)):
                await v.check(M, V, "zip", "h1:x=")
        await v.prefetch(M, V)
        assert inner.prefetched == [(M, V)]

        def n(result: str) -> float:
            return (
                metrics.registry.get_sample_value(
                    "gomirror_verifications_total", {"result": result}
                )
                or 0.0
            )

        assert (n("verified"), n("skipped"), n("failed")) == (1, 1, 3)

    run(main())
