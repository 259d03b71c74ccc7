"""test_crash_safety ``kill -9``s a ``gomirror serve`` process again and again under cold downloads.

A simulator mirror serves twelve modules whose zips (256 KiB, incompressible)
are throttled to 256 KiB/s, and a test checksum database knows their hashes.
Eight times, a fresh ``gomirror serve`` starts on the same cache directory,
a few concurrent aiohttp clients ask for modules nobody has fetched completely
(``.info``, ``.mod`` and ``.zip`` at once), and once a temp file under
``_gomirror/tmp`` has grown past a threshold that differs per round the
process gets ``SIGKILL``: the kill lands mid-download, at a different point
each time. The conditions are polled with deadlines, never slept on.

Then a last process starts and the test checks that every answer any client
received in full, every file served now, and every ``.mod``/``.zip`` in the
cache equals the mirror's bytes; that no temp file older than the last kill
remains under ``_gomirror/tmp`` (the live process's own directory aside); and,
after a clean stop, that ``gomirror verify`` finds the cache clean (exit 0).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from hardening.kit import Figures, wait_until
from support.corpus import Corpus
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

MODULES = [f"example.com/crash/m{i:02d}" for i in range(12)]
V = "v1.0.0"
ZIP_SIZE = 256 << 10
BANDWIDTH = 256 << 10  # bytes/s: a zip takes about a second
KILLS = 8
PER_ROUND = 3  # modules asked for at once in a round


@dataclass
class Received:
    """Full answers the clients got (path → body), across every round."""

    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, body: bytes) -> None:
        with self.lock:
            self.bodies.setdefault(path, []).append(body)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus()
    for m in MODULES:
        c.synthetic_module(m, V, ZIP_SIZE, n_files=2)
    return c


@pytest.fixture
def db(corpus: Corpus) -> Iterator[TestSumdb]:
    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    with TestSumdb(source=source) as d:
        yield d


def files_of(mv_path: str) -> list[str]:
    return [f"/{mv_path}/@v/{V}.{ext}" for ext in ("info", "mod", "zip")]


def expected(corpus: Corpus, path: str) -> bytes:
    m = re.fullmatch(r"/(.+)/@v/(v[^/]+)\.(info|mod|zip)", path)
    assert m is not None, path
    mv = corpus[m.group(1), m.group(2)]
    return {"info": mv.info, "mod": mv.mod or b"", "zip": mv.zip}[m.group(3)]


def temp_files(cache: Path) -> list[Path]:
    base = cache / "_gomirror" / "tmp"
    if not base.exists():
        return []
    return [p for p in base.rglob("*") if p.is_file() and p.name != ".owner"]


def clients(url: str, paths: list[str], got: Received) -> threading.Thread:
    """Ask for every path at once in a background thread; keep only complete answers."""

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def one(path: str) -> None:
                try:
                    async with session.get(url + path) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            got.add(path, body)
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass  # the server was killed under this request

            await asyncio.gather(*(one(p) for p in paths))

    t = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    t.start()
    return t


def cached(cache: Path, module: str) -> bool:
    return (cache / module / "@v" / f"{V}.zip").exists()


def test_kill_9_under_cold_downloads_leaves_a_clean_cache(
    tmp_path: Path, corpus: Corpus, db: TestSumdb, figures: Figures
) -> None:
    cache = tmp_path / "cache"
    spec = f"{db.verifier_key} {db.url}"
    got = Received()
    orphans_seen = 0
    last_kill = 0.0
    with UpstreamSimulator(corpus, name="mirror") as sim:
        sim.add_fault(re.compile(r"\.zip$"), bandwidth=BANDWIDTH)
        for round_ in range(KILLS):
            run = tmp_path / f"run{round_}"
            run.mkdir()
            proc = GomirrorProcess(run, upstream=sim.url, cache_dir=cache, sumdb=spec).start()
            cold = [m for m in MODULES if not cached(cache, m)]
            if len(cold) < PER_ROUND:
                cold += MODULES  # everything cached already: ask again (hits), kill anyway
            start = (round_ * PER_ROUND) % len(cold)
            chosen = (cold[start:] + cold[:start])[:PER_ROUND]
            paths = [p for m in chosen for p in files_of(m)]
            before = {str(p) for p in temp_files(cache)}
            thread = clients(proc.url, paths, got)
            threshold = (round_ % 4 + 1) * ZIP_SIZE // 6  # the kill lands at a different point

            def mid_download(before: set[str] = before, threshold: int = threshold) -> bool:
                for p in temp_files(cache):
                    try:
                        if str(p) not in before and p.stat().st_size >= threshold:
                            return True
                    except FileNotFoundError:
                        pass
                return False

            wait_until(mid_download, 30, f"round {round_}: a download in progress")
            last_kill = time.time()
            proc.kill9()
            thread.join(60)
            assert not thread.is_alive(), "a client did not notice the kill"
            orphans_seen = max(orphans_seen, len(temp_files(cache)))

        # A new process: dead processes' temp files must be gone once it accepts connections.
        sim.clear_faults()
        final_dir = tmp_path / "final"
        final_dir.mkdir()
        final = GomirrorProcess(final_dir, upstream=sim.url, cache_dir=cache, sumdb=spec).start()
        try:
            assert final.proc is not None
            live = f"-{final.proc.pid}-"
            stale = [
                p
                for p in temp_files(cache)
                if live not in str(p.relative_to(cache)) and p.stat().st_mtime < last_kill
            ]
            assert not stale, f"temp files of killed processes remain: {stale[:5]}"
            for m in MODULES:
                for path in files_of(m):
                    status, _, body = final.get(path, timeout=60)
                    assert status == 200, (path, status, body[:200])
                    assert body == expected(corpus, path), f"{path}: served bytes differ"
        finally:
            final.stop()

    for path, bodies in got.bodies.items():
        for body in bodies:
            assert body == expected(corpus, path), f"{path}: a client received bad bytes"
    on_disk = 0
    for p in cache.rglob("*"):
        rel = p.relative_to(cache).as_posix()
        if rel.startswith("_gomirror/") or not p.is_file() or not re.search(r"\.(mod|zip)$", rel):
            continue
        assert p.read_bytes() == expected(corpus, "/" + rel), f"cached {rel} differs"
        on_disk += 1
    assert on_disk == 2 * len(MODULES)

    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomirror.cli.main",
            "verify",
            "--cache-dir",
            str(cache),
            "--sumdb",
            spec,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    figures.put("crash safety: kill -9 survived", KILLS)
    figures.put("crash safety: most temp files left by a kill", orphans_seen)
    figures.put("crash safety: full answers checked", sum(len(b) for b in got.bodies.values()))
