"""A zip the cache cannot store is still answered: streamed from its held temp file, uncached.

The whole tree (``app.build`` + ``serve``) over a loopback simulator mirror; the
cache's writes fail with ``StorageFull`` (the storage's ``put_file``, or the
sidecar's ``put_bytes``), one variant also removing the temp file's name as a
failed rename does. Checked: every client, concurrent ones included, gets the
mirror's exact bytes with ``X-Gomirror-Cache: pass``; nothing is cached; the
temp file is gone and no descriptor of it stays open once answered; the
"cache full" counter counts it; and with space back the next request stores
it (``miss``) and the one after is a ``hit``. (A download that cannot even be
written to the temp file stays a ``507``: tests/test_service_hostile.py.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from gomirror import app
from gomirror.errors import StorageFull
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/diskfull/mod", "v1.0.0"
ZIP = f"/{M}/@v/{V}.zip"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n", "big.txt": os.urandom(600_000)})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror") as s:
        yield s


def held_temp_files() -> list[str]:
    """Descriptors of this process that point at a (deleted) download temp file."""
    out = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if "_gomirror/tmp/" in target and not target.endswith("/.owner"):  # the dir's own lock
            out.append(target)
    return out


def temp_files(cache: Path) -> list[Path]:
    """Download temp files left (each process's directory holds a hidden owner file too)."""
    tmp = cache / "_gomirror" / "tmp"
    return [p for p in tmp.rglob("*") if p.is_file() and not p.name.startswith(".")]


@pytest.mark.parametrize("failing", ["put_file", "put_file_removing_the_name", "sidecar"])
def test_a_verified_zip_the_cache_cannot_store_is_streamed_through(
    sim: UpstreamSimulator,
    corpus: Corpus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    cache = tmp_path / "c"

    async def main() -> None:
        cfg = quiet_config(cache, sim.url, monitor="false")
        async with app.build(cfg) as parts, app.serve(parts) as port:

            async def full_file(key: str, src: Path) -> None:
                if failing == "put_file_removing_the_name":
                    await asyncio.to_thread(src.unlink)  # what a failed rename into place does
                raise StorageFull(f"cache full (no space left) while writing {key}")

            real_put_bytes = parts.disk.put_bytes

            async def full_sidecar(key: str, data: bytes) -> None:
                if key.endswith(".zip.json"):
                    raise StorageFull(f"cache full (no space left) while writing {key}")
                await real_put_bytes(key, data)

            if failing == "sidecar":
                monkeypatch.setattr(parts.disk, "put_bytes", full_sidecar)
            else:
                monkeypatch.setattr(parts.disk, "put_file", full_file)
            url = f"http://127.0.0.1:{port}{ZIP}"
            async with aiohttp.ClientSession() as client:

                async def get() -> tuple[int, str, bytes]:
                    async with client.get(url) as r:
                        return r.status, r.headers.get("X-Gomirror-Cache", ""), await r.read()

                answers = [await get()]
                answers += await asyncio.gather(*(get() for _ in range(6)))
                for status, cache_result, body in answers:
                    assert status == 200
                    assert cache_result == "pass"
                    assert body == corpus[M, V].zip
                assert await parts.storage.stat(f"{M}/@v/{V}.zip") is None  # nothing cached
                assert temp_files(cache) == []
                assert held_temp_files() == []  # every held descriptor was closed
                counted = parts.metrics.registry.get_sample_value(
                    "gomirror_cache_full_total", {"op": "zip"}
                ) or parts.metrics.registry.get_sample_value(
                    "gomirror_cache_full_total", {"op": "file"}
                )
                assert counted is not None and counted >= 1
                fetched_while_full = sim.count("*.zip")

                monkeypatch.undo()  # space is back
                again = [await get(), await get()]
            assert [(s, c) for s, c, _ in again] == [(200, "miss"), (200, "hit")]
            assert all(b == corpus[M, V].zip for _, _, b in again)
            assert sim.count("*.zip") == fetched_while_full + 1

    asyncio.run(main())


def test_a_head_request_for_a_passed_through_zip_releases_the_held_file(
    sim: UpstreamSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        cfg = quiet_config(tmp_path / "c", sim.url, monitor="false")
        async with app.build(cfg) as parts, app.serve(parts) as port:

            async def full(key: str, src: Path) -> None:
                raise StorageFull(f"cache full (no space left) while writing {key}")

            monkeypatch.setattr(parts.disk, "put_file", full)
            async with (
                aiohttp.ClientSession() as client,
                client.head(f"http://127.0.0.1:{port}{ZIP}") as r,
            ):
                assert r.status == 200
            assert held_temp_files() == []

    asyncio.run(main())
