"""Tests for app: ``build(config)`` wires the whole tree, closes it in reverse, checks cache_dir; ``serve``.

The upstream is an ``UpstreamSimulator`` on loopback and the checksum database
is off (``sumdb = "off"``), so the whole tree (router, chain, observed,
verified, HTTP mirror, storage, coordinator, service) runs for real without a
database; verification itself is tested under tests/sumdb and tests/upstream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from gomirror import app
from gomirror.config import Config
from gomirror.errors import ConfigError, NotFound
from gomirror.upstream.chain import Chain
from gomirror.upstream.router import Router
from support.appconfig import quiet_config
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

M, V = "example.com/app/mod", "v1.0.0"
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    c.add_module(M, V, {"a.go": b"package mod\n"})
    return c


@pytest.fixture
def sim(corpus: Corpus) -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(corpus, name="mirror") as s:
        yield s


def config(cache_dir: Path, upstream: str, **more: Any) -> Config:
    return quiet_config(cache_dir, upstream, **more)


def process_temp_dirs(cache_dir: Path) -> list[Path]:
    base = cache_dir / "_gomirror" / "tmp"
    return sorted(p for p in base.iterdir() if p.is_dir()) if base.exists() else []


def test_build_wires_the_whole_tree_and_fetches_through_it(
    sim: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    mv = corpus[M, V]

    async def main() -> app.Parts:
        async with app.build(config(cache, sim.url, policy="hedged")) as parts:
            assert isinstance(parts.upstream, Router)
            assert [c.name for c in parts.chains] == ["public"]
            assert parts.chains[0].names == [sim.url]
            assert parts.chains[0].policy.name == "hedged"
            assert parts.sumdb is None  # database off: no pass-through
            mod = await parts.service.mod(M, V)
            assert (mod.body, mod.cache) == (mv.mod, "miss")
            z = await parts.service.zip(M, V)
            assert z.path is not None and z.path.read_bytes() == mv.zip
            assert (await parts.service.zip(M, V)).cache == "hit"
            with pytest.raises(NotFound):
                await parts.service.mod("example.com/missing", V)
            # The chain's health record is the one the observer wrote.
            h = parts.health.get(sim.url)
            assert h.requests == 3 and h.state == "healthy"
            meta = json.loads((cache / f"{M}/@v/{V}.zip.json").read_bytes())
            assert meta["upstream"] == sim.url and meta["h1"] == mv.h1
            assert meta["verdict"]["verified"] is False  # sumdb off: skipped, and says so
            assert not parts.session.closed
            assert parts.disk.temp_dir().is_dir()
            return parts

    parts = run(main())
    assert parts.session.closed
    assert not parts.disk.temp_dir().exists()
    assert process_temp_dirs(cache) == []
    assert sim.count(f"/{M}/@v/{V}.zip") == 1


def test_leaving_build_with_an_error_still_closes_everything(
    sim: UpstreamSimulator, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    seen: list[app.Parts] = []

    async def main() -> None:
        async with app.build(config(cache, sim.url)) as parts:
            seen.append(parts)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(main())
    assert seen[0].session.closed
    assert process_temp_dirs(cache) == []


def test_a_failing_step_closes_what_was_already_made(
    sim: UpstreamSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    sessions: list[aiohttp.ClientSession] = []
    real_session = aiohttp.ClientSession

    def recording_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        s = real_session(*args, **kwargs)
        sessions.append(s)
        return s

    def broken_service(**kwargs: Any) -> Any:
        raise RuntimeError("service cannot start")

    monkeypatch.setattr(aiohttp, "ClientSession", recording_session)  # the module app uses
    monkeypatch.setattr(app, "Service", broken_service)

    async def main() -> None:
        async with app.build(config(cache, sim.url)):
            raise AssertionError("not reached")

    with pytest.raises(RuntimeError, match="service cannot start"):
        run(main())
    assert len(sessions) == 1 and sessions[0].closed
    assert process_temp_dirs(cache) == []


def test_private_modules_get_their_own_chain(sim: UpstreamSimulator, tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path / "cache", f"{sim.url},direct", private="corp.example")
        async with app.build(cfg) as parts:
            assert [c.name for c in parts.chains] == ["public", "private"]
            public, private = parts.chains
            assert isinstance(parts.upstream, Router)
            assert parts.upstream.route("corp.example/x") is private
            assert parts.upstream.route("example.com/x") is public
            assert private.names == ["direct"]
            assert [lk.is_direct for lk in public.links] == [False, True]
            # direct is one upstream shared by both chains (one pool of git processes).
            assert private.links[0].upstream is public.links[1].upstream

    run(main())


@pytest.mark.parametrize("how", ["below-a-file", "is-a-file", "tmp-is-a-file"])
def test_an_unusable_cache_dir_is_a_config_error_naming_cache_dir(tmp_path: Path, how: str) -> None:
    # Tests run as root, so permissions cannot make a directory unwritable; a regular
    # file where a directory must be is what stops gomirror here.
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    if how == "below-a-file":
        cache = blocker / "cache"
    elif how == "is-a-file":
        cache = blocker
    else:
        cache = tmp_path / "cache"
        (cache / "_gomirror").mkdir(parents=True)
        (cache / "_gomirror" / "tmp").write_text("in the way")
    cfg = config(cache, "http://127.0.0.1:9")

    async def main() -> None:
        async with app.build(cfg):
            raise AssertionError("not reached")

    with pytest.raises(ConfigError) as info:
        run(main())
    text = str(info.value)
    assert text.startswith("invalid setting cache_dir:")
    assert "\n" not in text  # one line, no traceback
    with pytest.raises(ConfigError, match="cache_dir"):
        app.preflight(cfg)


def test_serve_answers_healthz_and_module_files_on_the_bound_port(
    sim: UpstreamSimulator, corpus: Corpus, tmp_path: Path
) -> None:
    async def main() -> int:
        async with app.build(config(tmp_path / "cache", sim.url)) as parts:
            async with app.serve(parts) as port, aiohttp.ClientSession() as client:
                assert port != 0
                base = f"http://127.0.0.1:{port}"
                async with client.get(base + "/healthz") as resp:
                    assert resp.status == 200
                    assert (await resp.text()).strip() == "ok"
                async with client.get(f"{base}/{M}/@v/{V}.mod") as resp:
                    assert resp.status == 200
                    assert await resp.read() == corpus[M, V].mod
                async with client.get(f"{base}/{M}/@v/v9.9.9.mod") as resp:
                    assert resp.status == 404
            # serve has stopped: nothing listens on the port any more.
            async with aiohttp.ClientSession() as client:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await client.get(f"http://127.0.0.1:{port}/healthz")
            return port

    run(main())


def test_listen_on_a_taken_port_is_a_config_error(tmp_path: Path) -> None:
    sock = app.listen_socket("127.0.0.1", 0, reuse_port=False)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(
            ConfigError, match=f"invalid setting listen: cannot listen on 127.0.0.1:{port}"
        ):
            app.listen_socket("127.0.0.1", port, reuse_port=False).close()
    finally:
        sock.close()


def test_chains_are_the_ones_in_the_router(sim: UpstreamSimulator, tmp_path: Path) -> None:
    async def main() -> None:
        async with app.build(config(tmp_path / "cache", f"{sim.url}|off")) as parts:
            assert isinstance(parts.upstream, Router)
            assert parts.upstream.public is parts.chains[0]
            assert isinstance(parts.chains[0], Chain)
            assert parts.chains[0].names == [sim.url, "off"]
            assert parts.chains[0].policy.name == "go"

    run(main())
