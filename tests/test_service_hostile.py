"""Tests for the whole tree (``app.build``) against hostile mirrors and a full disk.

Mirrors are ``UpstreamSimulator`` instances on loopback whose faults serve
broken content; the checksum database is off, so content checks alone decide.
Checked here, end to end through router, chain, observer, verifier and
``HttpUpstream``:

- bad content from a mirror (a ``.info`` nested 200,000 levels deep, broken
  JSON) always means "try the next mirror", after ``|`` and after ``,``;
- a bad answer is remembered for ``bad_answer_ttl`` seconds: thousands of
  requests cost one upstream fetch and one stored event (with a count), and
  the HTTP answer is the same 502 each time; a stale copy is still served;
- a full disk (the download written to ``/dev/full``, or a storage whose
  writes fail with ``StorageFull``) is a clear 507 "cache full" for a zip,
  an uncached answer for a small file, a counter and one log line per
  window, and recovers by itself when space returns.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror import app
from gomirror.config import Config
from gomirror.errors import InvalidContent, StorageFull
from gomirror.monitor.events import EVENTS_PREFIX
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/svchostile/mod", "v1.0.0"
BASE = f"/{M}/@v/{V}"
DEEP = b"[" * 200_000 + b"]" * 200_000
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def sim_a(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="a") as s:
        yield s


@pytest.fixture
def sim_b(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="b") as s:
        yield s


def config(cache_dir: Path, upstream: str, **more: Any) -> Config:
    return quiet_config(cache_dir, upstream, **{"monitor": "false", **more})


async def event_docs(parts: app.Parts) -> list[str]:
    return [k async for k in parts.storage.keys(EVENTS_PREFIX)]


# --- bad content falls through ------------------------------------------------------------


@pytest.mark.parametrize("sep", ["|", ","])
def test_a_deeply_nested_info_from_one_mirror_means_asking_the_next(
    sim_a: UpstreamSimulator, sim_b: UpstreamSimulator, corpus: Corpus, tmp_path: Path, sep: str
) -> None:
    sim_a.add_fault("*.info", replace_body=DEEP)

    async def main() -> bytes:
        async with app.build(config(tmp_path / "c", sim_a.url + sep + sim_b.url)) as parts:
            return (await parts.service.info(M, V)).body

    assert run(main()) == corpus[M, V].info
    assert sim_a.count("*.info") == 1 and sim_b.count("*.info") == 1


def test_deep_json_from_every_mirror_is_a_502_not_a_500(
    sim_a: UpstreamSimulator, sim_b: UpstreamSimulator, tmp_path: Path
) -> None:
    sim_a.add_query(M, "master", V)
    for sim in (sim_a, sim_b):
        sim.add_fault("*.info", replace_body=DEEP)
        sim.add_fault("*@latest", replace_body=DEEP)

    async def main() -> list[tuple[int, str]]:
        cfg = config(tmp_path / "c", sim_a.url + "|" + sim_b.url)
        out = []
        async with (
            app.build(cfg) as parts,
            app.serve(parts) as port,
            aiohttp.ClientSession() as client,
        ):
            for path in (BASE + ".info", f"/{M}/@latest", f"/{M}/@v/master.info"):
                async with client.get(f"http://127.0.0.1:{port}{path}") as r:
                    out.append((r.status, await r.text()))
        return out

    for status, text in run(main()):
        assert status == 502, text
        assert "invalid content" in text and "nested too deeply" in text


# --- bad answers are remembered -----------------------------------------------------------


def test_a_bad_answer_is_remembered_and_repeated_without_refetching(
    sim_a: UpstreamSimulator, tmp_path: Path
) -> None:
    sim_a.add_fault("*.info", replace_body=b'{"Version": broken')

    async def main() -> tuple[list[str], int]:
        async with app.build(config(tmp_path / "c", sim_a.url, bad_answer_ttl="60")) as parts:
            messages: list[str] = []

            async def one() -> None:
                with pytest.raises(InvalidContent) as info:
                    await parts.service.info(M, V)
                messages.append(str(info.value))

            await one()
            await asyncio.gather(*(one() for _ in range(2999)))
            return messages, len(await event_docs(parts))

    messages, docs = run(main())
    assert sim_a.count("*.info") == 1
    assert len(set(messages)) == 1 and "invalid .info JSON" in messages[0]
    assert docs == 1


def test_the_http_answer_for_a_remembered_bad_answer_is_the_same_502(
    sim_a: UpstreamSimulator, tmp_path: Path
) -> None:
    sim_a.add_fault("*.mod", replace_body=b"this is not a go.mod\n")

    async def main() -> list[tuple[int, str]]:
        out = []
        async with (
            app.build(config(tmp_path / "c", sim_a.url)) as parts,
            app.serve(parts) as port,
            aiohttp.ClientSession() as client,
        ):
            for _ in range(20):
                async with client.get(f"http://127.0.0.1:{port}{BASE}.mod") as r:
                    out.append((r.status, await r.text()))
        return out

    answers = run(main())
    assert len(set(answers)) == 1
    assert answers[0][0] == 502
    assert sim_a.count("*.mod") == 1


def test_bad_answer_ttl_zero_remembers_nothing(sim_a: UpstreamSimulator, tmp_path: Path) -> None:
    sim_a.add_fault("*.info", replace_body=b"{}")

    async def main() -> None:
        async with app.build(config(tmp_path / "c", sim_a.url, bad_answer_ttl="0")) as parts:
            for _ in range(3):
                with pytest.raises(InvalidContent):
                    await parts.service.info(M, V)

    run(main())
    assert sim_a.count("*.info") == 3


def test_a_remembered_bad_answer_still_gets_the_stale_copy(
    sim_a: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    async def main() -> list[tuple[str, bytes]]:
        cfg = config(tmp_path / "c", sim_a.url, mutable_ttl="0", bad_answer_ttl="60")
        async with app.build(cfg) as parts:
            first = await parts.service.latest(M)
            sim_a.add_fault("*@latest", replace_body=b"[[[")
            later = [await parts.service.latest(M) for _ in range(5)]
            return [(a.cache, a.body) for a in (first, *later)]

    got = run(main())
    good = corpus[M, V].info
    assert got[0] == ("miss", good)
    assert got[1:] == [("stale", good)] * 5
    assert sim_a.count("*@latest") == 2  # the good answer, then one bad one


# --- a full disk --------------------------------------------------------------------------


def full_disk_temp(tmp_path: Path) -> Callable[[], Path]:
    """New temp paths whose download attempts (``<path>.<n>``) all write to /dev/full."""
    made = [0]

    def new() -> Path:
        made[0] += 1
        d = tmp_path / f"fulltmp{made[0]}"
        d.mkdir()
        for n in range(8):
            (d / f"dl.zip.{n}").symlink_to("/dev/full")
        return d / "dl.zip"

    return new


def cache_full_count(parts: app.Parts, op: str) -> float:
    v = parts.metrics.registry.get_sample_value("gomirror_cache_full_total", {"op": op})
    return v or 0.0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_disk_full_while_a_zip_downloads_is_a_clear_507_and_recovers(
    sim_a: UpstreamSimulator,
    sim_b: UpstreamSimulator,
    corpus: Corpus,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    full = full_disk_temp(tmp_path)

    async def main() -> tuple[list[tuple[int, str]], float, bytes]:
        cfg = config(tmp_path / "c", sim_a.url + "|" + sim_b.url)
        async with app.build(cfg) as parts, app.serve(parts) as port:
            normal = parts.service._new_tmp
            parts.service._new_tmp = full
            out = []
            async with aiohttp.ClientSession() as client:
                for _ in range(5):
                    async with client.get(f"http://127.0.0.1:{port}{BASE}.zip") as r:
                        out.append((r.status, await r.text()))
                counted = cache_full_count(parts, "zip")
                parts.service._new_tmp = normal  # space is back
                async with client.get(f"http://127.0.0.1:{port}{BASE}.zip") as r:
                    assert r.status == 200
                    body = await r.read()
            return out, counted, body

    with caplog.at_level(logging.WARNING):
        answers, counted, body = run(main())
    for status, text in answers:
        assert status == 507
        assert text.startswith("cache full: no space left in the cache")
        assert f"{M}@{V}.zip" in text
    assert counted == 5
    full_lines = [r for r in caplog.records if r.getMessage() == "cache full"]
    assert len(full_lines) == 1
    assert sim_b.count("*.zip") == 0  # our disk failed, not mirror A: B is not blamed or asked
    assert body == corpus[M, V].zip


def test_disk_full_still_answers_small_files_uncached(
    sim_a: UpstreamSimulator,
    corpus: Corpus,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> list[tuple[str, bytes]]:
        async with app.build(config(tmp_path / "c", sim_a.url)) as parts:

            async def full(key: str, data: bytes) -> None:
                raise StorageFull(f"cache full (no space left) while writing {key}")

            monkeypatch.setattr(parts.disk, "put_bytes", full)
            answers = [
                await parts.service.mod(M, V),
                await parts.service.info(M, V),
                await parts.service.list(M),
                await parts.service.mod(M, V),  # not kept: fetched again
            ]
            assert cache_full_count(parts, "file") == 4
            monkeypatch.undo()
            answers.append(await parts.service.mod(M, V))
            answers.append(await parts.service.mod(M, V))
            return [(a.cache, a.body) for a in answers]

    got = run(main())
    mv = corpus[M, V]
    assert got[0] == ("pass", mv.mod)
    assert got[1] == ("pass", mv.info)
    assert got[2][0] == "pass"
    assert got[3] == ("pass", mv.mod)
    assert got[4] == ("miss", mv.mod) and got[5] == ("hit", mv.mod)
