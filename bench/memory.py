"""Memory under load: 200 concurrent clients downloading 20 MB zips, RSS of every gomirror process sampled.

Usage: ``python bench/memory.py [--clients N] [--workers N] [--runs N]``

1. Build 2 incompressible modules with ~20 MB zips, warm gomirror's cache through an
   ``UpstreamSimulator``, stop the simulator (every answer is a cache hit).
2. Against ``gomirror serve --workers N --upstream off`` (fast path on, and then off):
   - *fast readers*: N clients (default 200) at once, each on its own connection,
     download a 20 MB zip to the end (reading 256 KiB at a time);
   - *slow readers*: N clients at once start the download and read 64 KiB every
     50 ms (about 1.3 MB/s each) for 3 s, then hang up.
   While they run, the RSS (``VmRSS``) of the parent and of every worker is sampled
   every 20 ms.
3. Report the peak RSS per process, the bytes each client received, and exit 1 when
   any process went over 150 MB, or a download was short.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import Stopwatch, machine_summary, median, start_gomirror
from support.corpus import Corpus
from support.simulator import UpstreamSimulator

LIMIT_MB = 150.0
ZIP_BYTES = 20 << 20


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def processes(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        kids = []
    return [pid, *(int(k) for k in kids)]


async def sample(pids: list[int], peaks: dict[int, float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for pid in pids:
            peaks[pid] = max(peaks.get(pid, 0.0), rss_mb(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.02)  # the sampling period
        except TimeoutError:
            pass


async def download(port: int, path: str, *, slow: bool) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    got = 0
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:"))
            .split(b":")[1]
            .strip()
        )
        ends = time.monotonic() + 3.0
        while got < length:
            chunk = await reader.read(64 << 10 if slow else 256 << 10)
            if not chunk:
                break
            got += len(chunk)
            if slow:
                if time.monotonic() > ends:
                    break
                await asyncio.sleep(0.05)  # the client's reading pace, not a synchronisation
    finally:
        writer.close()
    return got


async def phase(
    port: int, pids: list[int], paths: list[str], clients: int, slow: bool
) -> tuple[dict[int, float], list[int], float]:
    peaks: dict[int, float] = {}
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(pids, peaks, stop))
    started = time.monotonic()
    sizes = await asyncio.gather(
        *(download(port, paths[i % len(paths)], slow=slow) for i in range(clients))
    )
    seconds = time.monotonic() - started
    stop.set()
    await sampler
    return peaks, list(sizes), seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1, help="repetitions of each phase")
    args = ap.parse_args()
    clock = Stopwatch()
    print("\n".join(machine_summary({})))
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-memory-"))
    corpus = Corpus()
    escaped = [
        corpus.synthetic_module(f"example.com/mem/m{i}", "v1.0.0", ZIP_BYTES, 8, seed=i).escaped
        for i in range(2)
    ]
    paths = [f"/{p}/@v/{v}.zip" for p, v in escaped]
    cache = tmp / "cache"
    with UpstreamSimulator(corpus) as sim:
        warmer = start_gomirror(tmp / "warm", sim.url, cache)
        try:
            for p in paths:
                status, _, body = warmer.get(p, timeout=120)
                assert status == 200 and len(body) > ZIP_BYTES, (p, status)
        finally:
            warmer.stop()
    print(f"warmed in {clock():.1f}s")
    rows: list[tuple[str, str, dict[int, float], float, int, int]] = []
    failed = False
    for fast in ("true", "false"):
        gm = start_gomirror(
            tmp / f"gm-{fast}", "off", cache, workers=args.workers, env={"GOMIRROR_FAST_PATH": fast}
        )
        assert gm.proc is not None
        try:
            time.sleep(0.5) if args.workers > 1 else None  # let the workers fork before sampling
            pids = processes(gm.proc.pid)
            idle = {pid: rss_mb(pid) for pid in pids}
            print(f"fast_path={fast}: idle RSS MB {[round(v, 1) for v in idle.values()]}")
            for _ in range(args.runs):
                for slow in (False, True):
                    peaks, sizes, seconds = asyncio.run(
                        phase(gm.port, pids, paths, args.clients, slow)
                    )
                    kind = "slow readers" if slow else "fast readers"
                    short = sum(1 for s in sizes if s < ZIP_BYTES) if not slow else 0
                    rows.append((fast, kind, peaks, seconds, short, sum(sizes)))
                    worst = max(peaks.values())
                    failed |= worst >= LIMIT_MB or short > 0
                    print(
                        f"  {kind}: {args.clients} clients, {sum(sizes) / 1e6:,.0f} MB in "
                        f"{seconds:.1f}s; peak RSS MB per process "
                        f"{[round(peaks[p], 1) for p in pids]}; short downloads {short}"
                    )
        finally:
            gm.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(
        "| fast_path | clients | workload | MB received | seconds | peak RSS per process (MB) | max | target | met |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for fast, kind, peaks, seconds, short, total in rows:
        worst = max(peaks.values())
        per = ", ".join(f"{v:.0f}" for v in peaks.values())
        ok = worst < LIMIT_MB and short == 0
        print(
            f"| {fast} | {args.clients} | {kind} | {total / 1e6:,.0f} | {seconds:.1f} | {per} | "
            f"{worst:.0f} | < {LIMIT_MB:g} | {'yes' if ok else '**no**'} |"
        )
    print(
        f"\nmedian of the per-phase maxima: {median([max(r[2].values()) for r in rows]):.0f} MB; total {clock():.0f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
