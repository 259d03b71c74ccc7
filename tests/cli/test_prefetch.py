"""test_prefetch runs ``gomirror prefetch`` on a project, then proves the cache complete with the real go command.

The corpus is a small hand-made graph whose every edge is known, so the
expected files are written down, not recomputed: ``example.com/app`` (go 1.16,
so the go command loads the whole graph) requires ``a``, which requires
``b`` and ``c``; ``b`` requires an older ``c`` and ``d@v1.0.0``, which the
app excludes (so ``d@v1.1.0``, the next listed version, is used); the app
replaces ``old`` by ``new@v1.2.0`` and ``local`` by a directory whose go.mod
requires ``f``. Prefetch fills an empty cache from one simulator; then a
``gomirror serve --upstream off`` on that cache must satisfy ``go mod
download all`` and load every package with no upstream at all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import Corpus, h1_mod
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator

pytestmark = pytest.mark.e2e

E = "example.com/"


def _mod(path: str, *reqs: str) -> bytes:
    text = f"module {path}\n\ngo 1.16\n"
    if reqs:
        text += "\nrequire (\n" + "".join(f"\t{r}\n" for r in reqs) + ")\n"
    return text.encode()


def _pkg(path: str, *reqs: str) -> dict[str, bytes]:
    name = path.rsplit("/", 1)[-1]
    imports = "".join(f'import _ "{r.split()[0]}"\n' for r in reqs)
    return {f"{name}.go": f"package {name}\n\n{imports}".encode()}


def build_graph() -> Corpus:
    c = Corpus()
    edges: dict[tuple[str, str], tuple[str, ...]] = {
        ("a", "v1.0.0"): (E + "b v1.0.0", E + "c v1.1.0"),
        ("b", "v1.0.0"): (E + "c v1.0.0", E + "d v1.0.0"),
        ("b", "v1.1.0"): (),
        ("c", "v1.0.0"): (),
        ("c", "v1.1.0"): (E + "e v1.0.0",),
        ("d", "v1.0.0"): (E + "e v1.1.0",),  # excluded: its requirement must not count
        ("d", "v1.1.0"): (),
        ("e", "v1.0.0"): (),
        ("e", "v1.1.0"): (),
        ("new", "v1.2.0"): (E + "e v1.0.0",),
        ("old", "v1.0.0"): (),  # replaced: never fetched
        ("f", "v1.0.0"): (),
    }
    for (name, version), reqs in edges.items():
        path = E + name
        c.add_module(path, version, _pkg(path, *reqs), gomod=_mod(path, *reqs))
    return c


# Versions whose .info and .mod the graph needs, and the zips of the build list.
VERSIONS = {
    "a@v1.0.0",
    "b@v1.0.0",
    "c@v1.0.0",
    "c@v1.1.0",
    "d@v1.1.0",
    "e@v1.0.0",
    "new@v1.2.0",
    "f@v1.0.0",
}
ZIPS = {"a@v1.0.0", "b@v1.0.0", "c@v1.1.0", "d@v1.1.0", "e@v1.0.0", "new@v1.2.0", "f@v1.0.0"}
FILES = 2 * len(VERSIONS) + len(ZIPS)


def write_app(d: Path) -> Path:
    (d / "local").mkdir(parents=True)
    (d / "local" / "go.mod").write_bytes(_mod(E + "local", E + "f v1.0.0"))
    (d / "local" / "local.go").write_text(f'package local\n\nimport _ "{E}f"\n')
    (d / "go.mod").write_text(
        f"module {E}app\n\ngo 1.16\n\n"
        f"require (\n\t{E}a v1.0.0\n\t{E}old v1.0.0 // indirect\n\t{E}local v0.0.0\n)\n\n"
        f"exclude {E}d v1.0.0\n\n"
        f"replace {E}old v1.0.0 => {E}new v1.2.0\n"
        f"replace {E}local => ./local\n"
    )
    (d / "main.go").write_text(
        f'package main\n\nimport (\n\t_ "{E}a"\n\t_ "{E}local"\n\t_ "{E}old"\n)\n\nfunc main() {{}}\n'
    )
    return d


def gomirror(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gomirror.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )


def prefetch_json(*args: str) -> tuple[int, dict[str, Any]]:
    proc = gomirror("prefetch", "--json", "--sumdb", "off", *args)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def short(objs: list[dict[str, Any]]) -> set[str]:
    return {f"{o['module'].removeprefix(E)}@{o['version']}" for o in objs}


@pytest.fixture
def sim() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(build_graph(), name="graph") as s:
        yield s


def test_prefetch_then_go_builds_with_no_upstream(tmp_path: Path, sim: UpstreamSimulator) -> None:
    app = write_app(tmp_path / "app")
    cache = tmp_path / "cache"
    code, rep = prefetch_json(str(app), "--cache-dir", str(cache), "--upstream", sim.url)
    assert code == 0, rep
    assert rep["failed"] == 0 and rep["failures"] == []
    assert (rep["fetched"], rep["cached"]) == (FILES, 0)
    assert rep["by_kind"]["zip"] == {"fetched": len(ZIPS), "cached": 0, "failed": 0}
    assert rep["versions"] == len(VERSIONS) and rep["zips"] == len(ZIPS)
    assert rep["excluded"] == [f"{E}d@v1.0.0"]
    assert rep["replaced"] == {
        f"{E}old@v1.0.0": f"{E}new@v1.2.0",
        f"{E}local@v0.0.0": str(app / "local"),
    }
    assert rep["selected"][f"{E}c"] == "v1.1.0" and rep["selected"][f"{E}e"] == "v1.0.0"
    # Nothing beyond the graph was fetched: the excluded and the replaced versions stayed away.
    assert sim.count("/example.com/d/@v/v1.0.0.*") == 0
    assert sim.count("/example.com/old/*") == 0
    assert sim.count("/example.com/e/@v/v1.1.0.*") == 0
    for v in ZIPS:
        assert sim.count(f"/{E}{v.replace('@', '/@v/')}.zip") == 1

    # Second run: everything is already there.
    code, again = prefetch_json(str(app), "--cache-dir", str(cache), "--upstream", sim.url)
    assert code == 0, again
    assert (again["fetched"], again["cached"], again["failed"]) == (0, FILES, 0)

    # The proof: the go command, with gomirror serving this cache and no upstream.
    sim.stop()
    (tmp_path / "srv").mkdir()
    with GomirrorProcess(tmp_path / "srv", upstream="off", cache_dir=cache) as mirror:
        go = GoRunner(tmp_path / "go", mirror.url, extra_env={"GOFLAGS": "-modcacherw -mod=mod"})
        objs = go.mod_download_json("all", cwd=app)
        errors = [o for o in objs if "Error" in o]
        assert errors == [], errors
        got = {f"{o['Path'].removeprefix(E)}@{o['Version']}" for o in objs}
        # Since Go 1.16 a requirement on an excluded version is ignored: d is not in the
        # build list until go build adds it (below, from the cache's list of d).
        assert got == ZIPS - {"d@v1.1.0"}
        # Loading every package needs every zip (and d's list, to add d back): no compiling.
        pkgs = go.run("list", "-deps", "./...", cwd=app).stdout.split()
        assert {E + "d", E + "old", E + "f", E + "local"} <= set(pkgs)
        assert f"{E}d v1.1.0" in go.run("list", "-m", "all", cwd=app).stdout


def test_gosum_lines_and_failures_are_reported(tmp_path: Path, sim: UpstreamSimulator) -> None:
    corpus = sim.corpus
    c10, e11 = corpus[(E + "c", "v1.0.0")], corpus[(E + "e", "v1.1.0")]
    gosum = tmp_path / "go.sum"
    gosum.write_text(
        "\n".join(
            [
                *c10.go_sum_lines(),  # the zip and the go.mod
                f"{E}e v1.1.0/go.mod {e11.gomod_h1}",  # only the go.mod
                f"{E}b v1.1.0/go.mod {h1_mod(b'module wrong')}",  # go.sum disagrees
                f"{E}missing v1.0.0/go.mod {h1_mod(b'x')}",  # no such module
            ]
        )
        + "\n"
    )
    code, rep = prefetch_json(
        str(gosum), "--cache-dir", str(tmp_path / "cache"), "--upstream", sim.url
    )
    assert code == 1, rep
    # c@v1.0.0: info, mod, zip; e@v1.1.0 and b@v1.1.0: info and mod each; missing: both fail.
    assert (rep["fetched"], rep["failed"]) == (3 + 2 + 2 - 1, 3)
    by_file = {(f["module"].removeprefix(E), f["file"]): f["error"] for f in rep["failures"]}
    assert set(by_file) == {("b", "mod"), ("missing", "info"), ("missing", "mod")}
    assert "go.sum has" in by_file[("b", "mod")]
    assert "not found" in by_file[("missing", "mod")]

    # The human report names the failures and ends with the summary.
    proc = gomirror(
        "prefetch",
        "--sumdb",
        "off",
        str(gosum),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--upstream",
        sim.url,
    )
    assert proc.returncode == 1
    assert "example.com/missing@v1.0.0" in proc.stdout
    assert "4 versions, 1 zips: 0 files fetched, 6 already cached, 3 failed" in proc.stdout


def test_server_mode_warms_a_running_gomirror(tmp_path: Path, sim: UpstreamSimulator) -> None:
    app = write_app(tmp_path / "app")
    (tmp_path / "srv").mkdir()
    # No predicted fetches: prefetch itself must be what fills the server (exact counts).
    env = {"GOMIRROR_PREDICT": "off"}
    with GomirrorProcess(tmp_path / "srv", upstream=sim.url, env=env) as mirror:
        code, rep = prefetch_json(
            str(app), "--server", mirror.url, "--cache-dir", str(tmp_path / "own")
        )
        assert code == 0, rep
        assert (rep["fetched"], rep["cached"], rep["failed"]) == (FILES, 0, 0)
        assert rep["source"] == mirror.url
        code, again = prefetch_json(
            str(app), "--server", mirror.url, "--cache-dir", str(tmp_path / "own")
        )
        assert (again["fetched"], again["cached"]) == (0, FILES), again
    # The server's cache holds every zip; the tool's own cache holds none.
    for v in ZIPS:
        path, version = v.split("@")
        assert (mirror.cache_dir / E / path / "@v" / f"{version}.zip").is_file()
    assert not list((tmp_path / "own").glob("example.com"))


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    proc = gomirror("prefetch", str(tmp_path / "nothing-here"), "--cache-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "no such file or directory" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = gomirror("prefetch", str(tmp_path / "empty"), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2 and "no go.work, go.mod or go.sum" in proc.stderr


def test_workspace_graph_in_process(tmp_path: Path) -> None:
    """go.work: both used modules are main modules; the workspace's replace wins over theirs."""
    import asyncio

    from gomirror.errors import NotFound
    from gomirror.tools.graph import ModuleVersion, load_inputs, resolve

    corpus = build_graph()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (tmp_path / "one" / "go.mod").write_text(
        f"module {E}one\n\ngo 1.21\n\nrequire (\n\t{E}two v0.0.0\n\t{E}c v1.0.0\n)\n"
        f"replace {E}c v1.0.0 => {E}e v1.0.0\n"
    )
    (tmp_path / "two" / "go.mod").write_text(f"module {E}two\n\ngo 1.21\n\nrequire {E}b v1.0.0\n")
    (tmp_path / "go.work").write_text(
        f"go 1.21\n\nuse (\n\t./one\n\t./two // comment\n)\n\nreplace {E}c v1.0.0 => {E}c v1.1.0\n"
    )
    inputs = load_inputs([tmp_path])
    asked: list[str] = []

    async def read_mod(mv: ModuleVersion) -> bytes:
        asked.append(str(mv))
        found = corpus.get(mv.path, mv.version)
        if found is None or found.mod is None:
            raise NotFound(f"no {mv}")
        return found.mod

    async def versions(module: str) -> list[str]:
        return corpus.versions(module)

    async def canonical(module: str, query: str) -> str:
        raise NotFound(query)

    graph = asyncio.run(resolve(inputs, read_mod, versions, canonical))
    got = {str(mv).removeprefix(E) for mv in graph.versions}
    # two is a main module (never fetched); c v1.0.0 is the workspace's c v1.1.0, which
    # needs e v1.0.0; b v1.0.0 needs c v1.0.0 (replaced) and d v1.0.0 (not excluded here).
    assert got == {"b@v1.0.0", "c@v1.1.0", "d@v1.0.0", "e@v1.0.0", "e@v1.1.0"}
    assert f"{E}two@v0.0.0" not in asked
    assert graph.replaced[ModuleVersion(E + "c", "v1.0.0")] == f"{E}c@v1.1.0"
    assert graph.failures == {}
