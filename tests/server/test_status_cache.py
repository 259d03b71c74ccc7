"""test_status_cache: the status page is built and rendered at most once per second.

``CachedStatus`` is tested with a counting snapshot source and an injected
clock; the last test floods the real server (``app.build`` + ``serve``) with
``/`` and ``/-/status.json`` requests and checks that one window costs one
snapshot and one rendering of each.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from gomirror import app
from gomirror.server import status_cache
from gomirror.server.status import StatusBuilder
from gomirror.server.status_cache import CachedStatus
from gomirror.server.status_page import StatusSnapshot, render_status_page
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A snapshot source that counts its builds; ``gate`` holds a build until set."""

    def __init__(self) -> None:
        self.builds = 0
        self.fail = False
        self.gate: asyncio.Event | None = None
        self.started: asyncio.Event | None = None

    async def snapshot(self) -> StatusSnapshot:
        self.builds += 1
        if self.started is not None:
            self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise OSError("events unreadable")
        return StatusSnapshot(version="t", started_at=0.0, generated_at=float(self.builds))


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[StatusSnapshot]:
    seen: list[StatusSnapshot] = []

    def counting(snap: StatusSnapshot) -> str:
        seen.append(snap)
        return render_status_page(snap)

    monkeypatch.setattr(status_cache, "render_status_page", counting)
    return seen


def test_two_requests_within_the_window_build_and_render_once(
    renders: list[StatusSnapshot],
) -> None:
    source, clock = Counting(), Clock()
    cached = CachedStatus(source, ttl=1.0, clock=clock)

    async def main() -> list[str]:
        first = await cached.page()
        clock.now += 0.9
        second = await cached.page()
        json_text = await cached.json()
        clock.now += 0.2  # past the window
        third = await cached.page()
        return [first, second, json_text, third]

    first, second, json_text, third = asyncio.run(main())
    assert first == second and '"generated_at":1.0' in json_text
    assert third != first
    assert source.builds == 2 and len(renders) == 2


def test_concurrent_requests_on_a_stale_copy_share_one_build(
    renders: list[StatusSnapshot],
) -> None:
    source = Counting()
    cached = CachedStatus(source, ttl=1.0, clock=Clock())

    async def main() -> list[str]:
        source.gate, source.started = asyncio.Event(), asyncio.Event()
        pages = [asyncio.create_task(cached.page()) for _ in range(20)]
        await source.started.wait()  # the other 19 were scheduled first: all wait on the flight
        source.gate.set()
        return await asyncio.gather(*pages)

    pages = asyncio.run(main())
    assert len(set(pages)) == 1
    assert source.builds == 1 and len(renders) == 1


def test_a_failed_build_is_not_cached() -> None:
    source = Counting()
    cached = CachedStatus(source, ttl=1.0, clock=Clock())
    source.fail = True
    with pytest.raises(OSError):
        asyncio.run(cached.snapshot())
    source.fail = False
    assert asyncio.run(cached.snapshot()).generated_at == 2.0


def test_a_flood_of_status_requests_costs_one_build_per_window(
    tmp_path: Path, renders: list[StatusSnapshot], monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[float] = []
    real = StatusBuilder.snapshot

    async def counting(self: StatusBuilder) -> StatusSnapshot:
        builds.append(time.monotonic())
        return await real(self)

    monkeypatch.setattr(StatusBuilder, "snapshot", counting)
    corpus = Corpus()
    corpus.add_module("example.com/status/cache", "v1.0.0", {"a.go": b"package a\n"})

    async def main(url: str) -> list[int]:
        cfg = quiet_config(tmp_path / "cache", url)
        async with app.build(cfg) as parts, app.serve(parts) as port:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as s:
                started = time.monotonic()

                async def one(path: str) -> int:
                    async with s.get(base + path) as r:
                        await r.read()
                        return r.status

                statuses = await asyncio.gather(
                    *(one("/" if i % 2 else "/-/status.json") for i in range(40))
                )
                elapsed = time.monotonic() - started
        windows = int(elapsed // status_cache.STATUS_TTL) + 1
        assert 1 <= len(builds) <= windows, (len(builds), elapsed)
        assert 1 <= len(renders) <= windows
        return list(statuses)

    with UpstreamSimulator(corpus, name="mirror") as sim:
        assert set(asyncio.run(main(sim.url))) == {200}
