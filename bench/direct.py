"""Direct mode, cold: gomirror building a module from git vs the go command's own direct mode.

Usage: ``python bench/direct.py [--quick] [--runs N] [--commits N] [--files N]``

Two local repositories are generated with ``git fast-import`` (deterministic
content and dates): ``big`` (default 10,000 commits over a 1,500-file tree,
tags v0.1.0 … v0.4.0 spread over the history, the last two annotated) and
``small`` (300 commits, 80 files, tags v1.0.0 … v1.2.0). Both are reached as
``github.com/bench/<name>`` through a git config whose ``insteadOf`` rewrites
that URL to the ``file://`` repository, the same file for gomirror
(``GOMIRROR_GIT_CONFIG``) and for the go command (``GIT_CONFIG_GLOBAL``), so
both see the same remote and no network is involved: the difference is all work.

Each cell times the first ``go mod download -json m@tag``:

- ``go direct``: the go command with ``GOPROXY=direct`` and an empty module cache
  (its git cache under GOMODCACHE is empty too);
- ``gomirror``: the go command with an empty module cache through a freshly
  started ``gomirror serve --upstream direct`` with an empty cache directory,
  which has served one unrelated module (``warm``) before the timed download,
  so interpreter start-up costs are not counted.

Targets: the newest tag of each repository and an older tag of ``big`` (which
also makes both sides read the newest tag's go.mod, for retractions). Runs
alternate (go, gomirror, go, ...); medians of ``--runs`` (default 3) rounds are
reported with the ratio gomirror / go. A cell whose go side took under half a
second in the first round (``small``: about 0.2 s, where one round differs
from the next by ±30 ms) is timed three times per later round, so its median
rests on more pairs; the table says how many. Exit status 1 when a ratio is above
1.0 (the issue-13 target), 2 when a tool is missing.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_summary, median, require_tools, start_gomirror
from support.gitrepos import GitWorld, GoCommand
from support.gorunner import GoRunner

BASE_TIME = 1_600_000_000
TARGET = 1.0
SHORT_CELL = 0.5  # seconds: a cell whose go side takes less than this ...
SHORT_REPEATS = 3  # ... is timed this many times per round after the first


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _file_text(rng: random.Random, pkg: str, n: int, rev: int) -> bytes:
    words = " ".join(rng.choice(("alpha", "beta", "gamma", "delta", "omega")) for _ in range(40))
    body = "".join(f"// {words} {i}\nvar v{i} = {rev * 31 + i}\n" for i in range(n))
    return f"package {pkg}\n\n{body}".encode()


def build_repo(
    path: Path, module: str, commits: int, files: int, tags: list[tuple[str, float]]
) -> None:
    """Create a bare-ish repository at path with commits over files; tags at fractions of history."""
    rng = random.Random(module)
    names = [f"pkg{i % 40:02d}/file{i:04d}.go" for i in range(files)]
    tag_at = {
        max(1, round(frac * commits)): (name, i >= len(tags) - 2)
        for i, (name, frac) in enumerate(tags)
    }
    out: list[bytes] = []
    for n in range(1, commits + 1):
        when = BASE_TIME + n * 600
        out.append(b"commit refs/heads/main\nmark :%d\n" % n)
        out.append(b"committer Bench <bench@example.test> %d +0000\n" % when)
        out.append(_data(b"change %d" % n))
        if n > 1:
            out.append(b"from :%d\n" % (n - 1))
        if n == 1:
            out.append(
                b"M 100644 inline go.mod\n" + _data(f"module {module}\n\ngo 1.21\n".encode())
            )
            out.append(b"M 100644 inline LICENSE\n" + _data(b"bench license\n"))
            changed = names
        else:
            changed = rng.sample(names, 2)
        for name in changed:
            pkg = name.split("/", 1)[0]
            out.append(f"M 100644 inline {name}\n".encode() + _data(_file_text(rng, pkg, 20, n)))
        out.append(b"\n")
        if n in tag_at:
            tag, annotated = tag_at[n]
            if annotated:
                out.append(f"tag {tag}\nfrom :{n}\n".encode())
                out.append(b"tagger Bench <bench@example.test> %d +0000\n" % when)
                out.append(_data(tag.encode()))
            else:
                out.append(f"reset refs/tags/{tag}\nfrom :{n}\n\n".encode())
    path.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=env)
    subprocess.run(
        ["git", "fast-import", "--quiet"], input=b"".join(out), cwd=path, check=True, env=env
    )
    subprocess.run(["git", "checkout", "-q", "main"], cwd=path, check=True, env=env)
    # A served repository is packed like a real host's: one pack with deltas.
    subprocess.run(["git", "repack", "-a", "-d", "-q"], cwd=path, check=True, env=env)


class Bench:
    def __init__(self, tmp: Path, world: GitWorld) -> None:
        self.tmp = tmp
        self.world = world
        self.n = 0

    def _dir(self, label: str) -> Path:
        self.n += 1
        d = self.tmp / f"{self.n:03d}-{label}"
        d.mkdir(parents=True)
        return d

    @staticmethod
    def _check(out: str, target: str) -> str:
        objs = [json.loads(x) for x in out.replace("}\n{", "}\x00{").split("\x00") if x.strip()]
        if len(objs) != 1 or "Error" in objs[0] or not objs[0].get("Sum"):
            raise SystemExit(f"bench: {target}: unexpected go output: {out[:500]}")
        return str(objs[0]["Sum"])

    def go_direct(self, target: str) -> tuple[float, str]:
        go = GoCommand(self._dir("go"), self.world.git_config)
        t0 = time.monotonic()
        proc = go.run("mod", "download", "-json", target)
        took = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"bench: go direct {target}: {proc.stderr.decode()[-500:]}")
        return took, self._check(proc.stdout.decode(), target)

    def gomirror(self, target: str) -> tuple[float, str]:
        d = self._dir("gm")
        env = {"GOMIRROR_GIT_CONFIG": str(self.world.git_config)}
        gm = start_gomirror(d / "server", "direct", d / "cache", env=env)
        try:
            # A running server, not a starting one: one unrelated module first,
            # so Python's first-use costs (imports, sessions) are not timed.
            for ext in ("info", "zip"):
                gm.get(f"/github.com/bench/warm/@v/v1.0.0.{ext}", timeout=60)
            go = GoRunner(d, gm.url)
            t0 = time.monotonic()
            proc = go.run("mod", "download", "-json", target, timeout=600)
            took = time.monotonic() - t0
        finally:
            gm.stop()
        return took, self._check(proc.stdout, target)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run, 3,000 commits")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 3)")
    ap.add_argument("--commits", type=int, default=None, help="commits in big (default 10000)")
    ap.add_argument("--files", type=int, default=1500, help="files in big's tree")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--json", type=Path, default=None, help="also write results here")
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    commits = args.commits or (3000 if args.quick else 10000)
    tools = require_tools("go", "git")
    print("\n".join(machine_summary(tools)))
    print(
        "git: "
        + subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    )
    tmp = Path(tempfile.mkdtemp(prefix="gomirror-bench-direct-"))
    world = GitWorld(tmp / "world")
    t0 = time.monotonic()
    big_tags = [("v0.1.0", 0.25), ("v0.2.0", 0.5), ("v0.3.0", 0.75), ("v0.4.0", 0.999)]
    build_repo(world.repos / "bench" / "big", "github.com/bench/big", commits, args.files, big_tags)
    small_tags = [("v1.0.0", 0.3), ("v1.1.0", 0.6), ("v1.2.0", 0.99)]
    build_repo(world.repos / "bench" / "small", "github.com/bench/small", 300, 80, small_tags)
    build_repo(world.repos / "bench" / "warm", "github.com/bench/warm", 3, 5, [("v1.0.0", 1.0)])
    print(
        f"repos: big {commits} commits x {args.files} files, small 300 x 80; "
        f"built in {time.monotonic() - t0:.1f}s; tmp {tmp}"
    )
    targets = [
        "github.com/bench/big@v0.4.0",
        "github.com/bench/big@v0.2.0",
        "github.com/bench/small@v1.2.0",
    ]
    bench = Bench(tmp / "runs", world)
    results: dict[str, dict[str, list[float]]] = {}
    failed = False
    try:
        for i in range(runs):
            print(f"round {i + 1}/{runs}")
            for target in targets:
                cell = results.setdefault(target, {"go": [], "gomirror": []})
                # A short cell is noisy and cheap: it gets SHORT_REPEATS pairs per round.
                short = bool(cell["go"]) and median(cell["go"]) < SHORT_CELL
                for _ in range(SHORT_REPEATS if short else 1):
                    g, sum_go = bench.go_direct(target)
                    m, sum_gm = bench.gomirror(target)
                    if sum_go != sum_gm:
                        print(f"  {target}: Sum differs: go {sum_go}, gomirror {sum_gm}")
                        failed = True
                    cell["go"].append(g)
                    cell["gomirror"].append(m)
                    print(f"  {target}: go {g:.3f}s  gomirror {m:.3f}s")
                    sys.stdout.flush()
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(f"| target | go direct (s) | gomirror (s) | pairs | ratio (target <= {TARGET:.1f}) |")
    print("|---|---|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for target, cell in results.items():
        g, m = median(cell["go"]), median(cell["gomirror"])
        ratio = m / g if g else float("inf")
        summary[target] = {"go": g, "gomirror": m, "ratio": ratio, "pairs": len(cell["go"])}
        mark = "" if ratio <= TARGET else "  MISSED"
        pairs = len(cell["go"])
        print(f"| {target} | {g:.3f} | {m:.3f} | {pairs} | {ratio:.2f}x{mark} |")
        failed = failed or ratio > TARGET
    if args.json:
        args.json.write_text(
            json.dumps({"runs": runs, "commits": commits, "results": summary}, indent=2)
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
