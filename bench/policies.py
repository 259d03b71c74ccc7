"""Mirror-choice policies on a cold graph download when the first listed mirror is slow or flaky.

Usage: ``python bench/policies.py [--quick] [--runs N] [--modules N] [--latency S] [--slow S]
[--error-rate P] [--policies go,failover,fastest,hedged] [--hedge-delay-max S]``

Four ``UpstreamSimulator`` mirrors serve the synthetic graph of ``cold.py`` (default
30 modules, ``go 1.16`` go.mod files, a 30-deep requirement chain); every mirror waits
``--latency`` (default 150 ms, the "slow link" of ``cold.py``) before each answer:

- ``fast`` and ``fast2``: just that;
- ``slow``: ``--slow`` (default 800 ms) more on every request;
- ``flaky``: answers ``502`` to a random ``--error-rate`` (default 30 %) of requests
  (``add_fault(probability=...)``, seeded, so runs draw the same sequence).

Cells: the reference is gomirror with only ``fast`` listed; then the upstream lists
``slow,fast,fast2`` and ``flaky,fast,fast2``, each under every policy. Each run is a
fresh ``gomirror serve`` (``--workers 1``, fresh cache dir, ``--sumdb off``: checksum
verification is measured by ``verify_cost.py`` and is policy-independent; monitor off,
so the only traffic is the go command's) and a fresh go module cache
(``GOFLAGS=-modcacherw``, ``GOSUMDB=off``), timing ``go mod download -json all`` in
a module requiring the graph's root. Rounds run every cell once, side by side, in
the same order; the table shows medians, the ratio to the reference, requests each
mirror received per run (from the simulators' records) and hedges started/won per run
(``gomirror_upstream_hedges_total`` from ``/metrics``).

Target (issue 9): ``fastest`` and ``hedged`` within 1.2x of the reference in both
scenarios. ``go`` and ``failover`` are shown for comparison: ``go`` cannot pass a
``502`` after a ``,`` to the next mirror (Go's rule), so it is expected to fail on the
flaky list, and neither can avoid a mirror that is merely slow. Exit status: 0 when
every target is met, 1 when one is missed, 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import Stopwatch, graph_corpus, machine_summary, median, require_tools, start_gomirror
from support.corpus import Corpus
from support.gorunner import GoRunner, parse_json_stream
from support.simulator import UpstreamSimulator

POLICIES = ("go", "failover", "fastest", "hedged")
TARGETED = ("fastest", "hedged")
TARGET = 1.2
REFERENCE = "reference (fast only)"
ROLES = ("slow", "flaky", "fast", "fast2")
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Run:
    seconds: float
    ok: bool
    detail: str  # first error line when the download failed
    received: dict[str, int]  # requests each mirror (role) received
    hedges_started: float
    hedges_won: float
    won_by: dict[str, float]


@dataclass
class Cell:
    label: str
    scenario: str  # "reference", "slow" or "flaky"
    policy: str
    upstream: list[str]  # roles, in list order
    runs: list[Run] = field(default_factory=list)

    @property
    def med(self) -> float:
        return median([r.seconds for r in self.runs])

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.runs)


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every labelled sample of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m["name"], dict(LABEL.findall(m["labels"])), float(m["value"])))
    return out


class PolicyBench:
    def __init__(
        self,
        tmp: Path,
        corpus: Corpus,
        root: str,
        modules: int,
        latency: float,
        slow: float,
        error_rate: float,
        hedge_delay_max: float | None,
    ) -> None:
        self.tmp = tmp
        self.hedge_delay_max = hedge_delay_max
        self.root = root
        self.modules = modules
        self.sims: dict[str, UpstreamSimulator] = {}
        for i, role in enumerate(ROLES):
            sim = UpstreamSimulator(corpus, name=role, seed=i + 1).start()
            self.sims[role] = sim
            if latency > 0:
                sim.add_fault("*", latency=latency)
        self.sims["slow"].add_fault("*", latency=latency + slow)
        self.sims["flaky"].fail("*", 502, "simulated bad gateway\n", probability=error_rate)
        self.role_of = {sim.url: role for role, sim in self.sims.items()}
        self.n = 0

    def close(self) -> None:
        for sim in self.sims.values():
            sim.stop()

    def _role(self, upstream_label: str) -> str:
        return self.role_of.get(upstream_label.rstrip("/"), upstream_label)

    def run(self, cell: Cell) -> Run:
        self.n += 1
        d = self.tmp / f"{self.n:03d}-{cell.scenario}-{cell.policy}"
        d.mkdir(parents=True)
        upstream = ",".join(self.sims[r].url for r in cell.upstream)
        for sim in self.sims.values():
            sim.clear()
        env = {"GOMIRROR_POLICY": cell.policy, "GOMIRROR_MONITOR": "false"}
        if self.hedge_delay_max is not None:
            env["GOMIRROR_HEDGE_DELAY_MAX"] = str(self.hedge_delay_max)
        gm = start_gomirror(d / "gm", upstream, d / "cache", env=env)
        try:
            go = GoRunner(d / "go", gm.url)
            work = d / "app"
            go.init_module(
                work, "example.com/app", go_version="1.16", requires={self.root: "v1.0.0"}
            )
            t0 = time.monotonic()
            try:
                proc = go.run("mod", "download", "-json", "all", cwd=work, check=False, timeout=600)
            except subprocess.TimeoutExpired:
                proc = None
            seconds = time.monotonic() - t0
            with urllib.request.urlopen(gm.url + "/metrics", timeout=30) as r:
                metrics = r.read().decode()
        finally:
            gm.stop()
        ok, detail = self._check(proc)
        started = won = 0.0
        won_by: dict[str, float] = {}
        for name, labels, value in metric_samples(metrics):
            if name != "gomirror_upstream_hedges_total":
                continue
            if labels.get("result") == "started":
                started += value
            elif labels.get("result") == "won":
                won += value
                role = self._role(labels.get("upstream", "?"))
                won_by[role] = won_by.get(role, 0.0) + value
        received = {role: sim.count() for role, sim in self.sims.items() if role in cell.upstream}
        return Run(seconds, ok, detail, received, started, won, won_by)

    def _check(self, proc: subprocess.CompletedProcess[str] | None) -> tuple[bool, str]:
        """Whether the whole graph was downloaded; else the first error line."""
        if proc is None:
            return False, "timed out after 600 s"
        try:
            entries = parse_json_stream(proc.stdout)
        except ValueError:
            entries = []
        errors = [str(e["Error"]) for e in entries if e.get("Error")]
        graph = [e for e in entries if str(e.get("Path", "")).startswith("example.com/graph")]
        if proc.returncode == 0 and not errors and len(graph) == self.modules:
            return True, ""
        first = errors[0] if errors else (proc.stderr.strip().splitlines() or ["?"])[0]
        return False, f"exit {proc.returncode}: {first.splitlines()[0][:160]}"


def cells(policies: list[str]) -> list[Cell]:
    out = [Cell(REFERENCE, "reference", "go", ["fast"])]
    for scenario in ("slow", "flaky"):
        for policy in policies:
            out.append(
                Cell(
                    f"{scenario},fast,fast2 · {policy}",
                    scenario,
                    policy,
                    [scenario, "fast", "fast2"],
                )
            )
    return out


def per_run(values: list[float]) -> str:
    return f"{sum(values) / len(values):.1f}" if values else "-"


def report(all_cells: list[Cell], runs: int) -> tuple[list[str], list[str]]:
    """The markdown tables, and the targets missed (empty when all are met)."""
    ref = all_cells[0]
    lines = [
        "| upstream · policy | median s | runs (s) | vs fast only | target | met |",
        "|---|---|---|---|---|---|",
    ]
    missed: list[str] = []
    for c in all_cells:
        times = ", ".join(f"{r.seconds:.2f}" + ("" if r.ok else " ✗") for r in c.runs)
        ratio = c.med / ref.med
        if c is ref:
            lines.append(f"| {c.label} | {c.med:.2f} | {times} | 1.00× | | |")
            continue
        if c.policy in TARGETED:
            met = c.all_ok and ratio <= TARGET
            if not met:
                missed.append(f"{c.label}: {ratio:.2f}× (target ≤{TARGET}×)")
            target, verdict = f"≤{TARGET}×", "yes" if met else "**no**"
        else:
            target, verdict = "—", ""
        shown = f"**{ratio:.2f}×**" if c.policy in TARGETED else f"{ratio:.2f}×"
        if not c.all_ok:
            failed = sum(not r.ok for r in c.runs)
            shown += f" ({failed}/{len(c.runs)} failed)"
        lines.append(f"| {c.label} | {c.med:.2f} | {times} | {shown} | {target} | {verdict} |")
    lines += [
        "",
        f"Per run (mean of {runs}): requests each mirror received, and hedges.",
        "",
        "| upstream · policy | first mirror | fast | fast2 | hedges started | hedges won (by) |",
        "|---|---|---|---|---|---|",
    ]
    for c in all_cells:
        first = c.upstream[0]
        cols = []
        for role in (first, "fast", "fast2"):
            vals = [float(r.received.get(role, 0)) for r in c.runs] if role in c.upstream else []
            cols.append(per_run(vals))
        if c is ref:
            cols[0] = "—"
        won_by: dict[str, float] = {}
        for r in c.runs:
            for role, v in r.won_by.items():
                won_by[role] = won_by.get(role, 0.0) + v / len(c.runs)
        by = ", ".join(f"{k} {v:.1f}" for k, v in sorted(won_by.items()))
        won = per_run([r.hedges_won for r in c.runs]) + (f" ({by})" if by else "")
        lines.append(
            f"| {c.label} | {cols[0]} | {cols[1]} | {cols[2]} | "
            f"{per_run([r.hedges_started for r in c.runs])} | {won} |"
        )
    failures = [(c.label, r.detail) for c in all_cells for r in c.runs if not r.ok]
    if failures:
        lines += ["", "Failed runs (✗):"]
        lines += [f"- {label}: `{detail}`" for label, detail in failures]
    return lines, missed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run per cell")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 3)")
    ap.add_argument("--modules", type=int, default=30, help="modules in the graph")
    ap.add_argument("--latency", type=float, default=0.150, help="every mirror's latency (s)")
    ap.add_argument("--slow", type=float, default=0.800, help="extra latency of 'slow' (s)")
    ap.add_argument("--error-rate", type=float, default=0.30, help="share of 502s from 'flaky'")
    ap.add_argument("--policies", default=",".join(POLICIES), help="comma-separated policies")
    ap.add_argument(
        "--hedge-delay-max",
        type=float,
        default=None,
        help="GOMIRROR_HEDGE_DELAY_MAX for every gomirror (default: gomirror's own)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    policies = [p for p in args.policies.split(",") if p]
    unknown = set(policies) - set(POLICIES)
    if unknown:
        ap.error(f"unknown policies: {', '.join(sorted(unknown))}")
    # A hedge's loser is cancelled by gomirror while the simulator still waits out its
    # latency; aiohttp then logs a traceback for the write to the closed connection.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    tools = require_tools("go")
    clock = Stopwatch()
    print("\n".join(machine_summary(tools)))
    corpus, paths = graph_corpus(args.modules)
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-policies-"))
    print(
        f"graph: {args.modules} modules; every mirror {args.latency * 1000:.0f} ms/request, "
        f"slow +{args.slow * 1000:.0f} ms, flaky {args.error_rate:.0%} 502s; "
        f"hedge_delay_max {args.hedge_delay_max if args.hedge_delay_max is not None else 'default'}"
        f"; tmp {tmp}"
    )
    b = PolicyBench(
        tmp,
        corpus,
        paths[0],
        args.modules,
        args.latency,
        args.slow,
        args.error_rate,
        args.hedge_delay_max,
    )
    all_cells = cells(policies)
    try:
        for i in range(runs):
            print(f"round {i + 1}/{runs}")
            for c in all_cells:
                r = b.run(c)
                c.runs.append(r)
                status = "ok" if r.ok else f"FAILED ({r.detail})"
                print(
                    f"  {c.label}: {r.seconds:.2f}s {status}; received {r.received}; "
                    f"hedges {r.hedges_started:g}/{r.hedges_won:g}",
                    flush=True,
                )
    finally:
        b.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    lines, missed = report(all_cells, runs)
    print()
    print("\n".join(lines))
    print(f"\nruns per cell {runs}; total {clock():.0f}s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    c.label: [
                        {
                            "seconds": r.seconds,
                            "ok": r.ok,
                            "received": r.received,
                            "hedges_started": r.hedges_started,
                            "hedges_won": r.hedges_won,
                        }
                        for r in c.runs
                    ]
                    for c in all_cells
                }
            )
        )
    if missed:
        print("targets missed:\n  " + "\n  ".join(missed))
        return 1
    print(f"targets met: {', '.join(TARGETED)} within {TARGET}× of the fast mirror alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
