"""Warm-cache serving: gomirror (workers 2 and 1) versus nginx on the same GOPROXY tree.

Usage: ``python bench/warm.py [--quick] [--runs N] [--duration S]``

1. Build a synthetic corpus: many small modules (for ``.info``/``.mod``) plus
   incompressible modules whose zips are about 1 MB and about 20 MB.
2. Warm gomirror's cache by fetching every file once through gomirror from an
   ``UpstreamSimulator``; the simulator is then stopped, so later misses would fail.
3. Point nginx (2 worker processes, sendfile on, access log off) at gomirror's cache
   directory, so both serve the identical tree.
4. For each workload and concurrency, run wrk alternately against nginx, gomirror
   ``--workers 2`` and gomirror ``--workers 1`` (GOMIRROR_ACCESS_LOG=false, log level
   warning), N times each, and report medians and the ratio gomirror/nginx.

wrk, nginx and gomirror share the machine's cores; every number is measured under
the same conditions, so the ratios are what matters.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
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

N_SMALL = 300  # modules used for the .info/.mod workloads
N_ZIP_1M = 8
N_ZIP_20M = 2
CONCURRENCY = (1, 16, 64)
SERVER_NAMES = ("nginx", "gomirror-w2", "gomirror-w1")
TARGETS = {"info": 0.5, "mod": 0.5, "zip1M": 0.8, "zip20M": 0.8}

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
worker_processes 2;
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
    unit: str  # "req/s" or "MB/s"


@dataclass(frozen=True)
class Result:
    rps: float
    mbps: float
    p50_ms: float
    p99_ms: float
    errors: int

    def value(self, unit: str) -> float:
        return self.rps if unit == "req/s" else self.mbps


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
    z20 = [
        corpus.synthetic_module(f"example.com/zip20m/m{i}", "v1.0.0", 20 << 20, 8, seed=i).escaped
        for i in range(N_ZIP_20M)
    ]
    paths = {
        "info": [f"/{p}/@v/{v}.info" for p, v in small],
        "mod": [f"/{p}/@v/{v}.mod" for p, v in small],
        "zip1M": [f"/{p}/@v/{v}.zip" for p, v in z1],
        "zip20M": [f"/{p}/@v/{v}.zip" for p, v in z20],
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


def start_nginx(nginx: str, tmp: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, tmp=tmp, port=port, root=root))
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
    gm2 = start_gomirror(tmp / "gm2", sim.url, cache, workers=2)
    try:
        warm(gm2.url, paths)
    finally:
        sim.stop()  # from now on every request must be a cache hit
    gm1 = start_gomirror(tmp / "gm1", "off", cache, workers=1)
    ngx, ngx_url = start_nginx(tools["nginx"], tmp, cache)
    servers = {"nginx": ngx_url, "gomirror-w2": gm2.url, "gomirror-w1": gm1.url}
    workloads = [
        Workload("info", paths["info"], "req/s"),
        Workload("mod", paths["mod"], "req/s"),
        Workload("zip1M", paths["zip1M"], "MB/s"),
        Workload("zip20M", paths["zip20M"], "MB/s"),
    ]
    table: list[dict[str, Any]] = []
    try:
        check_identical(servers, paths)
        for wl in workloads:
            script = tmp / f"{wl.name}.lua"
            script.write_text(LUA % ", ".join(json.dumps(p) for p in wl.paths))
            for conns in CONCURRENCY:
                got: dict[str, list[Result]] = {name: [] for name in servers}
                for _ in range(runs):  # alternate: nginx, gomirror-w2, gomirror-w1, nginx, ...
                    for name, url in servers.items():
                        got[name].append(run_wrk(tools["wrk"], url, script, conns, duration))
                row: dict[str, Any] = {"workload": wl.name, "unit": wl.unit, "conns": conns}
                for name, rs in got.items():
                    row[name] = median([r.value(wl.unit) for r in rs])
                    row[name + ".p99_ms"] = median([r.p99_ms for r in rs])
                    row[name + ".errors"] = sum(r.errors for r in rs)
                    row[name + ".all"] = [round(r.value(wl.unit), 1) for r in rs]
                table.append(row)
                print_row(row)
                sys.stdout.flush()
    finally:
        ngx.send_signal(signal.SIGQUIT)
        try:
            ngx.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ngx.kill()
        gm1.stop()
        gm2.stop()
    print()
    print_table(table)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nruns per cell: {runs} x {duration:g}s (median); total {clock():.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "duration": duration, "rows": table}))
    return 0


def fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def print_row(row: dict[str, Any]) -> None:
    ngx = float(row["nginx"])
    parts = [f"{row['workload']:>6} c={row['conns']:<3}"]
    for name in SERVER_NAMES:
        if name in row:
            v = float(row[name])
            parts.append(f"{name}={fmt(v)} {row['unit']} {row[name + '.all']} ({v / ngx:.2f})")
    print("  ".join(parts))


def print_table(table: list[dict[str, Any]]) -> None:
    names = [n for n in SERVER_NAMES[1:] if table and n in table[0]]
    cols = "".join(f" {n} | ratio |" for n in names)
    head = f"| workload | conns | unit | nginx |{cols} target | met (w2) | errors |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for row in table:
        ngx = float(row["nginx"])
        target = TARGETS[str(row["workload"])]
        cells = "".join(f" {fmt(float(row[n]))} | {float(row[n]) / ngx:.2f} |" for n in names)
        met = float(row["gomirror-w2"]) / ngx >= target
        errs = sum(int(row[n + ".errors"]) for n in ["nginx", *names])
        print(
            f"| {row['workload']} | {row['conns']} | {row['unit']} | {fmt(ngx)} |{cells} "
            f"≥{target} | {'yes' if met else 'no'} | {errs} |"
        )


if __name__ == "__main__":
    sys.exit(main())
