"""Tests for service, in process: cache → fetch → store → answer, with a fake upstream and real disk.

The upstream is ``FakeUpstream`` (answers from a table, records every call, can
fail or hold a call until the test releases it); storage is a real
``DiskStorage`` under ``tmp_path``, sometimes behind a small wrapper, and
coordination a real ``LocalCoordinator``. No server, no subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gomirror.answers import IMMUTABLE, STALE, Answer, FileAnswer, Lifetime
from gomirror.coordination.local import LocalCoordinator
from gomirror.errors import (
    Gone,
    NotFound,
    SumdbError,
    UpstreamError,
    UpstreamUnavailable,
)
from gomirror.service import Service
from gomirror.storage.base import Storage
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Checked, Fetched, FirstByte
from support.storagewrap import Passthrough

M, V = "example.com/svc/mod", "v1.0.0"
ESC = "example.com/svc/mod"
ZIP_BYTES = b"PK\x03\x04 pretend zip " + bytes(range(256)) * 40
MOD = b"module example.com/svc/mod\n"
INFO = b'{"Version":"v1.0.0","Time":"2019-01-01T00:00:00Z"}'
CHECKED = Checked("h1:fakefakefake=", {"verified": True, "note": "test"}, len(ZIP_BYTES), 3)
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeUpstream:
    """An Upstream answering from ``bodies``; ``errors`` win; ``gate`` holds zip calls."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bodies: dict[str, bytes] = {
            "list": b"v1.0.0\n",
            "latest": INFO,
            "info": INFO,
            "mod": MOD,
            "zip": ZIP_BYTES,
        }
        self.errors: dict[str, Exception] = {}
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def _answer(self, op: str, checked: Checked | None = None) -> Fetched:
        self.calls.append(op)
        self.entered.set()
        if op in self.errors:
            raise self.errors[op]
        return Fetched(self.bodies[op], "http://mirror.test", checked)

    async def list(self, module: str) -> Fetched:
        return await self._answer("list")

    async def latest(self, module: str) -> Fetched:
        return await self._answer("latest")

    async def info(self, module: str, query: str) -> Fetched:
        return await self._answer("info")

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._answer("mod", Checked("h1:modhash=", {"verified": True}))

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        self.calls.append("zip")
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        # A partial download first, left behind even when the fetch fails.
        await asyncio.to_thread(dst.write_bytes, self.bodies["zip"][:100])
        if "zip" in self.errors:
            raise self.errors["zip"]
        await asyncio.to_thread(dst.write_bytes, self.bodies["zip"])
        return Fetched(b"", "http://mirror.test", CHECKED)

    async def close(self) -> None:
        pass


class Recording(Passthrough[DiskStorage]):
    """Remembers the order of writes."""

    def __init__(self, inner: DiskStorage) -> None:
        super().__init__(inner)
        self.writes: list[str] = []

    async def put_bytes(self, key: str, data: bytes) -> None:
        self.writes.append(key)
        await self.inner.put_bytes(key, data)

    async def put_file(self, key: str, src: Path) -> None:
        self.writes.append(key)
        await self.inner.put_file(key, src)


class NoLocalFiles(Passthrough[DiskStorage]):
    """Stands in for an object store (S3 and the like): objects have no local path."""

    async def local_path(self, key: str) -> Path | None:
        return None


class BytesOnly(NoLocalFiles):
    """A backend that can neither give a path nor stream: only whole objects."""

    async def stream(self, key: str) -> AsyncIterator[bytes] | None:
        return None


class Rig:
    def __init__(self, root: Path, wrap: Callable[[DiskStorage], Storage] | None = None) -> None:
        self.disk = DiskStorage(root / "cache", fsync=False)
        self.storage: Storage = wrap(self.disk) if wrap is not None else self.disk
        self.coordinator = LocalCoordinator(self.disk.lock_dir())
        self.upstream = FakeUpstream()

    def service(self, *, mutable_ttl: float = 60.0, negative_ttl: float = 30.0) -> Service:
        return Service(
            storage=self.storage,
            coordinator=self.coordinator,
            upstream=self.upstream,
            tmp_dir=lambda: self.disk.new_temp_path(".zip"),
            mutable_ttl=mutable_ttl,
            negative_ttl=negative_ttl,
        )

    def file(self, key: str) -> Path:
        return self.disk.root / key

    def age(self, key: str, seconds: float) -> None:
        """Make a stored object look ``seconds`` old."""
        p = self.file(key)
        st = p.stat()
        os.utime(p, (st.st_atime - seconds, st.st_mtime - seconds))

    def temp_files(self) -> list[Path]:
        return [p for p in self.disk.temp_dir().iterdir() if p.name != ".owner"]

    async def close(self) -> None:
        await self.disk.close()


def with_rig(
    tmp: Path,
    body: Callable[[Rig], Awaitable[None]],
    wrap: Callable[[DiskStorage], Storage] | None = None,
) -> None:
    async def main() -> None:
        r = Rig(tmp, wrap)
        try:
            await body(r)
        finally:
            await r.close()

    run(main())


async def read_all(answer: FileAnswer) -> bytes:
    if answer.path is not None:
        return answer.path.read_bytes()
    if answer.chunks is not None:
        return b"".join([c async for c in answer.chunks])
    assert answer.body is not None
    return answer.body


# --- immutable files ------------------------------------------------------------------------


def test_mod_miss_then_hit_forever(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service()
        first = await svc.mod(M, V)
        assert first == Answer(MOD, "text/plain; charset=utf-8", IMMUTABLE, "miss")
        second = await svc.mod(M, V)
        assert second == Answer(MOD, "text/plain; charset=utf-8", IMMUTABLE, "hit")
        assert r.upstream.calls == ["mod"]
        assert r.file(f"{ESC}/@v/{V}.mod").read_bytes() == MOD
        # Age does not matter for an immutable file.
        r.age(f"{ESC}/@v/{V}.mod", 10 * 365 * 86400)
        assert (await svc.mod(M, V)).cache == "hit"
        assert r.upstream.calls == ["mod"]

    with_rig(tmp_path, body)


def test_cache_keys_are_case_escaped_like_a_goproxy_tree(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        await r.service().mod("github.com/BurntSushi/toml", "v1.0.0")
        assert r.file("github.com/!burnt!sushi/toml/@v/v1.0.0.mod").is_file()

    with_rig(tmp_path, body)


def test_canonical_info_is_immutable_a_query_is_mutable(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service(mutable_ttl=120.0)
        canonical = await svc.info(M, V)
        assert canonical.lifetime == IMMUTABLE and canonical.content_type == "application/json"
        assert r.file(f"{ESC}/@v/{V}.info").read_bytes() == INFO
        assert not r.file(f"{ESC}/@v/{V}.info.json").exists()  # nothing verified: no sidecar
        query = await svc.info(M, "master")
        assert query.lifetime == Lifetime.fresh(120.0)
        assert query.cache == "miss"
        assert r.file(f"_gomirror/query/{ESC}/@v/master.info").read_bytes() == INFO
        again = await svc.info(M, "master")
        assert again.cache == "hit"
        assert again.lifetime.seconds is not None and 0 < again.lifetime.seconds <= 120.0
        assert r.upstream.calls == ["info", "info"]

    with_rig(tmp_path, body)


# --- mutable answers --------------------------------------------------------------------------


def test_list_is_fresh_for_mutable_ttl_then_refetched(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service(mutable_ttl=60.0)
        first = await svc.list(M)
        assert first.cache == "miss" and first.lifetime == Lifetime(60.0)
        hit = await svc.list(M)
        assert hit.cache == "hit"
        assert hit.lifetime.seconds is not None and 0 < hit.lifetime.seconds <= 60.0
        assert not hit.lifetime.stale
        r.age(f"{ESC}/@v/list", 50)
        aged = await svc.list(M)
        assert aged.cache == "hit"
        assert aged.lifetime.seconds is not None and aged.lifetime.seconds <= 10.0
        r.age(f"{ESC}/@v/list", 20)  # now 70 s old: stale
        r.upstream.bodies["list"] = b"v1.0.0\nv1.1.0\n"
        refreshed = await svc.list(M)
        assert refreshed.cache == "miss"
        assert refreshed.body == b"v1.0.0\nv1.1.0\n"
        assert r.file(f"{ESC}/@v/list").read_bytes() == b"v1.0.0\nv1.1.0\n"
        assert r.upstream.calls == ["list", "list"]
        assert (await svc.latest(M)).lifetime == Lifetime(60.0)

    with_rig(tmp_path, body)


@pytest.mark.parametrize(
    "failure",
    [
        UpstreamUnavailable("http://mirror.test/x: 503 Service Unavailable\n  more lines"),
        SumdbError("checksum database unreachable"),
    ],
    ids=["upstream-error", "verification-error"],
)
def test_stale_copy_is_served_when_every_upstream_fails(tmp_path: Path, failure: Exception) -> None:
    async def body(r: Rig) -> None:
        svc = r.service(mutable_ttl=60.0)
        await svc.list(M)
        r.age(f"{ESC}/@v/list", 3600)
        r.upstream.errors["list"] = failure
        got = await svc.list(M)
        assert got.body == b"v1.0.0\n"
        assert got.cache == "stale"
        assert got.lifetime == STALE and got.lifetime.stale
        assert got.stale_reason == str(failure).split("\n")[0]
        assert r.upstream.calls == ["list", "list"]

    with_rig(tmp_path, body)


def test_no_stale_copy_means_the_error_is_raised(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.upstream.errors["latest"] = UpstreamUnavailable("503")
        with pytest.raises(UpstreamUnavailable):
            await r.service().latest(M)

    with_rig(tmp_path, body)


def test_not_found_is_not_answered_from_a_stale_copy(tmp_path: Path) -> None:
    """A definite "not found" is an answer, not a failure: the stale copy is not served."""

    async def body(r: Rig) -> None:
        svc = r.service()
        await svc.list(M)
        r.age(f"{ESC}/@v/list", 3600)
        r.upstream.errors["list"] = NotFound("not found: gone from every mirror")
        with pytest.raises(NotFound):
            await svc.list(M)

    with_rig(tmp_path, body)


# --- negative cache ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["mod", "zip", "list", "info"])
def test_not_found_is_remembered_for_negative_ttl(tmp_path: Path, op: str) -> None:
    async def call(svc: Service) -> object:
        if op == "mod":
            return await svc.mod(M, V)
        if op == "zip":
            return await svc.zip(M, V)
        if op == "list":
            return await svc.list(M)
        return await svc.info(M, V)

    async def body(r: Rig) -> None:
        r.upstream.errors[op] = Gone(f"not found: {M}: withdrawn")
        svc = r.service(negative_ttl=30.0)
        for _ in range(3):
            with pytest.raises(Gone, match="withdrawn"):
                await call(svc)
        assert r.upstream.calls == [op]
        # Once the upstream has it, a fresh service (no memory) fetches it.
        del r.upstream.errors[op]
        await call(r.service())
        assert r.upstream.calls == [op, op]
        assert r.temp_files() == []

    with_rig(tmp_path, body)


def test_negative_ttl_zero_remembers_nothing(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.upstream.errors["mod"] = NotFound("not found")
        svc = r.service(negative_ttl=0)
        for _ in range(2):
            with pytest.raises(NotFound):
                await svc.mod(M, V)
        assert r.upstream.calls == ["mod", "mod"]

    with_rig(tmp_path, body)


def test_upstream_errors_are_not_remembered(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.upstream.errors["mod"] = UpstreamUnavailable("503")
        svc = r.service()
        with pytest.raises(UpstreamUnavailable):
            await svc.mod(M, V)
        del r.upstream.errors["mod"]
        assert (await svc.mod(M, V)).cache == "miss"

    with_rig(tmp_path, body)


# --- zips ------------------------------------------------------------------------------------


def test_zip_miss_then_hit_from_a_local_file(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service()
        first = await svc.zip(M, V)
        assert first.cache == "miss" and first.lifetime == IMMUTABLE
        assert first.content_type == "application/zip"
        assert first.size == len(ZIP_BYTES)
        assert first.path == r.file(f"{ESC}/@v/{V}.zip")
        assert first.chunks is None and first.body is None
        second = await svc.zip(M, V)
        assert second.cache == "hit" and second.path == first.path
        assert await read_all(second) == ZIP_BYTES
        assert r.upstream.calls == ["zip"]
        assert r.temp_files() == []

    with_rig(tmp_path, body)


def test_fifty_concurrent_zip_requests_cause_one_upstream_fetch(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service()
        r.upstream.gate = asyncio.Event()
        tasks = [asyncio.create_task(svc.zip(M, V)) for _ in range(50)]
        await r.upstream.entered.wait()
        # Hold the fetch until the other 49 have joined it (each yield lets them run).
        for _ in range(10_000):
            if r.coordinator.flights.shared >= 49:
                break
            await asyncio.sleep(0)
        assert r.coordinator.flights.shared == 49
        r.upstream.gate.set()
        answers = await asyncio.gather(*tasks)
        assert r.upstream.calls == ["zip"]
        assert {a.path for a in answers} == {r.file(f"{ESC}/@v/{V}.zip")}
        assert all(a.size == len(ZIP_BYTES) for a in answers)
        assert r.file(f"{ESC}/@v/{V}.zip").read_bytes() == ZIP_BYTES
        assert r.coordinator.in_flight() == 0

    with_rig(tmp_path, body)


def test_failed_zip_fetch_stores_nothing_and_leaves_no_temp_file(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        r.upstream.errors["zip"] = UpstreamUnavailable("connection reset")
        with pytest.raises(UpstreamError):
            await r.service().zip(M, V)
        assert not r.file(f"{ESC}/@v/{V}.zip").exists()
        assert not r.file(f"{ESC}/@v/{V}.zip.json").exists()
        assert r.temp_files() == []

    with_rig(tmp_path, body)


def test_sidecar_is_written_before_the_file_and_holds_the_facts(tmp_path: Path) -> None:
    holder: dict[str, Recording] = {}

    def wrap(disk: DiskStorage) -> Storage:
        holder["s"] = Recording(disk)
        return holder["s"]

    async def body(r: Rig) -> None:
        svc = r.service()
        await svc.zip(M, V)
        await svc.mod(M, V)
        zip_key, mod_key = f"{ESC}/@v/{V}.zip", f"{ESC}/@v/{V}.mod"
        assert holder["s"].writes == [zip_key + ".json", zip_key, mod_key + ".json", mod_key]
        meta = json.loads(r.file(zip_key + ".json").read_bytes())
        assert meta["h1"] == CHECKED.h1
        assert meta["upstream"] == "http://mirror.test"
        assert meta["verdict"] == CHECKED.verdict
        assert (meta["size"], meta["files"]) == (CHECKED.size, CHECKED.files)
        assert isinstance(meta["fetched"], float)
        mod_meta = json.loads(r.file(mod_key + ".json").read_bytes())
        assert mod_meta["h1"] == "h1:modhash=" and mod_meta["upstream"] == "http://mirror.test"
        assert "size" not in mod_meta

    with_rig(tmp_path, body, wrap)


def test_a_backend_without_local_files_serves_zips_as_a_stream(tmp_path: Path) -> None:
    big = os.urandom(3 * (256 << 10) + 12345)  # several STREAM_CHUNKs and a bit

    async def body(r: Rig) -> None:
        r.upstream.bodies["zip"] = big
        svc = r.service()
        for expect in ("miss", "hit"):
            got = await svc.zip(M, V)
            assert got.cache == expect
            assert got.path is None and got.body is None
            assert got.chunks is not None
            assert got.size == len(big)
            chunks = [c async for c in got.chunks]
            assert len(chunks) > 1
            assert max(len(c) for c in chunks) <= 256 << 10
            assert b"".join(chunks) == big
        assert r.upstream.calls == ["zip"]

    with_rig(tmp_path, body, NoLocalFiles)


def test_a_backend_that_only_returns_bytes_serves_the_body(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        got = await r.service().zip(M, V)
        assert got.path is None and got.chunks is None
        assert got.body == ZIP_BYTES and got.size == len(ZIP_BYTES)

    with_rig(tmp_path, body, BytesOnly)


def test_concurrent_misses_of_a_small_file_also_fetch_once(tmp_path: Path) -> None:
    async def body(r: Rig) -> None:
        svc = r.service()
        answers = await asyncio.gather(*(svc.mod(M, V) for _ in range(20)))
        assert r.upstream.calls == ["mod"]
        assert {a.body for a in answers} == {MOD}

    with_rig(tmp_path, body)
