"""Cold downloads over a slow link, and failover time with the first mirror dead or hanging.

Usage: ``python bench/cold.py [--quick] [--runs N] [--modules N] [--latency S]``

A synthetic dependency graph (default 30 modules, ``go 1.16`` go.mod files so the
whole graph is loaded; module i requires i+1 plus one random later module) is served
by an ``UpstreamSimulator`` that waits ``--latency`` (default 150 ms) before answering
every request. Each run uses a fresh go module cache and, for gomirror, a fresh
gomirror cache, and times ``go mod download -json all`` in a module requiring the root:

- ``direct``: the go command straight to the simulator (the reference);
- ``gomirror cold``: the go command through ``gomirror serve`` (upstream = simulator);
- ``gomirror warm``: a second go client, same gomirror cache (no upstream traffic);
- ``dead|good``: gomirror whose first upstream refuses connections;
- ``hang|good``: gomirror whose first upstream accepts and never answers, with
  ``GOMIRROR_READ_TIMEOUT`` (default 1 s).

Runs alternate (direct, gomirror, dead, hang, direct, ...) and medians are reported.
Single-request failover time (one cold ``.info`` through gomirror) is reported too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import Stopwatch, graph_corpus, machine_summary, median, require_tools, start_gomirror
from support.corpus import Corpus
from support.gorunner import GoRunner
from support.ports import free_port
from support.simulator import UpstreamSimulator


class Bench:
    def __init__(self, tmp: Path, corpus: Corpus, root: str, latency: float, read_timeout: float):
        self.tmp = tmp
        self.root = root
        self.read_timeout = read_timeout
        self.good = UpstreamSimulator(corpus, name="good").start()
        self.good.add_fault("*", latency=latency)
        self.hang = UpstreamSimulator(corpus, name="hang").start()
        self.hang.add_fault("*", hang=True)
        self.dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
        self.n = 0

    def close(self) -> None:
        self.good.stop()
        self.hang.stop()

    def _dir(self, label: str) -> Path:
        self.n += 1
        d = self.tmp / f"{self.n:03d}-{label}"
        d.mkdir(parents=True)
        return d

    def go_download(self, d: Path, proxy: str) -> float:
        go = GoRunner(d, proxy)
        work = d / "app"
        go.init_module(work, "example.com/app", go_version="1.16", requires={self.root: "v1.0.0"})
        t0 = time.monotonic()
        go.run("mod", "download", "-json", "all", cwd=work, timeout=600)
        return time.monotonic() - t0

    def direct(self) -> float:
        return self.go_download(self._dir("direct"), self.good.url)

    def gomirror(self, label: str, upstream: str, warm_too: bool = False) -> tuple[float, float]:
        d = self._dir(label)
        env = {"GOMIRROR_READ_TIMEOUT": str(self.read_timeout)}
        gm = start_gomirror(d / "gm", upstream, d / "cache", env=env)
        try:
            cold = self.go_download(d / "go1", gm.url)
            warm = self.go_download(d / "go2", gm.url) if warm_too else float("nan")
        finally:
            gm.stop()
        return cold, warm

    def one_info(self, label: str, upstream: str) -> float:
        """Seconds for one cold ``.info`` request through a fresh gomirror."""
        d = self._dir(label)
        env = {"GOMIRROR_READ_TIMEOUT": str(self.read_timeout)}
        gm = start_gomirror(d / "gm", upstream, d / "cache", env=env)
        try:
            t0 = time.monotonic()
            with urllib.request.urlopen(f"{gm.url}/{self.root}/@v/v1.0.0.info", timeout=60) as r:
                r.read()
            return time.monotonic() - t0
        finally:
            gm.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run per scenario")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    ap.add_argument("--modules", type=int, default=30, help="modules in the graph")
    ap.add_argument("--latency", type=float, default=0.150, help="simulator latency (s)")
    ap.add_argument("--read-timeout", type=float, default=1.0, help="gomirror read timeout (s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    tools = require_tools("go")
    clock = Stopwatch()
    print("\n".join(machine_summary(tools)))
    corpus, paths = graph_corpus(args.modules)
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-cold-"))
    print(f"graph: {args.modules} modules, latency {args.latency * 1000:.0f} ms/request; tmp {tmp}")
    b = Bench(tmp, corpus, paths[0], args.latency, args.read_timeout)
    good = b.good.url
    res: dict[str, list[float]] = {}

    def add(key: str, v: float) -> None:
        res.setdefault(key, []).append(v)
        print(f"  {key}: {v:.2f}s")
        sys.stdout.flush()

    def via_gomirror() -> None:
        cold, warm = b.gomirror("gm", good, warm_too=True)
        add("gomirror cold", cold)
        add("gomirror warm", warm)

    try:
        scenarios: list[tuple[str, Callable[[], None]]] = [
            ("direct", lambda: add("direct", b.direct())),
            ("gomirror", lambda: via_gomirror()),
            ("dead", lambda: add("dead|good cold", b.gomirror("dead", f"{b.dead}|{good}")[0])),
            ("hang", lambda: add("hang|good cold", b.gomirror("hang", f"{b.hang.url}|{good}")[0])),
        ]
        for i in range(runs):
            print(f"round {i + 1}/{runs}")
            for _, fn in scenarios:
                fn()
        print("single cold .info request through gomirror:")
        for _ in range(runs):
            add("info good", b.one_info("i-good", good))
            add("info dead|good", b.one_info("i-dead", f"{b.dead}|{good}"))
            add("info hang|good", b.one_info("i-hang", f"{b.hang.url}|{good}"))
    finally:
        b.close()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: median(v) for k, v in res.items()}
    direct = med["direct"]
    print()
    print(
        f"| scenario ({args.modules} modules, {args.latency * 1000:.0f} ms/request) | median s | runs | vs direct |"
    )
    print("|---|---|---|---|")
    for k in ("direct", "gomirror cold", "gomirror warm", "dead|good cold", "hang|good cold"):
        print(
            f"| {k} | {med[k]:.2f} | {', '.join(f'{x:.2f}' for x in res[k])} | {med[k] / direct:.2f}x |"
        )
    print()
    print("| single cold .info | median s | failover cost |")
    print("|---|---|---|")
    for k in ("info good", "info dead|good", "info hang|good"):
        print(f"| {k} | {med[k]:.3f} | {med[k] - med['info good']:+.3f}s |")
    print(f"\nread timeout {args.read_timeout:g}s; runs {runs}; total {clock():.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": res, "median": med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
