"""Start-up with a big cache: time to the first ``/healthz`` 200, and proof that nothing scans the cache.

Usage: ``python bench/startup.py [--files N] [--runs N] [--workers N]``

1. Build a disk cache of N files (default 100,000) laid out as gomirror writes it: for
   each of N/5 modules under 500 owners (``github.com/ownerNNN/repoNNNNN``) its
   ``@v/list``, ``.info``, ``.mod``, ``.zip`` and the zip's ``.json`` sidecar.
2. Start ``gomirror serve --upstream off`` on it (and, alternately, on an empty cache)
   through a small launcher that installs a Python audit hook counting every
   directory listing (``os.scandir``/``os.listdir``) each process makes under the cache
   directory, outside ``_gomirror/``. Time from ``exec`` to the first ``/healthz`` 200,
   then check one cached ``.info`` is served, then stop the server.
3. Report medians of N runs per cache; exit 1 when the big cache takes 2 s or more,
   or when any process listed a directory of the module tree while starting.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, Stopwatch, machine_summary, median
from support.ports import free_port

TARGET_SECONDS = 2.0
OWNERS = 500

# Runs in each server process (the hook survives fork): counts listings under the cache.
LAUNCHER = r"""
import atexit, json, os, runpy, sys
cache = os.path.realpath(sys.argv[1]) + os.sep
out = sys.argv[2]
seen = []
def hook(event, args):
    if event in ("os.scandir", "os.listdir") and args and args[0] is not None:
        try:
            p = os.path.realpath(os.fsdecode(args[0])) + os.sep
        except (TypeError, ValueError):
            return
        if p.startswith(cache) and not p[len(cache):].startswith("_gomirror" + os.sep):
            seen.append(p[len(cache):])
def dump():
    with open(f"{out}.{os.getpid()}", "w") as f:
        json.dump(seen, f)
atexit.register(dump)
sys.addaudithook(hook)
import signal
signal.signal(signal.SIGUSR1, lambda *_: dump())  # the hook was installed before the fork
sys.argv = ["gomirror", *sys.argv[3:]]
runpy.run_module("gomirror.cli.main", run_name="__main__")
"""


def build_cache(root: Path, files: int) -> str:
    """Write the cache; return the path of one cached ``.info`` to fetch."""
    modules = max(1, files // 5)
    info = '{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}'
    first = ""
    for i in range(modules):
        d = root / f"github.com/owner{i % OWNERS:03d}/repo{i:05d}/@v"
        d.mkdir(parents=True, exist_ok=True)
        (d / "list").write_text("v1.0.0\n")
        (d / "v1.0.0.info").write_text(info)
        (d / "v1.0.0.mod").write_text(f"module github.com/owner{i % OWNERS:03d}/repo{i:05d}\n")
        (d / "v1.0.0.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
        (d / "v1.0.0.zip.json").write_text('{"upstream": "bench"}')
        if not first:
            first = f"/github.com/owner000/repo{i:05d}/@v/v1.0.0.info"
    return first


def start_once(
    cache: Path, tmp: Path, workers: int, probe: str
) -> tuple[float, dict[int, list[str]]]:
    port = free_port()
    counts = tmp / f"listings-{port}"
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOMIRROR_")}
    env.update(HOME=str(home), GOMIRROR_ACCESS_LOG="false")
    cmd = [sys.executable, "-c", LAUNCHER, str(cache), str(counts)]
    cmd += ["serve", "--listen", f"127.0.0.1:{port}", "--cache-dir", str(cache)]
    cmd += ["--upstream", "off", "--sumdb", "off", "--log-level", "warning"]
    cmd += ["--workers", str(workers)]
    log = open(tmp / f"server-{port}.log", "wb")  # noqa: SIM115 - owned by the child
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=str(ROOT))
    log.close()
    seconds = float("nan")
    try:
        deadline = started + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError((tmp / f"server-{port}.log").read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        seconds = time.monotonic() - started
                        break
            except OSError:
                time.sleep(0.005)  # readiness polling: the thing being timed
        if probe:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=10) as r:
                assert r.status == 200 and b"v1.0.0" in r.read()
    finally:
        # Every process writes what it listed (the hook's SIGUSR1), then the group stops.
        pids = [proc.pid, *children(proc.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
        wait_for_files(tmp, f"listings-{port}.", len(pids))
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"  (stopped in {time.monotonic() - stopping:.2f}s)")
    listings: dict[int, list[str]] = {}
    for f in tmp.glob(f"listings-{port}.*"):
        listings[int(f.suffix[1:])] = json.loads(f.read_text())
    return seconds, listings


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def wait_for_files(tmp: Path, prefix: str, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(list(tmp.glob(prefix + "*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the processes' reports, with a deadline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    clock = Stopwatch()
    print("\n".join(machine_summary({})))
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-startup-"))
    big, empty = tmp / "big", tmp / "empty"
    probe = build_cache(big, args.files)
    empty.mkdir()
    n = 5 * max(1, args.files // 5)
    print(f"cache of {n:,} files built in {clock():.1f}s")
    times: dict[str, list[float]] = {"empty": [], "big": []}
    scanned: list[str] = []
    try:
        for _ in range(args.runs):
            for name, cache in (("empty", empty), ("big", big)):
                seconds, listings = start_once(
                    cache, tmp, args.workers, probe if name == "big" else ""
                )
                times[name].append(seconds)
                module_tree = [p for ps in listings.values() for p in ps]
                if name == "big":
                    scanned += module_tree
                print(
                    f"{name:>5}: first /healthz 200 after {seconds:.3f}s; processes "
                    f"{len(listings)}; module-tree listings {len(module_tree)}"
                )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| cache | files | workers | runs (s) | median s | target | module-tree listings |")
    print("|---|---|---|---|---|---|---|")
    for name in ("empty", "big"):
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        files = f"{n:,}" if name == "big" else "0"
        target = f"< {TARGET_SECONDS:g} s" if name == "big" else ""
        lst = str(len(scanned)) if name == "big" else ""
        print(
            f"| {name} | {files} | {args.workers} | {runs} | {median(times[name]):.2f} | {target} | {lst} |"
        )
    print(f"\ntotal {clock():.0f}s")
    ok = median(times["big"]) < TARGET_SECONDS and not scanned
    if scanned:
        print(
            f"start-up listed {len(scanned)} module-tree directories, e.g. {scanned[:5]}",
            file=sys.stderr,
        )
    if not ok:
        print("target missed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
