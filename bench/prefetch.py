"""Prefetch benchmark: warming a cache with ``gomirror prefetch`` before ``go mod download`` vs downloading straight from the mirror.

Usage: ``python bench/prefetch.py [--quick] [--runs N] [--modules N] [--latency S] [--jobs N]``

A synthetic dependency graph (default 40 modules, ``go 1.16`` go.mod files so
the whole graph is loaded; ``bench.common.graph_corpus``) is served by an
``UpstreamSimulator`` that waits ``--latency`` (default 150 ms) before
answering every request, the slow link. A project ``example.com/app``
requires the graph's root. Each run uses fresh caches and times:

- ``direct`` (a): ``go mod download -json all`` in the project with
  ``GOPROXY`` = the simulator (the go command straight to the mirror);
- ``prefetch + download`` (b): ``gomirror prefetch DIR --cache-dir C
  --upstream SIM`` (the whole graph, ``--jobs`` at a time), then ``go mod
  download -json all`` from a ``gomirror serve`` on cache ``C`` (started
  between the two steps and not timed: a team server or a CI cache is
  running already). Its upstream is the simulator too, so anything the
  prefetch missed would still work, and be counted.

The project carries the ``go.sum`` a real project commits (made once, not
timed, from ``go mod download -json all``'s sums), in both (a) and (b):
prefetch reads every version from it at once instead of walking the graph
``.mod`` by ``.mod``, which is where its time goes on a slow link; the go
command still walks it.

Runs alternate (a, b, a, b...), medians are reported, with the prefetch and
download parts of (b) and the upstream requests of each. Exit status 1 when
the median ratio b/a is not below ``TARGET`` (issue 10's target), 2 when the
go command is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import graph_corpus, machine_summary, median, require_tools, start_gomirror
from support.gorunner import GoRunner
from support.simulator import UpstreamSimulator

TARGET = 0.5  # prefetch + warm download must take less than this times direct
APP = "example.com/app"


class Bench:
    def __init__(self, tmp: Path, sim: UpstreamSimulator, root: str, jobs: int) -> None:
        self.tmp, self.sim, self.root, self.jobs = tmp, sim, root, jobs
        self.n = 0
        self.inner: list[float] = []  # prefetch's own time, as it reports it
        self.go_sum: bytes | None = None  # the project's go.sum, as a real project commits it

    def make_go_sum(self) -> None:
        """Run the go command once (not timed) for the go.sum a real project would have."""
        d = self._dir("setup")
        go, work = self.project(d, self.sim.url)
        lines = []
        for m in go.mod_download_json("all", cwd=work, timeout=600):
            if m.get("Sum"):
                lines.append(f"{m['Path']} {m['Version']} {m['Sum']}\n")
            if m.get("GoModSum"):
                lines.append(f"{m['Path']} {m['Version']}/go.mod {m['GoModSum']}\n")
        self.go_sum = "".join(sorted(lines)).encode()

    def _dir(self, label: str) -> Path:
        self.n += 1
        d = self.tmp / f"{self.n:03d}-{label}"
        d.mkdir(parents=True)
        return d

    def project(self, d: Path, proxy: str) -> tuple[GoRunner, Path]:
        go = GoRunner(d / "go", proxy)
        work = d / "app"
        go.init_module(work, APP, go_version="1.16", requires={self.root: "v1.0.0"})
        if self.go_sum is not None:
            (work / "go.sum").write_bytes(self.go_sum)
        return go, work

    def direct(self) -> tuple[float, int]:
        d = self._dir("direct")
        go, work = self.project(d, self.sim.url)
        self.sim.clear()
        t0 = time.monotonic()
        go.run("mod", "download", "-json", "all", cwd=work, timeout=600)
        return time.monotonic() - t0, self.sim.count()

    def prefetched(self) -> tuple[float, float, int, int]:
        """(prefetch s, download s, upstream requests of each)."""
        d = self._dir("prefetch")
        cache = d / "cache"
        _, work = self.project(d, "off")
        self.sim.clear()
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "gomirror.cli.main", "prefetch", str(work), "--json"]
        cmd += ["--cache-dir", str(cache), "--upstream", self.sim.url, "--sumdb", "off"]
        proc = subprocess.run(
            [*cmd, "--jobs", str(self.jobs)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        warm_s = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"prefetch failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        summary = json.loads(proc.stdout)
        self.inner.append(float(summary["seconds"]))  # without the process's start-up
        warm_n = self.sim.count()
        gm = start_gomirror(d / "gm", self.sim.url, cache, env={"GOMIRROR_PREDICT": "off"})
        try:
            go, work = self.project(d / "client", gm.url)
            self.sim.clear()
            t0 = time.monotonic()
            go.run("mod", "download", "-json", "all", cwd=work, timeout=600)
            down_s = time.monotonic() - t0
        finally:
            gm.stop()
        if self.n <= 2:
            counts = {k: v for k, v in summary.items() if isinstance(v, int)}
            print(f"  prefetch summary: {counts}")
        return warm_s, down_s, warm_n, self.sim.count()


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run per scenario")
    ap.add_argument("--runs", type=int, default=None, help="runs per scenario (default 3)")
    ap.add_argument("--modules", type=int, default=40, help="modules in the graph (30+)")
    ap.add_argument("--latency", type=float, default=0.150, help="simulator latency (s)")
    ap.add_argument("--jobs", type=int, default=32, help="gomirror prefetch --jobs")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    tools = require_tools("go")
    print("\n".join(machine_summary(tools)))
    corpus, paths = graph_corpus(args.modules)
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-prefetch-"))
    print(f"graph: {args.modules} modules, latency {args.latency * 1000:.0f} ms/request; tmp {tmp}")
    sim = UpstreamSimulator(corpus, name="slow").start()
    sim.add_fault("*", latency=args.latency)
    b = Bench(tmp, sim, paths[0], args.jobs)
    b.make_go_sum()
    assert b.go_sum is not None
    print(f"project go.sum: {len(b.go_sum.splitlines())} lines")
    direct: list[float] = []
    warm: list[float] = []
    down: list[float] = []
    total: list[float] = []
    requests: dict[str, list[int]] = {"direct": [], "prefetch": [], "download": []}
    try:
        for i in range(runs):
            print(f"round {i + 1}/{runs}")
            a, n = b.direct()
            direct.append(a)
            requests["direct"].append(n)
            print(f"  direct: {a:.2f}s ({n} requests to the mirror)")
            w, dl, wn, dn = b.prefetched()
            warm.append(w)
            down.append(dl)
            total.append(w + dl)
            requests["prefetch"].append(wn)
            requests["download"].append(dn)
            print(f"  prefetch {w:.2f}s ({wn} requests) + download {dl:.2f}s ({dn} requests)")
            sys.stdout.flush()
    finally:
        sim.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    med_a, med_b = median(direct), median(total)
    ratio = med_b / med_a
    print()
    print(
        f"| {args.modules} modules, {args.latency * 1000:.0f} ms/request | median s | runs | mirror requests |"
    )
    print("|---|---|---|---|")
    rows = [
        ("(a) go mod download, straight to the mirror", direct, requests["direct"]),
        (f"gomirror prefetch (--jobs {args.jobs}), process", warm, requests["prefetch"]),
        ("  of which prefetching (its own report)", b.inner, []),
        ("go mod download from the warm gomirror", down, requests["download"]),
        ("(b) prefetch + download", total, []),
    ]
    for name, xs, ns in rows:
        runs_text = ", ".join(f"{x:.2f}" for x in xs)
        asked = f"{median([float(x) for x in ns]):.0f}" if ns else ""
        print(f"| {name} | {median(xs):.2f} | {runs_text} | {asked} |")
    met = ratio < TARGET
    print(f"\nratio b/a: {ratio:.2f}; target < {TARGET}: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
