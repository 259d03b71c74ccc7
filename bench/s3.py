"""S3 storage: warm hits from an S3 API server vs disk, and upstream fetches saved by Redis single-flight.

Usage: ``python bench/s3.py [--quick] [--runs N] [--duration S] [--concurrency C] [--part P]``

Part 1, warm hits (same files, one run, alternating):
1. Corpus: 100 small modules (``.info``/``.mod``) and 8 modules with ~1 MB zips.
   A disk gomirror caches every file once from an ``UpstreamSimulator``; then
   ``gomirror.tools.replicate`` copies that cache into a bucket of moto's S3 API
   server (its own process, over HTTP), re-checking every hash (its time is
   reported too). The simulator is stopped: every later request is a hit.
2. Four gomirror instances with ``--upstream off``: ``disk`` (the cache
   directory), ``s3`` (default 32 MiB read-through cache for small immutable
   objects), ``s3-nocache`` (``s3_read_cache_bytes = 0``: every hit is a round
   trip to the store) and ``s3-redirect`` (``redirect_min_size = 1``: zips are
   answered ``302`` to a presigned URL, and the client follows it to moto).
3. After one warm-up request for every file at every instance, an aiohttp client
   keeps C requests in flight for S seconds per cell, against
   each instance in turn, N times; workloads ``mod`` (random ``.mod``) and
   ``zip1M`` (random 1 MB zip). Medians; ratios against ``disk``.

Part 2, upstream fetches saved by cross-instance single-flight: 3 instances on
one bucket (fresh prefix per mode), the simulator answering zips after 0.5 s;
30 clients at once ask for the same 10 missing zips, each zip at every
instance. Counted: zip requests the simulator received, with ``redis_url``
(one Redis, ``redis-server`` from Debian) and without (each instance
coordinates only its own requests).

moto is a Python server (werkzeug, threads): every S3 number here is a floor
for what a real object store does, not a prediction for AWS; the client,
moto and gomirror share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from common import ROOT, machine_summary, median, require_tools, start_gomirror

sys.path.insert(0, str(ROOT / "tests"))
from coordination.redisserver import RedisServer
from gomirror.storage.disk import DiskStorage
from gomirror.storage.s3 import S3Settings, S3Storage
from gomirror.tools.replicate import replicate
from storage.s3server import S3Endpoint, S3Server
from support.corpus import Corpus, escape_path
from support.simulator import UpstreamSimulator

N_SMALL = 100
N_ZIP = 8
ZIP_SIZE = 1 << 20
BUCKET = "bench"
INSTANCES = ("disk", "s3", "s3-nocache", "s3-redirect")
SF_INSTANCES, SF_CLIENTS, SF_ZIPS, SF_LATENCY = 3, 30, 10, 0.5


def s3_env(s3: S3Endpoint, prefix: str, **extra: str) -> dict[str, str]:
    env = {
        "GOMIRROR_STORAGE": "s3",
        "GOMIRROR_S3_ENDPOINT": s3.url,
        "GOMIRROR_S3_BUCKET": BUCKET,
        "GOMIRROR_S3_PREFIX": prefix,
        "GOMIRROR_S3_REGION": s3.region,
        "GOMIRROR_S3_ACCESS_KEY": s3.access_key,
        "GOMIRROR_S3_SECRET_KEY": s3.secret_key,
        "GOMIRROR_S3_ADDRESSING": "path",
    }
    env.update(extra)
    return env


def s3_storage(s3: S3Endpoint, prefix: str) -> S3Storage:
    return S3Storage(
        S3Settings(
            bucket=BUCKET,
            prefix=prefix,
            endpoint=s3.url,
            region=s3.region,
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            addressing="path",
        )
    )


def warm_corpus() -> tuple[Corpus, list[str], list[str]]:
    corpus = Corpus()
    mods, zips = [], []
    for i in range(N_SMALL):
        path = f"example.com/small/m{i:03d}"
        corpus.add_module(path, "v1.0.0", {"a.go": f"package m{i:03d}\n".encode()})
        mods.append(f"/{path}/@v/v1.0.0.mod")
    for i in range(N_ZIP):
        path = f"example.com/zip/z{i}"
        corpus.synthetic_module(path, "v1.0.0", ZIP_SIZE, n_files=2)
        zips.append(f"/{path}/@v/v1.0.0.zip")
    return corpus, mods, zips


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        data: bytes = resp.read()
        return data


async def load(
    base: str, paths: list[str], concurrency: int, seconds: float
) -> tuple[float, float]:
    """(requests/s, MB/s) with ``concurrency`` requests in flight for ``seconds`` (redirects followed)."""
    rng = random.Random(1)
    done, nbytes = 0, 0
    conn = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=conn) as session:
        end = time.monotonic() + seconds

        async def client() -> None:
            nonlocal done, nbytes
            while time.monotonic() < end:
                async with session.get(base + rng.choice(paths)) as resp:
                    body = await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{resp.url}: HTTP {resp.status}")
                done += 1
                nbytes += len(body)

        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.monotonic() - start
    return done / elapsed, nbytes / elapsed / 1e6


async def fetch_all(base: str, paths: list[str], in_flight: int = 8) -> None:
    """GET every path once (a warm-up: the read cache and the connections are filled first)."""
    sem = asyncio.Semaphore(in_flight)
    async with aiohttp.ClientSession() as session:

        async def one(p: str) -> None:
            async with sem, session.get(base + p) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{resp.url}: HTTP {resp.status}")

        await asyncio.gather(*map(one, paths))


def part_warm(tmp: Path, s3: S3Endpoint, args: argparse.Namespace) -> list[str]:
    corpus, mods, zips = warm_corpus()
    cache = tmp / "disk-cache"
    with UpstreamSimulator(corpus) as sim:
        filler = start_gomirror(tmp / "filler", sim.url, cache)
        try:
            for p in mods + zips:
                fetch(filler.url + p)
                if p.endswith(".mod"):
                    fetch(filler.url + p.removesuffix(".mod") + ".info")
        finally:
            filler.stop()

    async def copy() -> tuple[int, float]:
        disk, bucket = DiskStorage(cache), s3_storage(s3, "warm/")
        try:
            report = await replicate(disk, bucket, new_temp=disk.new_temp_path)
        finally:
            await disk.close()
            await bucket.close()
        if report.exit_code:
            raise RuntimeError(f"replicate failed: {report.summary()}")
        return report.count("copied"), report.seconds

    copied, copy_s = asyncio.run(copy())
    procs = {
        "disk": start_gomirror(tmp / "i-disk", "off", cache),
        "s3": start_gomirror(tmp / "i-s3", "off", tmp / "c-s3", env=s3_env(s3, "warm/")),
        "s3-nocache": start_gomirror(
            tmp / "i-s3n",
            "off",
            tmp / "c-s3n",
            env=s3_env(s3, "warm/", GOMIRROR_S3_READ_CACHE_BYTES="0"),
        ),
        "s3-redirect": start_gomirror(
            tmp / "i-s3r",
            "off",
            tmp / "c-s3r",
            env=s3_env(s3, "warm/", GOMIRROR_REDIRECT_MIN_SIZE="1"),
        ),
    }
    try:
        for name, proc in procs.items():  # same bytes from every instance
            for p in (mods[0], zips[0]):
                assert fetch(proc.url + p) == fetch(procs["disk"].url + p), (name, p)
        for proc in procs.values():
            asyncio.run(fetch_all(proc.url, mods + zips))
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):
            for workload, paths in (("mod", mods), ("zip1M", zips)):
                for name in INSTANCES:
                    r = asyncio.run(load(procs[name].url, paths, args.concurrency, args.duration))
                    results.setdefault((workload, name), []).append(r)
                    print(
                        f"  {workload:6} {name:12} {r[0]:8.0f} req/s {r[1]:8.1f} MB/s", flush=True
                    )
    finally:
        for proc in procs.values():
            proc.stop()
    lines = [
        f"replicate disk -> S3 (moto): {copied} files in {copy_s:.1f} s, every h1: re-checked",
        "",
        "| workload | instance | req/s | MB/s | vs disk (req/s) |",
        "|---|---|---|---|---|",
    ]
    for workload in ("mod", "zip1M"):
        base = median([r[0] for r in results[(workload, "disk")]])
        for name in INSTANCES:
            rs = results[(workload, name)]
            rps, mbs = median([r[0] for r in rs]), median([r[1] for r in rs])
            lines.append(f"| {workload} | {name} | {rps:.0f} | {mbs:.1f} | {rps / base:.2f} |")
    return lines


def part_single_flight(tmp: Path, s3: S3Endpoint) -> list[str]:
    corpus = Corpus()
    paths = []
    for i in range(SF_ZIPS):
        path = f"example.com/miss/z{i}"
        corpus.synthetic_module(path, "v1.0.0", 200_000)
        paths.append(f"/{escape_path(path)}/@v/v1.0.0.zip")
    lines = [
        "| coordination | instances | clients | distinct zips | upstream zip fetches"
        " | clients answered 200 | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    with UpstreamSimulator(corpus) as sim, RedisServer(tmp / "redis") as redis:
        sim.add_fault("*.zip", latency=SF_LATENCY)
        for mode in ("redis", "local"):
            sim.clear()
            extra = {"GOMIRROR_REDIS_URL": redis.url} if mode == "redis" else {}
            procs = [
                start_gomirror(
                    tmp / f"sf-{mode}-{i}",
                    sim.url,
                    tmp / f"sf-{mode}-{i}-cache",
                    env=s3_env(s3, f"sf-{mode}/", **extra),
                )
                for i in range(SF_INSTANCES)
            ]
            try:

                async def burst(procs: list[Any] = procs) -> tuple[float, list[str]]:
                    errors: list[str] = []
                    async with aiohttp.ClientSession() as session:

                        async def one(j: int) -> None:
                            url = procs[j % SF_INSTANCES].url + paths[(j // SF_INSTANCES) % SF_ZIPS]
                            async with session.get(url) as resp:
                                body = await resp.read()
                                if resp.status != 200:
                                    text = body[:200].decode(errors="replace")
                                    errors.append(f"{resp.status} {text}")

                        start = time.monotonic()
                        await asyncio.gather(*(one(j) for j in range(SF_CLIENTS)))
                        return time.monotonic() - start, errors

                wall, errors = asyncio.run(burst())
            finally:
                for proc in procs:
                    proc.stop()
            for e in sorted(set(errors)):
                print(f"    error: {e!r}", flush=True)
            fetched = sim.count("*.zip")
            print(
                f"  single-flight {mode}: {fetched} upstream zip fetches, {len(errors)} errors,"
                f" {wall:.1f} s",
                flush=True,
            )
            lines.append(
                f"| {mode} | {SF_INSTANCES} | {SF_CLIENTS} | {SF_ZIPS} | {fetched}"
                f" | {SF_CLIENTS - len(errors)} | {wall:.1f} |"
            )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 run of 2 s per cell")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--part", choices=("all", "warm", "single-flight"), default="all")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.duration = 1, 2.0
    tools = require_tools("redis-server")
    with tempfile.TemporaryDirectory(prefix="gomirror-bench-s3-") as d:
        tmp = Path(d)
        server = S3Server.start(tmp / "moto")
        try:
            req = urllib.request.Request(f"{server.endpoint.url}/{BUCKET}", method="PUT")
            with urllib.request.urlopen(req, timeout=10):
                pass
            warm: list[str] = []
            sf: list[str] = []
            if args.part in ("all", "warm"):
                print("warm hits:", flush=True)
                warm = part_warm(tmp, server.endpoint, args)
            if args.part in ("all", "single-flight"):
                print("single-flight:", flush=True)
                sf = part_single_flight(tmp, server.endpoint)
        finally:
            server.stop()
    print()
    for line in machine_summary(tools):
        print(line)
    print(f"runs: {args.runs} x {args.duration:.0f} s per cell, {args.concurrency} in flight\n")
    for line in [*warm, "", *sf]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
