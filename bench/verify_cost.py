"""Cost of checksum-database verification on a cold download, with the sumdb tiles warm.

Usage: ``python bench/verify_cost.py [--quick] [--runs N] [--modules N] [--latency S ...]``

The synthetic graph of ``cold.py`` (default 30 modules, ``go 1.16``) is served by an
``UpstreamSimulator``, which also serves a ``TestSumdb`` (holding a record for every
module, h1 computed with ``support.corpus``) under ``/sumdb/<name>/``; the simulator's
latency applies to both. For each latency (default 0 and 150 ms):

1. Warm the tiles: one ``gomirror serve --sumdb "<key> <url>"`` serves a go client
   once; then everything in its cache except ``sumdb/`` and ``_gomirror/sumdb/`` is
   deleted and the rest kept as a template.
   The template thus holds the tiles *and* the cached ``lookup/`` answers.
2. Runs alternate ``verified`` (``--sumdb "<key> <url>"``, template as is),
   ``verified, lookups cold`` (same, but ``sumdb/<name>/lookup/`` removed from the copy,
   so only the tiles are warm and every module costs one ``/lookup`` upstream) and
   ``unverified`` (``--sumdb off``). Each run copies the template into a fresh gomirror cache, starts
   gomirror (``--workers 1``) and times ``go mod download -json all`` with a fresh
   GOMODCACHE (the go command: GOSUMDB=off, GOFLAGS=-modcacherw).

Reported: medians, the ratios to unverified, and how many sumdb requests each
mode sent upstream over all its runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from common import Stopwatch, graph_corpus, machine_summary, median, require_tools, start_gomirror
from support.corpus import Corpus
from support.gorunner import GoRunner
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TestSumdb

KEEP = ("sumdb", "_gomirror/sumdb")
VERIFIED, LOOKUPS_COLD, UNVERIFIED = "verified", "verified, lookups cold", "unverified"
MODES = (VERIFIED, LOOKUPS_COLD, UNVERIFIED)


class VerifyBench:
    def __init__(self, tmp: Path, corpus: Corpus, root: str, latency: float) -> None:
        self.tmp = tmp
        self.root = root
        self.db = TestSumdb()
        for mv in corpus:
            self.db.add(mv.path, mv.version, mv.h1, mv.gomod_h1)
        self.sim = UpstreamSimulator(corpus, name="verify")
        self.sim.mount(f"/sumdb/{self.db.name}", self._sumdb)
        self.sim.start()
        if latency > 0:
            self.sim.add_fault("*", latency=latency)
        self.spec = f"{self.db.verifier_key} {self.sim.url}/sumdb/{self.db.name}"
        self.template = tmp / "template"
        self.n = 0

    async def _sumdb(self, request: web.Request) -> web.StreamResponse:
        a = self.db.answer(request[SUBPATH])
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    def close(self) -> None:
        self.sim.stop()

    def sumdb_requests(self) -> int:
        return int(self.sim.count(f"/sumdb/{self.db.name}/*"))

    def _go(self, d: Path, proxy: str) -> float:
        go = GoRunner(d, proxy)  # fresh GOMODCACHE; GOSUMDB=off, GOFLAGS=-modcacherw
        work = d / "app"
        go.init_module(work, "example.com/app", go_version="1.16", requires={self.root: "v1.0.0"})
        t0 = time.monotonic()
        go.run("mod", "download", "-json", "all", cwd=work, timeout=600)
        return time.monotonic() - t0

    def _run(self, label: str, sumdb: str, cache: Path) -> float:
        self.n += 1
        d = self.tmp / f"{self.n:03d}-{label}"
        gm = start_gomirror(d / "gm", self.sim.url, cache, sumdb=sumdb)
        try:
            return self._go(d / "go", gm.url)
        finally:
            gm.stop()

    def warm_tiles(self) -> float:
        """One verified pass; keep only the sumdb state of its cache as the template."""
        cache = self.tmp / "warm-cache"
        t = self._run("warm", self.spec, cache)
        self.template.mkdir()
        for rel in KEEP:
            if (cache / rel).is_dir():
                shutil.copytree(cache / rel, self.template / rel)
        if not any(self.template.iterdir()):
            raise RuntimeError(f"no sumdb state in {cache}: was anything verified?")
        return t

    def measure(self, mode: str) -> tuple[float, int]:
        """Seconds for one cold download in ``mode`` and the sumdb requests it caused."""
        cache = self.tmp / f"cache-{self.n + 1:03d}"
        shutil.copytree(self.template, cache)
        if mode == LOOKUPS_COLD:
            shutil.rmtree(cache / "sumdb" / self.db.name / "lookup", ignore_errors=True)
        before = self.sumdb_requests()
        t = self._run(mode.split(",")[0], "off" if mode == UNVERIFIED else self.spec, cache)
        return t, self.sumdb_requests() - before


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run per mode")
    ap.add_argument("--runs", type=int, default=None, help="runs per mode (default 3)")
    ap.add_argument("--modules", type=int, default=30, help="modules in the graph")
    ap.add_argument(
        "--latency", type=float, nargs="+", default=[0.0, 0.150], help="simulator latencies (s)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    tools = require_tools("go")
    clock = Stopwatch()
    print("\n".join(machine_summary(tools)))
    corpus, paths = graph_corpus(args.modules)
    top = Path(tempfile.mkdtemp(prefix="gomirror-bench-verify-"))
    out: dict[str, tuple[dict[str, list[float]], dict[str, int]]] = {}  # latency -> runs, reqs
    try:
        for latency in args.latency:
            ms = f"{latency * 1000:.0f} ms"
            b = VerifyBench(top / ms.replace(" ", ""), corpus, paths[0], latency)
            try:
                print(f"latency {ms}: warming tiles ({b.warm_tiles():.2f}s)")
                res: dict[str, list[float]] = {m: [] for m in MODES}
                reqs = dict.fromkeys(MODES, 0)
                for i in range(runs):
                    for mode in MODES:  # alternate
                        t, n = b.measure(mode)
                        res[mode].append(t)
                        reqs[mode] += n
                        print(f"  round {i + 1}: {mode} {t:.2f}s ({n} sumdb requests)")
                        sys.stdout.flush()
            finally:
                b.close()
            out[ms] = (res, reqs)
    finally:
        if not args.keep:
            shutil.rmtree(top, ignore_errors=True)
    print()
    print(f"| latency | mode | median s | runs | vs unverified | sumdb requests ({runs} runs) |")
    print("|---|---|---|---|---|---|")
    for ms, (res, reqs) in out.items():
        med = {m: median(res[m]) for m in MODES}
        for m in MODES:
            all_ = ", ".join(f"{x:.2f}" for x in res[m])
            ratio = med[m] / med[UNVERIFIED]
            print(f"| {ms} | {m} | {med[m]:.2f} | {all_} | {ratio:.2f}x | {reqs[m]} |")
    print(f"\n{args.modules} modules; runs {runs} (median); total {clock():.0f}s")
    if args.json:
        args.json.write_text(json.dumps({k: {"runs": r, "sumdb": n} for k, (r, n) in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
