"""Cold downloads over a slow link (with and without prediction), and failover time.

Usage: ``python bench/cold.py [--quick] [--runs N] [--modules N] [--latency S] [--no-failover]``

A synthetic dependency graph (default 30 modules, ``go 1.16`` go.mod files so the
whole graph is loaded; module i requires i+1 plus one random later module) is served
by an ``UpstreamSimulator`` that waits ``--latency`` (default 150 ms) before answering
every request. Each run uses a fresh go module cache and, for gomirror, a fresh
gomirror cache, and times ``go mod download -json all`` in a module requiring the root:

- ``direct``: the go command straight to the simulator (the reference);
- ``gomirror cold``: the go command through ``gomirror serve`` (upstream = simulator),
  with its default prediction (``predict = mod+info+zip``, ``gomirror.predict``);
- ``gomirror warm``: a second go client, same gomirror cache (no upstream traffic);
- ``gomirror cold, predict off``: the same with ``GOMIRROR_PREDICT=off``;
- ``dead|good``: gomirror whose first upstream refuses connections;
- ``hang|good``: gomirror whose first upstream accepts and never answers, with
  ``GOMIRROR_READ_TIMEOUT`` (default 1 s).

Runs alternate (direct, gomirror, predict off, dead, hang, direct, ...) and medians are
reported. The first direct run's upstream requests are printed in order (what the go
command asks, and when), and every run's upstream request count. Single-request failover
time (one cold ``.info`` through gomirror) is reported too. Exit status 1 when the
predicting gomirror's cold median is above ``TARGET`` times direct (issue 13's target).
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
from support.simulator import RecordedRequest, UpstreamSimulator

TARGET = 0.5  # cold through gomirror at most this times direct


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
        self.cold_requests = 0  # requests the good mirror got during the last cold run

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
        self.good.clear()
        return self.go_download(self._dir("direct"), self.good.url)

    def gomirror(
        self, label: str, upstream: str, warm_too: bool = False, predict: str = "mod+info+zip"
    ) -> tuple[float, float]:
        d = self._dir(label)
        self.good.clear()
        env = {"GOMIRROR_READ_TIMEOUT": str(self.read_timeout), "GOMIRROR_PREDICT": predict}
        gm = start_gomirror(d / "gm", upstream, d / "cache", env=env)
        try:
            cold = self.go_download(d / "go1", gm.url)
            self.cold_requests = self.good.count()
            warm = float("nan")
            if warm_too:
                self.good.clear()
                warm = self.go_download(d / "go2", gm.url)
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
    ap.add_argument(
        "--no-failover", action="store_true", help="skip the dead|good and hang|good scenarios"
    )
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
    upstream_requests: dict[str, list[int]] = {}
    order: list[RecordedRequest] = []

    def add(key: str, v: float, n: int | None = None) -> None:
        res.setdefault(key, []).append(v)
        n = b.good.count() if n is None else n
        upstream_requests.setdefault(key, []).append(n)
        print(f"  {key}: {v:.2f}s ({n} requests to the good mirror)")
        sys.stdout.flush()

    def direct() -> None:
        add("direct", b.direct())
        if not order:
            order.extend(b.good.requests)

    def via_gomirror() -> None:
        cold, warm = b.gomirror("gm", good, warm_too=True)
        add("gomirror cold", cold, b.cold_requests)
        add("gomirror warm", warm)

    try:
        scenarios: list[tuple[str, Callable[[], None]]] = [
            ("direct", direct),
            ("gomirror", via_gomirror),
            (
                "predict off",
                lambda: add(
                    "gomirror cold, predict off", b.gomirror("off", good, predict="off")[0]
                ),
            ),
        ]
        if not args.no_failover:
            scenarios += [
                ("dead", lambda: add("dead|good cold", b.gomirror("dead", f"{b.dead}|{good}")[0])),
                (
                    "hang",
                    lambda: add("hang|good cold", b.gomirror("hang", f"{b.hang.url}|{good}")[0]),
                ),
            ]
        for i in range(runs):
            print(f"round {i + 1}/{runs}")
            for _, fn in scenarios:
                fn()
        if not args.no_failover:
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
    direct_s = med["direct"]
    print()
    print_order(order)
    print()
    print(
        f"| scenario ({args.modules} modules, {args.latency * 1000:.0f} ms/request) "
        "| median s | runs | vs direct | requests to the mirror |"
    )
    print("|---|---|---|---|---|")
    keys = ["direct", "gomirror cold", "gomirror warm", "gomirror cold, predict off"]
    if not args.no_failover:
        keys += ["dead|good cold", "hang|good cold"]
    for k in keys:
        runs_text = ", ".join(f"{x:.2f}" for x in res[k])
        n = median([float(x) for x in upstream_requests[k]])
        print(f"| {k} | {med[k]:.2f} | {runs_text} | {med[k] / direct_s:.2f}x | {n:.0f} |")
    if not args.no_failover:
        print()
        print("| single cold .info | median s | failover cost |")
        print("|---|---|---|")
        for k in ("info good", "info dead|good", "info hang|good"):
            print(f"| {k} | {med[k]:.3f} | {med[k] - med['info good']:+.3f}s |")
    print(f"\nread timeout {args.read_timeout:g}s; runs {runs}; total {clock():.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": res, "median": med}))
    ratio = med["gomirror cold"] / direct_s
    met = ratio <= TARGET
    print(f"cold through gomirror (predict on): {ratio:.2f}x direct; target <= {TARGET}x: ", end="")
    print("met" if met else "NOT met")
    return 0 if met else 1


def print_order(reqs: list[RecordedRequest]) -> None:
    """What the go command asked the mirror, by phase: kind, count, first and last arrival."""
    if not reqs:
        return
    t0 = reqs[0].monotonic
    print("the go command's requests straight to the mirror (first direct run), in order:")
    phases: list[tuple[str, int, float, float]] = []
    for r in reqs:
        kind = r.path.rsplit(".", 1)[-1] if "/@v/" in r.path else r.path.rsplit("/", 1)[-1]
        t = r.monotonic - t0
        if phases and phases[-1][0] == kind:
            k, n, first, _ = phases[-1]
            phases[-1] = (k, n + 1, first, t)
        else:
            phases.append((kind, 1, t, t))
    for kind, n, first, last in phases:
        print(f"  {n:3d} x .{kind:<5} {first:6.2f}s .. {last:6.2f}s")


if __name__ == "__main__":
    sys.exit(main())
