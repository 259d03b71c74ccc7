"""Warm-cache serving: gomirror versus nginx on the same GOPROXY tree, against issue 13's targets.

Usage: ``python bench/warm.py [--quick] [--runs N] [--duration S] [--workers N] [--slow-path]``

1. Build a synthetic corpus: a realistic graph (40 modules: ``.info``, ``.mod`` of
   0.1-5 KB, incompressible zips from 10 KB to 25 MB, 54 MB in all), 300 small modules
   (``.info``/``.mod``/``@v/list``) and 8 modules with ~1 MB zips.
2. Warm gomirror's cache by fetching every file once through gomirror from an
   ``UpstreamSimulator``; the simulator is then stopped, so later misses would fail.
3. Point nginx (as many worker processes as gomirror has, sendfile on, access log off)
   at gomirror's cache directory, so both serve the identical tree; check both return
   identical bytes.
4. For each workload and concurrency, run wrk alternately against nginx and gomirror
   ``--workers N`` (GOMIRROR_ACCESS_LOG=false, log level warning; ``--slow-path`` adds
   a gomirror with ``fast_path`` off), N times each; report medians and ratios.

Targets (ratio gomirror/nginx, both MB/s and req/s for the mix): ``mix`` >= 0.8 at 1,
16, 64 connections (at 1 connection the graph's files are requested one after another
over one keep-alive connection: the sequential target); ``info``/``mod``/``list`` >= 0.5
req/s at 16 and 64; ``zip1M`` >= 0.8 MB/s. The script exits 1 when a target is missed.

wrk, nginx and gomirror share the machine's cores; every number is measured under
the same conditions, so the ratios are what matters.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import Stopwatch, machine_summary, median, require_tools, start_gomirror
from support.corpus import Corpus
from support.ports import free_port, wait_for_port
from support.simulator import UpstreamSimulator

N_SMALL = 300  # modules used for the .info/.mod/list workloads
N_ZIP_1M = 8
# The realistic graph's zip sizes (bytes): a few large ones, a long tail of small ones.
MIX_ZIPS = [
    25_000_000, 8_000_000, 4_000_000, 3_000_000, 2_000_000, 2_000_000, 1_500_000, 1_000_000,
    1_000_000, 1_000_000, 700_000, 500_000, 500_000, 500_000, 300_000, 300_000, 300_000,
    300_000, 200_000, 200_000, 200_000, 200_000, 100_000, 100_000, 100_000, 100_000, 50_000,
    50_000, 50_000, 50_000, 20_000, 20_000, 20_000, 10_000, 10_000, 10_000, 10_000, 10_000,
    10_000, 10_000,
]  # fmt: skip
CONCURRENCY = (1, 16, 64)
# workload -> (unit(s) judged, minimum ratio, concurrencies judged)
TARGETS: dict[str, tuple[tuple[str, ...], float, tuple[int, ...]]] = {
    "mix": (("MB/s", "req/s"), 0.8, (1, 16, 64)),
    "info": (("req/s",), 0.5, (16, 64)),
    "mod": (("req/s",), 0.5, (16, 64)),
    "list": (("req/s",), 0.5, (16, 64)),
    "zip1M": (("MB/s",), 0.8, (1, 16, 64)),
}

LUA = """
local paths = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH {\\"requests\\": %%d, \\"bytes\\": %%d, \\"us\\": %%d, " ..
    "\\"errors\\": %%d, \\"status\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d}\\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""

NGINX_CONF = """
{user}
worker_processes {workers};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  types {{ application/json info; text/plain mod; application/zip zip; }}
  default_type text/plain;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  fastcgi_temp_path {tmp}/nginx-fastcgi;
  uwsgi_temp_path {tmp}/nginx-uwsgi;
  scgi_temp_path {tmp}/nginx-scgi;
  server {{
    listen 127.0.0.1:{port};
    root {root};
  }}
}}
"""


@dataclass(frozen=True)
class Workload:
    name: str
    paths: list[str]


@dataclass(frozen=True)
class Result:
    rps: float
    mbps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def value(self, unit: str) -> float:
        return self.rps if unit == "req/s" else self.mbps


UNITS = ("req/s", "MB/s")


def build_corpus() -> tuple[Corpus, dict[str, list[str]]]:
    corpus = Corpus()
    small: list[tuple[str, str]] = []
    for i in range(N_SMALL):
        mv = corpus.synthetic_module(f"example.com/small/m{i:04d}", "v1.0.0", 200, seed=i)
        small.append(mv.escaped)
    z1 = [
        corpus.synthetic_module(f"example.com/zip1m/m{i}", "v1.0.0", 1 << 20, 4, seed=i).escaped
        for i in range(N_ZIP_1M)
    ]
    rng = random.Random(13)
    mix: list[str] = []
    for i, size in enumerate(MIX_ZIPS):
        path = f"example.com/graph/Mod{i:02d}"  # upper case: case-escaped paths, as in real graphs
        requires = "".join(
            f"\trequire example.com/dep{rng.randrange(10**6)}/x{j} v1.{j}.{rng.randrange(30)}\n"
            for j in range(rng.choice([0, 2, 5, 10, 20, 60, 120]))
        )
        gomod = f"module {path}\n\ngo 1.21\n{requires}".encode()
        mv = corpus.synthetic_module(
            path, "v1.4.2", size, max(1, size // 2_000_000), i, gomod=gomod
        )
        p, v = mv.escaped
        mix += [f"/{p}/@v/{v}.info", f"/{p}/@v/{v}.mod", f"/{p}/@v/{v}.zip"]
    paths = {
        "mix": mix,  # the go command's order: .info, .mod, .zip of one module, then the next
        "info": [f"/{p}/@v/{v}.info" for p, v in small],
        "mod": [f"/{p}/@v/{v}.mod" for p, v in small],
        "list": [f"/{p}/@v/list" for p, _ in small],
        "zip1M": [f"/{p}/@v/{v}.zip" for p, v in z1],
    }
    return corpus, paths


def fetch(base: str, path: str) -> int:
    with urllib.request.urlopen(base + path, timeout=120) as resp:
        return len(resp.read())


def warm(base: str, paths: dict[str, list[str]]) -> None:
    todo = [p for ps in paths.values() for p in ps]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(lambda p: fetch(base, p), todo))
    print(f"warmed {len(todo)} files, {sum(sizes) / 1e6:.1f} MB through gomirror")


def learn(base: str, paths: list[str], conns: int = 12) -> None:
    """HEAD every path on a dozen keep-alive connections, so every worker's fast path learns it.

    The kernel spreads connections over the workers (SO_REUSEPORT), and a worker learns a
    path when its aiohttp path answers it; with 12 connections each worker sees every
    path (the chance that one sees none of them is 2 x 0.5^12). A connection whose request
    its worker could not answer yet stays with aiohttp, so the measured runs use new ones.
    """
    host, port = base.removeprefix("http://").split(":")
    for _ in range(conns):
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        for p in paths:
            c.request("HEAD", p)
            c.getresponse().read()
        c.close()


def start_nginx(
    nginx: str, tmp: Path, root: Path, workers: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root, workers=workers))
    log = open(tmp / "nginx-stderr.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)], stdout=log, stderr=log)
    log.close()
    wait_for_port("127.0.0.1", port, timeout=10)
    return proc, f"http://127.0.0.1:{port}"


def run_wrk(wrk: str, url: str, script: Path, conns: int, duration: float) -> Result:
    threads = 1 if conns == 1 else 2
    cmd = [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--timeout", "30s"]
    cmd += ["-s", str(script), url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no summary:\n{p.stdout}\n{p.stderr}")
    d = json.loads(line[6:])
    secs = d["us"] / 1e6
    return Result(
        rps=d["requests"] / secs,
        mbps=d["bytes"] / secs / 1e6,
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        errors=d["errors"] + d["status"],
    )


def check_identical(bases: dict[str, str], paths: dict[str, list[str]]) -> None:
    for kind, ps in paths.items():
        bodies = {}
        for name, base in bases.items():
            with urllib.request.urlopen(base + ps[0], timeout=60) as resp:
                bodies[name] = resp.read()
        if len(set(bodies.values())) != 1:
            raise RuntimeError(f"servers disagree on {ps[0]} ({kind})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s per cell")
    ap.add_argument("--runs", type=int, default=None, help="wrk runs per cell (default 3)")
    ap.add_argument("--duration", type=float, default=None, help="seconds per wrk run (4)")
    ap.add_argument("--workers", type=int, default=2, help="gomirror processes = nginx workers")
    ap.add_argument("--slow-path", action="store_true", help="also gomirror with fast_path off")
    ap.add_argument("--only", default="", help="comma-separated workloads to run (default all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 4.0)
    tools = require_tools("nginx", "wrk")
    clock = Stopwatch()
    print("\n".join(machine_summary(tools)))
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-warm-"))
    tmp.chmod(0o755)
    cache = tmp / "cache"
    corpus, paths = build_corpus()
    print(f"corpus built in {clock():.1f}s; tmp {tmp}")

    sim = UpstreamSimulator(corpus).start()
    # Lists stay fresh for the whole run: a stale list is refetched upstream, not a warm hit.
    fresh = {"GOMIRROR_MUTABLE_TTL": "86400"}
    gm = start_gomirror(tmp / "gm", sim.url, cache, workers=args.workers, env=fresh)
    try:
        warm(gm.url, paths)
    finally:
        sim.stop()  # from now on every request must be a cache hit
    mix_mb = sum((cache / p.lstrip("/")).stat().st_size for p in paths["mix"]) / 1e6
    print(f"mix: {len(paths['mix'])} files, {mix_mb:.1f} MB")
    ngx, ngx_url = start_nginx(tools["nginx"], tmp, cache, args.workers)
    servers = {"nginx": ngx_url, "gomirror": gm.url}
    slow = None
    if args.slow_path:
        slow = start_gomirror(
            tmp / "gms",
            "off",
            cache,
            workers=args.workers,
            env={**fresh, "GOMIRROR_FAST_PATH": "false"},
        )
        servers["gomirror-slow"] = slow.url
    only = {w for w in args.only.split(",") if w}
    workloads = [Workload(name, ps) for name, ps in paths.items() if not only or name in only]
    table: list[dict[str, Any]] = []
    try:
        check_identical(servers, paths)
        for wl in workloads:
            script = tmp / f"{wl.name}.lua"
            script.write_text(LUA % ", ".join(json.dumps(p) for p in wl.paths))
            for url in servers.values():  # warm-up: page cache, and every worker's hot table
                learn(url, wl.paths)
                run_wrk(tools["wrk"], url, script, 16, 1.0)
            for conns in CONCURRENCY:
                got: dict[str, list[Result]] = {name: [] for name in servers}
                for _ in range(runs):  # alternate: nginx, gomirror, nginx, ...
                    for name, url in servers.items():
                        got[name].append(run_wrk(tools["wrk"], url, script, conns, duration))
                row: dict[str, Any] = {"workload": wl.name, "conns": conns}
                for name, rs in got.items():
                    for unit in UNITS:
                        row[f"{name}.{unit}"] = median([r.value(unit) for r in rs])
                        row[f"{name}.{unit}.all"] = [round(r.value(unit), 1) for r in rs]
                    row[name + ".p99_ms"] = median([r.p99_ms for r in rs])
                    row[name + ".errors"] = sum(r.errors for r in rs)
                table.append(row)
                print_row(row, list(servers))
                sys.stdout.flush()
    finally:
        ngx.send_signal(signal.SIGQUIT)
        try:
            ngx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ngx.kill()
        gm.stop()
        if slow is not None:
            slow.stop()
    print()
    missed = print_table(table, list(servers))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nruns per cell: {runs} x {duration:g}s (median); workers {args.workers}; ", end="")
    print(f"total {clock():.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "duration": duration, "rows": table}))
    errors = sum(int(row[n + ".errors"]) for row in table for n in servers)
    if errors:
        print(f"{errors} errors or non-2xx answers", file=sys.stderr)
    if missed:
        print("targets missed: " + "; ".join(missed), file=sys.stderr)
    return 1 if missed or errors else 0


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def judged(row: dict[str, Any]) -> tuple[tuple[str, ...], float]:
    """The units judged for this row and their minimum ratio (no units: not judged)."""
    units, minimum, conns = TARGETS[str(row["workload"])]
    return (units if row["conns"] in conns else ()), minimum


def ratio(row: dict[str, Any], name: str, unit: str) -> float:
    return float(row[f"{name}.{unit}"]) / float(row[f"nginx.{unit}"])


def print_row(row: dict[str, Any], names: list[str]) -> None:
    parts = [f"{row['workload']:>6} c={row['conns']:<3}"]
    for unit in UNITS:
        for name in names:
            v = float(row[f"{name}.{unit}"])
            r = "" if name == "nginx" else f" ({ratio(row, name, unit):.2f})"
            parts.append(f"{name}={fmt(v)} {unit} {row[f'{name}.{unit}.all']}{r}")
    print("  ".join(parts))


def print_table(table: list[dict[str, Any]], names: list[str]) -> list[str]:
    """Print the markdown table; return the targets missed (gomirror, fast path on)."""
    others = [n for n in names if n != "nginx"]
    cols = "".join(f" nginx {u} |" + "".join(f" {n} {u} | ratio |" for n in others) for u in UNITS)
    head = f"| workload | conns |{cols} target | met | errors |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    missed: list[str] = []
    for row in table:
        cells = ""
        for unit in UNITS:
            cells += f" {fmt(float(row[f'nginx.{unit}']))} |"
            for n in others:
                cells += f" {fmt(float(row[f'{n}.{unit}']))} | {ratio(row, n, unit):.2f} |"
        units, minimum = judged(row)
        ok = all(ratio(row, "gomirror", u) >= minimum for u in units)
        target = f"≥{minimum} {' and '.join(units)}" if units else "—"
        if units and not ok:
            missed.append(f"{row['workload']} c={row['conns']}")
        errs = sum(int(row[n + ".errors"]) for n in names)
        met = ("yes" if ok else "**no**") if units else ""
        print(f"| {row['workload']} | {row['conns']} |{cells} {target} | {met} | {errs} |")
    return missed


if __name__ == "__main__":
    sys.exit(main())
