"""Tests for monitor.consistency: probing real loopback mirrors and reporting their drift.

Each mirror is an ``UpstreamSimulator`` (a real aiohttp server on 127.0.0.1)
reached through a real ``HttpUpstream``. A mirror "learns about a new version
later" by starting with a corpus that lacks it and getting it added between two
rounds (no request is in flight then, so the simulator thread never sees the
corpus change mid-request). The checksum database is ``FakeDatabase``, an
in-process test double for the ``Verifier`` protocol: it knows the right
``h1:`` of every corpus file, says verified for those and raises
``ChecksumMismatch`` for any other (``VerificationError`` for versions it has
never heard of); the real database client is tested under tests/sumdb.
Findings go to a real ``DiskStorage``; time is an injected clock, and tests call
``probe_once()`` directly, so no test waits for a timer.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror.errors import ChecksumMismatch, NotFound, VerificationError
from gomirror.monitor.alerts import Alert, Alerter, SinkConfig
from gomirror.monitor.consistency import ConsistencyMonitor
from gomirror.monitor.findings import FINDINGS_PREFIX, Finding, FindingStore
from gomirror.monitor.popularity import Popularity, watch_set
from gomirror.storage.disk import DiskStorage
from gomirror.sumdb.routes import SumdbUnavailable
from gomirror.upstream.health import HealthBook
from gomirror.upstream.proxy import HttpUpstream
from gomirror.upstream.verified import Kind
from support.corpus import Corpus, ModuleVersion, build_zip
from support.simulator import UpstreamSimulator

T = TypeVar("T")
M = "example.com/mon/lib"
OLD, MID, NEW = "v1.0.0", "v1.1.0", "v1.2.0"
T0 = 1_700_000_000.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def full_corpus() -> Corpus:
    c = Corpus()
    for v, when in (
        (OLD, "2023-01-01T00:00:00Z"),
        (MID, "2023-06-01T00:00:00Z"),
        (NEW, "2024-01-01T00:00:00Z"),
    ):
        c.add_module(
            M,
            v,
            {"lib.go": f"package lib\n\nconst V = {v!r}\n".replace("'", '"').encode()},
            time=when,
        )
    return c


FULL = full_corpus()


def corpus(*versions: str) -> Corpus:
    c = Corpus()
    for v in versions or (OLD, MID, NEW):
        c.add(FULL[(M, v)])
    return c


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class FakeVerdict:
    verified: bool


class FakeDatabase:
    """In-process stand-in for the checksum database (see the module docstring)."""

    def __init__(self, corpus: Corpus) -> None:
        self.known: dict[tuple[str, str, Kind], str] = {}
        for mv in corpus:
            self.known[(mv.path, mv.version, "mod")] = mv.gomod_h1
            self.known[(mv.path, mv.version, "zip")] = mv.h1
        self.fail_with: Exception | None = None
        self.checks = 0

    async def check(self, module: str, version: str, kind: Kind, h1: str) -> FakeVerdict:
        self.checks += 1
        if self.fail_with is not None:
            raise self.fail_with
        want = self.known.get((module, version, kind))
        if want is None:
            raise VerificationError(f"{module}@{version}: not in checksum database") from NotFound(
                "no such version"
            )
        if h1 != want:
            raise ChecksumMismatch(module, version, "go.mod" if kind == "mod" else "zip", want, h1)
        return FakeVerdict(True)

    async def prefetch(self, module: str, version: str) -> None:
        return None


def leftovers(directory: Path) -> list[Path]:
    return list(directory.glob("probe-*"))


@dataclass
class RecordingAlerter:
    """Records fire/resolve calls; keeps the set of keys firing as the real Alerter does."""

    fired: list[Alert] = field(default_factory=list)
    resolved: list[tuple[str, str]] = field(default_factory=list)
    firing: dict[str, Alert] = field(default_factory=dict)

    def fire(self, alert: Alert) -> bool:
        if alert.key in self.firing and self.firing[alert.key].severity == alert.severity:
            return False
        self.firing[alert.key] = alert
        self.fired.append(alert)
        return True

    def resolve(self, key: str, *, text: str = "") -> bool:
        if self.firing.pop(key, None) is None:
            return False
        self.resolved.append((key, text))
        return True

    def kinds(self) -> list[str]:
        return [a.kind for a in self.fired]


@dataclass
class Rig:
    sims: list[UpstreamSimulator]
    monitor: ConsistencyMonitor
    findings: FindingStore
    health: HealthBook
    db: FakeDatabase
    alerts: RecordingAlerter
    clock: Clock
    disk: DiskStorage

    def name(self, i: int) -> str:
        return self.sims[i].url

    def open(self, type: str | None = None) -> list[Finding]:
        return self.findings.open(type)


@pytest.fixture
def sims() -> Iterator[list[UpstreamSimulator]]:
    """Three mirrors; the third has not yet heard of NEW."""
    started = [
        UpstreamSimulator(corpus(), name="a").start(),
        UpstreamSimulator(corpus(), name="b").start(),
        UpstreamSimulator(corpus(OLD, MID), name="c").start(),
    ]
    yield started
    for s in started:
        s.stop()


@asynccontextmanager
async def rig(
    sims: Sequence[UpstreamSimulator], root: Path, *, watch: Sequence[str] = (M,), **kw: Any
) -> AsyncIterator[Rig]:
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        mirrors = [HttpUpstream(s.url, session, connect_timeout=2, read_timeout=5) for s in sims]
        health = HealthBook()
        disk = DiskStorage(root)
        findings = FindingStore(disk, clock=clock)
        db = FakeDatabase(FULL)
        alerts = RecordingAlerter()
        kw.setdefault("first_delay", 0)
        kw.setdefault("alerter", alerts)
        monitor = ConsistencyMonitor(
            mirrors,
            health=health,
            verifier=db,
            findings=findings,
            watch=lambda: list(watch),
            clock=clock,
            **kw,
        )
        yield Rig(list(sims), monitor, findings, health, db, alerts, clock, disk)


def test_lag_is_detected_timed_alerted_and_resolved(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(sims, tmp_path, lag_alert_after=600) as r:
            a, b, c = r.name(0), r.name(1), r.name(2)
            await r.monitor.probe_once()
            [lag] = r.open("lag")
            assert (lag.mirror, lag.module, lag.version) == (c, M, NEW)
            assert lag.first_seen == T0 and lag.said["have"] == sorted([a, b])
            assert set(lag.said["missing"]) == {
                ".info not found",
                "not in @v/list",
                f"@latest is {MID}",
            }
            assert r.health.get(c).state == "lagging" and NEW in r.health.get(c).lagging_reason
            assert r.health.get(a).state == "healthy"
            assert r.alerts.fired == []  # not yet lagging for lag_alert_after
            view = r.monitor.snapshot().modules[0]
            assert view.latest == {a: NEW, b: NEW, c: MID} and view.newest == NEW
            assert view.missing == {c: (NEW,)} and view.sumdb[NEW] == "verified"

            r.clock.now += 700
            await r.monitor.probe_once()
            assert r.monitor.lag_seconds(c, M) == 700 and r.monitor.lag_seconds(a, M) == 0
            assert r.monitor.lags() == {(c, M): 700}
            [alert] = r.alerts.fired
            assert (alert.kind, alert.key, alert.mirror, alert.module) == (
                "lag",
                f"lag:{c}:{M}",
                c,
                M,
            )
            assert NEW in alert.text and "11m" in alert.text

            sims[2].corpus.add(FULL[(M, NEW)])  # the slow mirror learns about NEW
            r.clock.now += 100
            await r.monitor.probe_once()
            assert r.open() == []
            [done] = [f for f in r.findings.recent() if f.id == lag.id]
            assert done.resolved_at == T0 + 800 and done.duration(T0 + 9999) == 800
            assert r.health.get(c).state == "healthy" and r.monitor.lag_seconds(c, M) == 0
            assert r.alerts.resolved == [(f"lag:{c}:{M}", "resolved")]

    run(body())


def test_tampered_mod_names_the_mirror_and_marks_it_untrusted(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    evil = b"module example.com/mon/lib\n\nrequire evil.example/backdoor v1.0.0\n"
    sims[1].add_fault(f"/{M}/@v/{MID}.mod", replace_body=evil)
    sims[2].corpus.add(FULL[(M, NEW)])

    async def body() -> None:
        async with rig(sims, tmp_path, depth=3) as r:
            await r.monitor.probe_once()
            [t] = r.open("tamper")
            assert (t.mirror, t.module, t.version, t.aspect) == (r.name(1), M, MID, "mod")
            assert (
                t.said["sumdb"] == FULL[(M, MID)].gomod_h1 and t.said[r.name(1)] != t.said["sumdb"]
            )
            assert r.health.get(r.name(1)).state == "untrusted"
            assert r.health.get(r.name(0)).state == r.health.get(r.name(2)).state == "healthy"
            assert r.open("lag") == []  # the others agree with the database: no lag either
            [alert] = r.alerts.fired
            assert (
                alert.kind == "tamper"
                and alert.severity == "critical"
                and alert.mirror == r.name(1)
            )
            assert r.monitor.snapshot().modules[0].sumdb[MID] == "mismatch"

            sims[1].clear_faults()
            await r.monitor.probe_once()
            assert r.open() == [] and r.alerts.resolved == [(alert.key, "resolved")]

    run(body())


def test_tampered_zip_is_found_when_zips_are_probed(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    good = FULL[(M, NEW)]
    bad_zip = build_zip([(name, data + b"\n// injected\n") for name, data in good.files])
    sims[0].add_fault(f"/{M}/@v/{NEW}.zip", replace_body=bad_zip)
    sims[1].add_fault(f"/{M}/@v/{NEW}.zip", replace_body=b"this is not a zip file")
    sims[2].corpus.add(good)

    async def body() -> None:
        n = itertools.count()

        def tmp() -> Path:
            return tmp_path / f"probe-{next(n)}.zip"

        async with rig(sims, tmp_path / "cache", probe_zips=True, depth=1, tmp_path=tmp) as r:
            await r.monitor.probe_once()
            [t] = r.open("tamper")
            assert (t.mirror, t.version, t.aspect) == (r.name(0), NEW, "zip")
            assert t.said["sumdb"] == good.h1
            [bad] = r.open("invalid_content")
            assert (bad.mirror, bad.version, bad.aspect) == (r.name(1), NEW, "zip")
            assert leftovers(tmp_path) == []  # the probes' temp files are gone
            zips = [len(s.requests_for("*.zip")) for s in sims]
            assert zips == [1, 1, 1]
            await r.monitor.probe_once()
            # Verified zips are not fetched again; the tampered one is, until it is fixed.
            assert [len(s.requests_for("*.zip")) for s in sims] == [2, 2, 1]

    run(body())


def test_info_time_mismatch_names_the_odd_mirror(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    sims[2].corpus.add(FULL[(M, NEW)])
    rule = sims[2].add_fault(
        f"/{M}/@v/{NEW}.info", replace_body=b'{"Version":"v1.2.0","Time":"2024-02-02T00:00:00Z"}'
    )

    async def body() -> None:
        async with rig(sims, tmp_path) as r:
            await r.monitor.probe_once()
            [f] = r.open()
            assert (f.type, f.mirror, f.version) == ("info_mismatch", r.name(2), NEW)
            assert "Time" in f.detail and "Version" not in f.detail
            assert f.said[r.name(2)]["Time"].startswith("2024-02-02")
            assert f.said[r.name(0)]["Time"].startswith("2024-01-01")
            assert [a.severity for a in r.alerts.fired] == ["info"]
            sims[2].remove_fault(rule)
            await r.monitor.probe_once()
            assert r.open() == []

    run(body())


def test_two_mirrors_that_disagree_are_reported_without_blaming_either(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    sims[1].add_fault(
        f"/{M}/@v/{NEW}.info", replace_body=b'{"Version":"v1.2.0","Time":"2024-03-03T00:00:00Z"}'
    )

    async def body() -> None:
        async with rig(sims[:2], tmp_path) as r:
            await r.monitor.probe_once()
            [f] = r.open()
            assert (f.type, f.mirror, f.version) == ("info_mismatch", "", NEW)
            assert set(f.said) == {r.name(0), r.name(1)}

    run(body())


def test_findings_survive_a_restart(sims: list[UpstreamSimulator], tmp_path: Path) -> None:
    async def body() -> None:
        async with rig(sims, tmp_path) as r:
            await r.monitor.probe_once()
            [lag] = r.open("lag")
        sims[2].corpus.add(FULL[(M, NEW)])
        async with rig(sims, tmp_path) as r2:  # a new FindingStore over the same directory
            r2.clock.now = T0 + 300
            await r2.findings.ensure_loaded()
            [again] = r2.open("lag")
            assert (again.id, again.first_seen, again.mirror) == (lag.id, T0, r2.name(2))
            assert r2.monitor.lag_seconds(r2.name(2), M) == 300
            await r2.monitor.probe_once()
            [done] = [f for f in r2.findings.recent() if f.id == lag.id]
            assert done.resolved_at == T0 + 300 and r2.open() == []

    run(body())


def test_a_hundred_rounds_of_the_same_lag_write_few_objects(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(sims[1:], tmp_path, depth=1, interval=60) as r:
            for _ in range(100):
                await r.monitor.probe_once()
                r.clock.now += 60
            assert r.monitor.rounds == 100
            [lag] = r.open("lag")
            assert lag.last_seen == T0 + 99 * 60
            stored = [k async for k in r.disk.keys(FINDINGS_PREFIX)]
            # One open object plus one "seen" marker per 10 minutes: 1 + 9.
            assert len(stored) == 10

    run(body())


def test_down_mirror_alerts_then_recovers_and_is_never_called_lagging(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    sims[2].corpus.add(FULL[(M, NEW)])
    sims[1].set_down(True)

    async def body() -> None:
        async with rig(sims, tmp_path, watch=(M, "example.com/mon/other")) as r:
            b = r.name(1)
            await r.monitor.probe_once()
            assert r.health.get(b).state == "down"
            assert r.open() == []  # an unreachable mirror lacks nothing we know of
            [alert] = r.alerts.fired
            assert (alert.kind, alert.key, alert.severity) == (
                "mirror_down",
                f"mirror_down:{b}",
                "warning",
            )
            mirror = {m.name: m for m in r.monitor.snapshot().mirrors}[b]
            assert mirror.abandoned and mirror.state == "down"
            # Abandoned after 3 failures in a row; a probe already past the per-mirror
            # semaphore (2 at once) still finishes. Nothing else is asked this round.
            assert 3 <= mirror.errors == mirror.probes <= 4

            sims[1].set_down(False)
            await r.monitor.probe_once()
            assert r.health.get(b).state == "healthy"
            assert r.alerts.resolved == [(f"mirror_down:{b}", "recovered")]

    run(body())


def test_unreachable_checksum_database_alerts_and_resolves(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(sims, tmp_path) as r:
            r.db.fail_with = SumdbUnavailable("sum.golang.org: no route works")
            await r.monitor.probe_once()
            [f] = r.open("sumdb_unreachable")
            assert "no route works" in f.said["error"]
            assert r.monitor.snapshot().sumdb == "unreachable"
            # The lag is still seen: serving a version is enough while the database is away.
            assert [x.mirror for x in r.open("lag")] == [r.name(2)]
            assert "sumdb_unreachable" in r.alerts.kinds()
            assert all(r.health.get(r.name(i)).state != "untrusted" for i in range(3))
            r.db.fail_with = None
            await r.monitor.probe_once()
            assert r.open("sumdb_unreachable") == [] and r.monitor.snapshot().sumdb == "ok"
            assert ("sumdb_unreachable", "resolved") in r.alerts.resolved

    run(body())


def test_a_version_only_a_rogue_mirror_has_is_no_lag(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    info = b'{"Version":"v1.9.0","Time":"2024-05-05T00:00:00Z"}'
    fake = ModuleVersion(M, "v1.9.0", info, b"module example.com/mon/lib\n", b"")
    sims[0].corpus.add(fake)  # the database has never heard of v1.9.0
    sims[2].corpus.add(FULL[(M, NEW)])

    async def body() -> None:
        async with rig(sims, tmp_path) as r:
            await r.monitor.probe_once()
            assert r.open() == []
            view = r.monitor.snapshot().modules[0]
            assert view.newest == NEW and view.sumdb["v1.9.0"] == "unknown"
            assert view.latest[r.name(0)] == "v1.9.0"

    run(body())


def test_private_modules_never_reach_a_mirror(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    pop = Popularity()
    pop.record("corp.example/secret/x")
    pop.record(M)
    watch = watch_set([], pop.top, k=10, private="corp.example")

    async def body() -> None:
        async with rig(sims, tmp_path, watch=watch(), private="corp.example") as r:
            await r.monitor.probe_once()
        async with rig(
            sims, tmp_path, watch=["corp.example/secret/y"], private="corp.example"
        ) as r:
            await r.monitor.probe_once()

    run(body())
    for s in sims:
        assert s.requests and not s.requests_for("/corp.example/*")


def test_slow_probes_are_counted_and_recorded_in_health(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    sims[0].add_fault(f"/{M}/@v/list", latency=0.4)

    async def body() -> None:
        async with rig(sims, tmp_path, healthy_threshold=0.3) as r:
            await r.monitor.probe_once()
            rounds = {m.name: m for m in r.monitor.snapshot().mirrors}
            assert rounds[r.name(0)].slow == 1 and rounds[r.name(1)].slow == 0
            slowest = rounds[r.name(0)].max
            assert slowest is not None and slowest >= 0.4
            assert r.health.get(r.name(0)).requests == rounds[r.name(0)].probes > 0

    run(body())


def test_a_hanging_mirror_does_not_hold_up_the_round(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    sims[2].corpus.add(FULL[(M, NEW)])
    sims[0].add_fault("*", hang=True)

    async def body() -> None:
        async with rig(sims, tmp_path, probe_timeout=0.3) as r:
            started = asyncio.get_running_loop().time()
            await r.monitor.probe_once()
            assert asyncio.get_running_loop().time() - started < 3
            assert r.open() == []
            assert r.health.get(r.name(0)).state == "down"
            view = r.monitor.snapshot().modules[0]
            assert view.latest == {r.name(0): None, r.name(1): NEW, r.name(2): NEW}

    run(body())


def test_snapshot_is_plain_json_and_run_loop_stops_on_cancel(
    sims: list[UpstreamSimulator], tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(sims, tmp_path) as r:
            task = asyncio.create_task(r.monitor.run())
            await asyncio.wait_for(r.monitor.wait_rounds(1), 10)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            snap = r.monitor.snapshot()
            doc = json.loads(json.dumps(snap.to_json()))
            assert doc["rounds"] == 1 and doc["last_round_at"] == T0
            assert doc["last_round_seconds"] >= 0 and doc["sumdb"] == "ok"
            assert doc["modules"][0]["path"] == M and doc["findings"][0]["type"] == "lag"
            assert {m["name"] for m in doc["mirrors"]} == {s.url for s in sims}

    run(body())


def test_run_survives_a_failing_round(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    calls = 0

    def watch() -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("config source broke")
        return []

    async def body() -> None:
        store = FindingStore(DiskStorage(tmp_path))
        monitor = ConsistencyMonitor(
            [],
            health=HealthBook(),
            verifier=FakeDatabase(FULL),
            findings=store,
            watch=watch,
            interval=0.01,
            first_delay=0,
        )
        task = asyncio.create_task(monitor.run())
        await asyncio.wait_for(monitor.wait_rounds(1), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(body())
    assert calls == 2 and "monitor round failed" in caplog.text


def test_the_real_alerter_fits_the_sink_protocol(
    sims: list[UpstreamSimulator], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sims[1].set_down(True)

    async def body() -> None:
        alerter = Alerter([SinkConfig(type="log", name="log")], None)
        async with alerter, rig(sims, tmp_path, alerter=alerter) as r:
            await r.monitor.probe_once()
            assert [a.key for a in alerter.firing()] == [f"mirror_down:{r.name(1)}"]

    run(body())
