"""cli.doctor is ``gomirror doctor [DIR | module@version]``: why is ``go mod download`` failing or slow.

It reads the go command's own settings (``go env -json`` when ``go`` is on
PATH, else the environment), checks them, probes every GOPROXY entry and the
checksum-database route, and for a project (go.mod + go.sum; the current
directory by default when it has a go.mod) or one ``module@version``
compares go.sum, each mirror and the database. Output: tables and findings
for a person (rich), or one JSON object with ``--json``; both end with the
verdict and the exact fix lines. Exit status: 0 when nothing is wrong, 1 when
any error or warning was found, 2 for a usage error or when ``go env`` fails.
``--offline`` runs only the settings checks (no network).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from gomirror.tools.doctor import DoctorOptions, DoctorResult, parse_target, run_doctor
from gomirror.tools.findings import Finding
from gomirror.tools.goenv import GoEnvError, read_goenv
from gomirror.tools.probe import Probe, ProbeOptions

SHOWN_VARS = (
    "GOPROXY",
    "GOSUMDB",
    "GOPRIVATE",
    "GONOPROXY",
    "GONOSUMDB",
    "GOINSECURE",
    "GOFLAGS",
    "GOTOOLCHAIN",
    "GOAUTH",
    "GOMODCACHE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "GONOSUMCHECK",
)
_LABEL = {"error": "ERROR", "warning": "WARN", "info": "info"}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="diagnose the go command's module settings, mirrors and checksums",
        description="Check go env settings, probe every GOPROXY mirror and the checksum "
        "database route, and compare go.sum, the mirrors and the database.",
    )
    p.add_argument("target", nargs="?", help="project directory (go.mod) or module@version")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--offline", action="store_true", help="check settings only: no network")
    p.add_argument("--no-zips", action="store_true", help="compare go.mod hashes only")
    p.add_argument("--go", help="the go command to ask (default: go on PATH)")
    p.add_argument(
        "--connect-timeout", type=float, default=5.0, help="seconds to connect (default 5)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="seconds a mirror may stay silent before it counts as hanging (default 10)",
    )
    p.add_argument(
        "--slow", type=float, default=1.0, help="first byte later than this is slow (default 1)"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    project, module = parse_target(args.target, Path.cwd())
    try:
        env = read_goenv(go=args.go)
    except GoEnvError as e:
        print(f"gomirror doctor: cannot read the go command's settings: {e}", file=sys.stderr)
        return 2
    opts = DoctorOptions(
        offline=bool(args.offline),
        zips=not args.no_zips,
        probe=ProbeOptions(args.connect_timeout, args.timeout, args.slow),
    )
    result = asyncio.run(run_doctor(env, project, module, opts))
    if args.json:
        print(json.dumps(to_json(result), indent=2))
    else:
        render(result, Console(highlight=False))
    sys.stdout.flush()
    return result.verdict.exit_code


def to_json(r: DoctorResult) -> dict[str, Any]:
    v = r.verdict
    return {
        "source": r.env.source,
        "go": r.env.go,
        "settings": {k: r.env.get(k) for k in SHOWN_VARS},
        "project": str(r.project.dir) if r.project else None,
        "module": "@".join(r.module) if r.module else None,
        "probes": r.probes.to_json() if r.probes else None,
        "modules": [c.to_json() for c in r.checks],
        "recommended_goproxy": r.recommended_goproxy,
        "findings": [f.to_json() for f in v.sorted()],
        "verdict": {
            "ok": v.ok,
            "errors": v.errors,
            "warnings": v.warnings,
            "exit_code": v.exit_code,
            "fix": v.fix_lines,
        },
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _supported(p: Probe | None) -> str:
    if p is None:
        return "-"
    if p.outcome in ("dead", "hang"):
        return p.outcome
    return str(p.status)


def render(r: DoctorResult, console: Console) -> None:
    """Print tables, findings and the verdict for a person."""
    env = r.env
    where = f"go env -json ({env.get('GOVERSION')})" if env.go else "the environment (no go)"
    console.print(f"go settings from {where}, GOENV={env.get('GOENV') or '-'}", soft_wrap=True)
    settings = Table(title="settings", title_justify="left")
    settings.add_column("variable")
    settings.add_column("value", overflow="fold")
    for k in SHOWN_VARS:
        if env.get(k):
            settings.add_row(k, env.get(k))
    console.print(settings)
    if r.probes is not None:
        table = Table(title="mirrors", title_justify="left")
        table.add_column("proxy", no_wrap=True)  # a URL stays copyable
        for col in ("status", "connect", "tls", "first byte", "sumdb", "verdict"):
            table.add_column(col, overflow="fold")
        for p in r.probes.proxies:
            table.add_row(
                p.target,
                str(p.status or "-"),
                _ms(p.connect),
                _ms(p.tls),
                _ms(p.first_byte),
                _supported(r.probes.supported.get(p.target)),
                p.outcome,  # the error itself is in the findings below
            )
        console.print(table)
        route, rp = r.probes.route, r.probes.route_probe
        line = f"checksum database {r.probes.name or '(off)'}: {route.kind}"
        if route.base:
            line += f" via {route.base}"
        if rp is not None:
            line += f" (latest: {rp.status or rp.outcome}, first byte {_ms(rp.first_byte)})"
        console.print(line, soft_wrap=True)
    if r.checks:
        _render_modules(r, console)
    _render_findings(r.verdict.sorted(), console)
    console.print(r.verdict.summary(), soft_wrap=True)
    fixes = r.verdict.fix_lines
    if fixes:
        console.print("fix:", soft_wrap=True)
        for line in fixes:
            console.print(f"  {line}", soft_wrap=True, markup=False)


def _render_modules(r: DoctorResult, console: Console) -> None:
    proxies = [p.target for p in r.probes.proxies] if r.probes else []
    table = Table(title="modules", title_justify="left")
    table.add_column("module", overflow="fold")
    table.add_column("go.sum")
    table.add_column("sumdb")
    for i, _ in enumerate(proxies):
        table.add_column(f"#{i + 1}")
    for c in r.checks:
        for kind in c.kinds:
            gs = c.gosum.get(kind)
            db = (c.db or {}).get(kind)
            ref = db or gs
            cells = []
            served = {s.proxy: s for s in c.served.get(kind, [])}
            for p in proxies:
                s = served.get(p)
                if s is None:
                    cells.append("-")
                elif s.error:
                    cells.append("invalid" if s.error.startswith("invalid") else "error")
                elif s.h1 is None:
                    cells.append(str(s.status))
                else:
                    cells.append("ok" if ref is None or s.h1 == ref else "DIFFERS")
            db_cell = "ok" if db and (not gs or gs == db) else (c.db_state if not db else "DIFFERS")
            table.add_row(
                c.name + ("/go.mod" if kind == "mod" else ""),
                "yes" if gs else "missing",
                db_cell,
                *cells,
            )
    console.print(table)
    for i, p in enumerate(proxies):
        console.print(f"  #{i + 1} = {p}", soft_wrap=True, markup=False)


def _render_findings(findings: list[Finding], console: Console) -> None:
    for f in findings:
        console.print(f"{_LABEL[f.severity]:5} {f.title}", soft_wrap=True, markup=False)
        if f.explanation:
            console.print(f"      {f.explanation}", soft_wrap=True, markup=False)
        for line in f.fix:
            console.print(f"      fix: {line}", soft_wrap=True, markup=False)
