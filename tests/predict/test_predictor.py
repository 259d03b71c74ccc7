"""Tests for predict, in process: a real Service (disk storage, local coordinator) over a fake upstream.

``GraphUpstream`` answers ``.mod``/``.info``/``.zip`` of a small module graph from
a table, records every call in order, and can hold calls for chosen modules
until the test releases them (or forever). Every wait is on a condition with a
deadline, never a sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gomirror.coordination.local import LocalCoordinator
from gomirror.errors import NotFound
from gomirror.predict import PredictingService, Predictor, PredictSettings, file_key
from gomirror.service import Service
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.router import Router

T = TypeVar("T")
V = "v1.0.0"
DEADLINE = 10.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def gomod(path: str, requires: list[str], go: str = "1.16") -> bytes:
    req = "".join(f"\t{r} {V}\n" for r in requires)
    return f"module {path}\n\ngo {go}\n\nrequire (\n{req})\n".encode()


class GraphUpstream:
    """An Upstream serving ``mods`` (module → go.mod); ``hold`` modules wait on ``release``."""

    def __init__(self, mods: dict[str, bytes], name: str = "mirror") -> None:
        self._name = name
        self.mods = mods
        self.calls: list[tuple[str, str]] = []  # (kind, module) in call order
        self.hold: set[str] = set()
        self.release = asyncio.Event()
        self.running = 0
        self.max_running = 0

    @property
    def name(self) -> str:
        return self._name

    async def _call(self, kind: str, module: str) -> None:
        self.calls.append((kind, module))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if module in self.hold:
                await self.release.wait()
            if module not in self.mods:
                raise NotFound(f"not found: {module}")
        finally:
            self.running -= 1

    async def list(self, module: str) -> Fetched:
        await self._call("list", module)
        return Fetched(f"{V}\n".encode(), self._name)

    async def latest(self, module: str) -> Fetched:
        await self._call("latest", module)
        return Fetched(b'{"Version":"v1.0.0"}', self._name)

    async def info(self, module: str, query: str) -> Fetched:
        await self._call("info", module)
        return Fetched(b'{"Version":"v1.0.0","Time":"2020-01-01T00:00:00Z"}', self._name)

    async def mod(self, module: str, version: str) -> Fetched:
        await self._call("mod", module)
        return Fetched(self.mods[module], self._name)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        await self._call("zip", module)
        await asyncio.to_thread(dst.write_bytes, b"PK\x05\x06" + bytes(18))
        return Fetched(b"", self._name)

    async def close(self) -> None:
        pass

    def seen(self, kind: str, module: str) -> bool:
        return (kind, module) in self.calls


class Rig:
    """A Service over ``upstream`` with a Predictor and the PredictingService in front."""

    def __init__(self, tmp: Path, upstream: Any, settings: PredictSettings) -> None:
        self.disk = DiskStorage(tmp / "cache", fsync=False)
        self.service = Service(
            storage=self.disk,
            coordinator=LocalCoordinator(self.disk.lock_dir()),
            upstream=upstream,
            tmp_dir=lambda: self.disk.new_temp_path(".zip"),
        )
        self.outcomes: list[str] = []
        self.predictor = Predictor(
            self.service, self.disk, settings, on_outcome=self.outcomes.append
        )
        self.front = PredictingService(self.service, self.predictor)

    async def close(self) -> None:
        await self.predictor.close()
        await self.disk.close()


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)  # polling a condition, with a deadline


async def idle(p: Predictor) -> None:
    await asyncio.wait_for(p.wait_idle(), DEADLINE)


def chain(n: int, go: str = "1.16") -> dict[str, bytes]:
    """m0 → m1 → … → m(n-1), each requiring the next."""
    names = [f"example.com/c/m{i}" for i in range(n)]
    return {
        name: gomod(name, [names[i + 1]] if i + 1 < n else [], go) for i, name in enumerate(names)
    }


def test_requirements_are_fetched_in_the_background_after_the_answer(tmp_path: Path) -> None:
    mods = {
        "example.com/a": gomod("example.com/a", ["example.com/b", "example.com/c"]),
        "example.com/b": gomod("example.com/b", ["example.com/d"]),
        "example.com/c": gomod("example.com/c", []),
        "example.com/d": gomod("example.com/d", []),
    }

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings())
        ans = await rig.front.mod("example.com/a", V)
        assert ans.body == mods["example.com/a"]
        assert up.calls == [("mod", "example.com/a")]  # nothing predicted before the answer
        await until(
            lambda: all(
                up.seen("mod", m) for m in ("example.com/b", "example.com/c", "example.com/d")
            ),
            "the requirements' .mod",
        )
        await idle(rig.predictor)
        for m in ("example.com/b", "example.com/c", "example.com/d"):
            assert up.seen("info", m)
            assert await rig.disk.get(file_key("mod", m, V)) == mods[m]  # verified path: stored
        assert not any(kind == "zip" for kind, _ in up.calls)  # zips only after an .info
        # A client now asking a predicted file gets it from the cache: a hit, no new fetch.
        calls = len(up.calls)
        again = await rig.front.mod("example.com/b", V)
        assert again.cache == "hit" and len(up.calls) == calls
        assert rig.predictor.counts["hit"] == 1
        assert 0 < rig.predictor.hit_ratio() <= 1
        await rig.close()

    run(main())


def test_an_answer_never_waits_for_prediction(tmp_path: Path) -> None:
    mods = chain(4)

    async def main() -> None:
        up = GraphUpstream(mods)
        up.hold = {"example.com/c/m1", "example.com/c/m2"}  # predicted fetches hang forever
        rig = Rig(tmp_path, up, PredictSettings())
        t0 = time.monotonic()
        ans = await asyncio.wait_for(rig.front.mod("example.com/c/m0", V), DEADLINE)
        assert ans.body == mods["example.com/c/m0"]
        await until(lambda: up.seen("mod", "example.com/c/m1"), "the hanging predicted fetch")
        # Another answer while the predicted fetches hang: prompt too.
        info = await asyncio.wait_for(rig.front.info("example.com/c/m0", V), DEADLINE)
        assert b"v1.0.0" in info.body
        assert time.monotonic() - t0 < 5
        assert rig.predictor.busy() > 0
        await asyncio.wait_for(rig.close(), DEADLINE)  # shutdown cancels the hanging ones
        assert rig.predictor.busy() == 0

    run(main())


def test_a_private_requirement_never_reaches_a_mirror(tmp_path: Path) -> None:
    private = "corp.example.com/secret"
    mods = {
        "example.com/pub": gomod("example.com/pub", [private, "example.com/dep"]),
        "example.com/dep": gomod("example.com/dep", []),
        private: gomod(private, []),
    }

    async def scenario(settings: PredictSettings, sub: str) -> tuple[GraphUpstream, GraphUpstream]:
        public = GraphUpstream(mods, "mirror")
        direct = GraphUpstream(mods, "direct")
        (tmp_path / sub).mkdir()
        rig = Rig(tmp_path / sub, Router(public, direct, "corp.example.com"), settings)
        await rig.front.mod("example.com/pub", V)
        await until(lambda: public.seen("mod", "example.com/dep"), "the public requirement")
        await idle(rig.predictor)
        await rig.close()
        assert not any(m.startswith("corp.example.com") for _, m in public.calls)
        return public, direct

    async def main() -> None:
        # As configured by app.build: private paths are never predicted at all.
        _, direct = await scenario(PredictSettings(private="corp.example.com"), "guarded")
        assert direct.calls == []
        # Even a predictor without the patterns goes through the router: direct only.
        _, direct = await scenario(PredictSettings(private=""), "routed")
        assert ("mod", private) in direct.calls

    run(main())


def test_depth_is_respected(tmp_path: Path) -> None:
    mods = chain(6)

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings(mode="mod", depth=2))
        await rig.front.mod("example.com/c/m0", V)
        await until(lambda: up.seen("mod", "example.com/c/m2"), "depth 2")
        await idle(rig.predictor)
        assert [m for k, m in up.calls if k == "mod"] == [f"example.com/c/m{i}" for i in range(3)]
        assert not any(k == "info" for k, _ in up.calls)  # mode mod: no .info
        # A client reaching m2 moves the horizon: m3 and m4 come next, m5 still not.
        await rig.front.mod("example.com/c/m2", V)
        await until(lambda: up.seen("mod", "example.com/c/m4"), "two levels below m2")
        await idle(rig.predictor)
        assert not up.seen("mod", "example.com/c/m5")
        await rig.close()

    run(main())


def test_pruned_modules_are_walked_one_level_only(tmp_path: Path) -> None:
    mods = chain(4, go="1.21")

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings(mode="mod", depth=5))
        await rig.front.mod("example.com/c/m0", V)
        await until(lambda: up.seen("mod", "example.com/c/m1"), "the direct requirement")
        await idle(rig.predictor)
        # The go command reads no go.mod below a pruned (go >= 1.17) dependency.
        assert not up.seen("mod", "example.com/c/m2")
        await rig.close()

    run(main())


def test_budget_and_concurrency_are_respected(tmp_path: Path) -> None:
    names = [f"example.com/w/m{i}" for i in range(12)]
    mods = {n: gomod(n, []) for n in names}
    mods["example.com/w/root"] = gomod("example.com/w/root", names)

    async def main() -> None:
        up = GraphUpstream(mods)
        up.hold = set(names)
        rig = Rig(tmp_path, up, PredictSettings(mode="mod", concurrency=3, per_minute=5))
        await rig.front.mod("example.com/w/root", V)
        await until(lambda: up.running == 3, "three predicted fetches running")
        assert rig.predictor.busy() == 5  # 5 scheduled: 3 running, 2 waiting
        up.release.set()
        await idle(rig.predictor)
        assert up.max_running == 3
        assert sum(1 for k, _ in up.calls if k == "mod") == 1 + 5  # the answer + the budget
        assert rig.outcomes.count("scheduled") == 5
        assert rig.outcomes.count("skipped") >= 7
        await rig.close()

    run(main())


def test_cached_files_are_not_fetched_but_walked(tmp_path: Path) -> None:
    mods = chain(4)

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings(mode="mod"))
        await rig.disk.put_bytes(file_key("mod", "example.com/c/m1", V), mods["example.com/c/m1"])
        await rig.front.mod("example.com/c/m0", V)
        await until(lambda: up.seen("mod", "example.com/c/m3"), "the walk through the cached m1")
        await idle(rig.predictor)
        assert not up.seen("mod", "example.com/c/m1")
        await rig.close()

    run(main())


def test_an_info_request_predicts_its_zip(tmp_path: Path) -> None:
    mods = chain(2)

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings())
        await rig.front.info("example.com/c/m0", V)
        await until(lambda: up.seen("zip", "example.com/c/m0"), "the predicted zip")
        await idle(rig.predictor)
        z = await rig.front.zip("example.com/c/m0", V)
        assert z.cache == "hit"
        assert sum(1 for k, _ in up.calls if k == "zip") == 1
        assert rig.predictor.counts["hit"] >= 1
        await rig.close()

    run(main())


@pytest.mark.parametrize("mode", ["off", "mod+info"])
def test_modes_without_zips(tmp_path: Path, mode: str) -> None:
    mods = chain(3)

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings(mode=mode))
        await rig.front.info("example.com/c/m0", V)
        await rig.front.mod("example.com/c/m0", V)
        if mode != "off":
            await until(lambda: up.seen("info", "example.com/c/m2"), "the walk")
        await idle(rig.predictor)
        assert not any(k == "zip" for k, _ in up.calls)
        predicted = [c for c in up.calls if c[1] != "example.com/c/m0"]
        assert (predicted == []) == (mode == "off")
        await rig.close()

    run(main())


def test_failures_are_swallowed_and_counted(tmp_path: Path) -> None:
    mods = {"example.com/a": gomod("example.com/a", ["example.com/missing"])}

    async def main() -> None:
        up = GraphUpstream(mods)
        rig = Rig(tmp_path, up, PredictSettings(mode="mod"))
        await rig.front.mod("example.com/a", V)
        await until(lambda: up.seen("mod", "example.com/missing"), "the failing fetch")
        await idle(rig.predictor)
        assert rig.outcomes.count("failed") == 1
        with pytest.raises(NotFound):  # the client's own request still gets the real answer
            await rig.front.mod("example.com/missing", V)
        await rig.close()

    run(main())
