"""s3_memory: a 500 MB zip from S3 storage through 20 concurrent clients, gomirror's RSS sampled.

Usage: ``python bench/s3_memory.py [--size-mb N] [--clients N] [--limit-mb N]``

1. moto's S3 API server (its own process, over HTTP; ``tests/storage/s3server.py``)
   and one incompressible module whose zip holds ``--size-mb`` (default 500) MB of
   data, just under the go command's 500 MiB limit for a module zip.
2. *fill*: a gomirror with ``storage = "s3"`` fetches the zip once from an
   ``UpstreamSimulator``, verifies it and stores it the way the service does
   (a multipart upload from its temp file, the sidecar first); its RSS is
   sampled while it does.
3. *serve*: the simulator is stopped and a fresh gomirror (``--upstream off``,
   same bucket, default settings: no redirect) serves ``--clients`` (default 20)
   concurrent clients, each on its own connection, downloading the whole zip
   and checking its size and SHA-256. Its RSS (``VmRSS``, psutil-free:
   ``/proc/<pid>/status``) is sampled every 50 ms.
4. Report the peak RSS of each phase, bytes, seconds and MB/s; exit 1 when a
   peak reaches ``--limit-mb`` (default 200) or a download was short or wrong.

moto is a Python server on the same 2 cores: it is the bottleneck (tens of
MB/s), so the full run takes minutes; ``--size-mb 50 --clients 4`` for a
quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from common import ROOT, Stopwatch, machine_summary, start_gomirror

sys.path.insert(0, str(ROOT / "tests"))
from storage.s3server import S3Endpoint, S3Server
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

SAMPLE_EVERY = 0.05
READ_CHUNK = 256 << 10
MODULE = "example.com/big/blob"
VERSION = "v1.0.0"


def s3_env(s3: S3Endpoint, prefix: str) -> dict[str, str]:
    return {
        "GOMIRROR_STORAGE": "s3",
        "GOMIRROR_S3_ENDPOINT": s3.url,
        "GOMIRROR_S3_BUCKET": s3.bucket,
        "GOMIRROR_S3_PREFIX": prefix,
        "GOMIRROR_S3_REGION": s3.region,
        "GOMIRROR_S3_ACCESS_KEY": s3.access_key,
        "GOMIRROR_S3_SECRET_KEY": s3.secret_key,
        "GOMIRROR_S3_ADDRESSING": "path",
        "GOMIRROR_MONITOR": "false",
        "GOMIRROR_PREDICT": "off",
    }


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def sample(pid: int, peak: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)  # the sampling period
        except TimeoutError:
            pass
    peak[0] = max(peak[0], rss_mb(pid))


async def download(session: aiohttp.ClientSession, url: str) -> tuple[int, int, str]:
    """(status, bytes, sha256 hex) of one whole download."""
    digest = hashlib.sha256()
    got = 0
    headers = {"User-Agent": "Go-http-client/1.1"}
    # No redirects: the bytes must flow through gomirror for its RSS to mean anything.
    async with session.get(url, headers=headers, allow_redirects=False) as resp:
        async for chunk in resp.content.iter_chunked(READ_CHUNK):
            digest.update(chunk)
            got += len(chunk)
        return resp.status, got, digest.hexdigest()


async def serve_phase(
    pid: int, url: str, clients: int
) -> tuple[float, list[tuple[int, int, str]], float]:
    peak = [0.0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(pid, peak, stop))
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    # One connection per client: limit=0 lifts aiohttp's pool limit.
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            results = await asyncio.gather(*(download(session, url) for _ in range(clients)))
    finally:
        stop.set()
        await sampler
    return peak[0], list(results), time.monotonic() - started


async def fill_phase(pid: int, url: str) -> tuple[float, tuple[int, int, str], float]:
    peak = [0.0]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(pid, peak, stop))
    started = time.monotonic()
    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            result = await download(session, url)
    finally:
        stop.set()
        await sampler
    return peak[0], result, time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=500, help="zip data in MB (10^6 bytes)")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--limit-mb", type=float, default=200.0, help="RSS target")
    args = ap.parse_args()
    clock = Stopwatch()
    print("\n".join(machine_summary({})), flush=True)
    corpus = Corpus()
    mv = corpus.synthetic_module(MODULE, VERSION, args.size_mb * 1_000_000, n_files=8)
    size, sha = len(mv.zip), hashlib.sha256(mv.zip).hexdigest()
    path = f"/{MODULE}/@v/{VERSION}.zip"
    print(f"module zip: {size / 1e6:,.1f} MB built in {clock():.1f}s", flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="gomirror-bench-s3mem-") as d:
        tmp = Path(d)
        server = S3Server.start(tmp / "moto")
        try:
            env = s3_env(server.endpoint, "mem/")
            with UpstreamSimulator(corpus) as sim:
                filler = start_gomirror(tmp / "fill", sim.url, tmp / "fill-cache", env=env)
                try:
                    assert filler.proc is not None
                    fill_peak, (status, got, digest), fill_s = asyncio.run(
                        fill_phase(filler.proc.pid, filler.url + path)
                    )
                finally:
                    filler.stop()
            del corpus, mv  # the simulator is gone: only the digest is needed now
            fill_ok = status == 200 and got == size and digest == sha
            failed |= not fill_ok or fill_peak >= args.limit_mb
            print(
                f"fill (upstream -> verify -> S3 multipart): {got / 1e6:,.1f} MB in {fill_s:.1f}s,"
                f" peak RSS {fill_peak:.0f} MB, {'ok' if fill_ok else f'BAD (HTTP {status})'}",
                flush=True,
            )
            gm = start_gomirror(tmp / "serve", "off", tmp / "serve-cache", env=env)
            try:
                assert gm.proc is not None
                idle = rss_mb(gm.proc.pid)
                peak, results, seconds = asyncio.run(
                    serve_phase(gm.proc.pid, gm.url + path, args.clients)
                )
            finally:
                gm.stop()
        finally:
            server.stop()
    bad = [r for r in results if r != (200, size, sha)]
    total = sum(r[1] for r in results)
    failed |= bool(bad) or peak >= args.limit_mb
    for r in bad[:5]:
        print(f"  bad download: HTTP {r[0]}, {r[1]:,} bytes, sha256 {r[2][:16]}", flush=True)
    print(
        f"serve: {args.clients} clients, {total / 1e6:,.0f} MB in {seconds:.1f}s"
        f" ({total / 1e6 / seconds:.1f} MB/s); idle RSS {idle:.0f} MB, peak RSS {peak:.0f} MB;"
        f" {len(bad)} bad downloads",
        flush=True,
    )
    print()
    print("| phase | zip MB | clients | MB moved | seconds | peak RSS MB | target | met |")
    print("|---|---|---|---|---|---|---|---|")
    target = f"< {args.limit_mb:g}"
    print(
        f"| fill (upstream → S3) | {size / 1e6:.0f} | 1 | {size / 1e6:.0f} | {fill_s:.1f}"
        f" | {fill_peak:.0f} | {target} | {'yes' if fill_ok and fill_peak < args.limit_mb else '**no**'} |"
    )
    print(
        f"| serve (S3 → clients) | {size / 1e6:.0f} | {args.clients} | {total / 1e6:,.0f}"
        f" | {seconds:.1f} | {peak:.0f} | {target} | {'yes' if not bad and peak < args.limit_mb else '**no**'} |"
    )
    print(f"\ntotal {clock():.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
