"""test_bundle round-trips ``gomirror cache export`` / ``import`` into an empty cache that then works with no network.

A ``TestSumdb`` vouches for a four-module graph that an ``UpstreamSimulator``
serves. ``export --go-mod`` resolves the project's graph and writes the
bundle; then both servers stop. ``import`` into an empty cache must verify
everything offline against the configured key; afterwards ``gomirror
verify`` (offline, from the imported proofs alone) passes and the go
command downloads the graph from ``gomirror serve --upstream off``. A bundle
with a tampered ``.mod`` (with or without a forged lookup record to match)
is refused and changes nothing, and so is an import with the checksum
database off.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import Corpus, h1_mod
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

pytestmark = pytest.mark.e2e

PREFIX = "example.com/g"
GRAPH = [f"{PREFIX}/m{i:03d}" for i in range(4)]
V = "v1.0.0"


@dataclasses.dataclass
class World:
    tmp: Path
    corpus: Corpus
    app: Path
    bundle: Path
    sumdb: str  # the --sumdb value: key and (now dead) URL

    def cache_cmd(
        self, *args: str, cache: Path, sumdb: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gomirror.cli.main",
                "cache",
                *args,
                "--cache-dir",
                str(cache),
                "--upstream",
                "off",
                "--sumdb",
                sumdb or self.sumdb,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def import_json(self, bundle: Path, cache: Path, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = self.cache_cmd("import", str(bundle), "--json", *extra, cache=cache)
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)


def snapshot(cache: Path) -> dict[str, bytes]:
    """Every file of a cache but the per-process temp and lock files."""
    if not cache.exists():
        return {}
    out = {}
    for f in cache.rglob("*"):
        rel = str(f.relative_to(cache))
        if f.is_file() and not rel.startswith(("_gomirror/tmp", "_gomirror/locks")):
            out[rel] = f.read_bytes()
    return out


def rewrite(src: Path, dst: Path, changes: dict[str, bytes]) -> None:
    """Copy a tar, replacing the content of some members."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            if m.name in changes:
                data = changes[m.name]
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


def member(bundle: Path, name: str) -> bytes:
    with tarfile.open(bundle) as t:
        f = t.extractfile(name)
        assert f is not None
        return f.read()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("bundle")
    corpus = Corpus()
    corpus.synthetic_graph(len(GRAPH), prefix=PREFIX, versions=(V,), go_version="1.16")

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    app = tmp / "app"
    app.mkdir()
    (app / "go.mod").write_text(f"module example.com/app\n\ngo 1.16\n\nrequire {GRAPH[0]} {V}\n")
    bundle = tmp / "out.tar"
    with TestSumdb(source=source) as db, UpstreamSimulator(corpus) as sim:
        spec = f"{db.verifier_key} {db.url}"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "gomirror.cli.main",
                "cache",
                "export",
                "--go-mod",
                str(app / "go.mod"),
                str(bundle),
                "--json",
                "--cache-dir",
                str(tmp / "online"),
                "--upstream",
                sim.url,
                "--sumdb",
                spec,
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        rep = json.loads(proc.stdout)
        assert rep["versions"] == len(GRAPH) and rep["missing"] == []
        assert rep["sumdb"] == {db.name: len(GRAPH)}
    # From here on, no mirror and no checksum database is reachable.
    yield World(tmp, corpus, app, bundle, spec)


def test_round_trip_into_an_empty_cache_then_go_downloads_offline(world: World) -> None:
    cache = world.tmp / "imported"
    code, rep = world.import_json(world.bundle, cache)
    assert code == 0, rep
    assert (rep["versions"], rep["files_added"], rep["files_present"]) == (4, 12, 0)
    assert rep["proofs_added"] >= 1 + len(GRAPH)  # the tree head, the lookups, the tiles
    assert rep["unverified"] == []
    side = json.loads((cache / GRAPH[1] / "@v" / f"{V}.zip.json").read_text())
    assert side["h1"] == world.corpus[(GRAPH[1], V)].h1 and side["verdict"]["verified"] is True
    assert side["upstream"].startswith("bundle out.tar")

    # The imported proofs alone verify every file again, offline.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gomirror.cli.main",
            "verify",
            "--cache-dir",
            str(cache),
            "--upstream",
            "off",
            "--sumdb",
            world.sumdb,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "checked 8 files: 8 ok, 0 mismatched, 0 skipped"

    # Importing again adds nothing.
    code, again = world.import_json(world.bundle, cache)
    assert code == 0 and (again["files_added"], again["files_present"]) == (0, 12)

    (world.tmp / "srv").mkdir()
    with GomirrorProcess(world.tmp / "srv", upstream="off", cache_dir=cache) as mirror:
        go = GoRunner(world.tmp / "go", mirror.url, extra_env={"GOFLAGS": "-modcacherw -mod=mod"})
        objs = go.mod_download_json("all", cwd=world.app)
        assert [o for o in objs if "Error" in o] == []
        assert {o["Path"] for o in objs} == set(GRAPH)
        for o in objs:
            assert o["Sum"] == world.corpus[(o["Path"], V)].h1


@pytest.mark.parametrize("forge_lookup", [False, True], ids=["tampered-mod", "forged-lookup"])
def test_a_tampered_bundle_is_refused_and_changes_nothing(world: World, forge_lookup: bool) -> None:
    target = GRAPH[2]
    key = f"{target}/@v/{V}.mod"
    evil = member(world.bundle, key) + b"require example.com/evil v1.0.0\n"
    changes = {key: evil}
    if forge_lookup:
        with tarfile.open(world.bundle) as t:
            name = next(n for n in t.getnames() if n.endswith(f"/lookup/{target}@{V}"))
        record = member(world.bundle, name)
        good = world.corpus[(target, V)].gomod_h1.encode()
        changes[name] = record.replace(good, h1_mod(evil).encode())
    bad = world.tmp / f"bad-{forge_lookup}.tar"
    rewrite(world.bundle, bad, changes)

    for cache in (world.tmp / f"empty-{forge_lookup}", world.tmp / f"full-{forge_lookup}"):
        if cache.name.startswith("full"):
            assert world.import_json(world.bundle, cache)[0] == 0
        before = snapshot(cache)
        code, rep = world.import_json(bad, cache)
        assert code == 1, rep
        refused = [r for r in rep["refused"] if target in r]
        assert refused, rep
        if forge_lookup:
            assert "failed authentication" in refused[0], refused
        else:
            assert "checksum mismatch" in refused[0], refused
        assert snapshot(cache) == before

    proc = world.cache_cmd("import", str(bad), cache=world.tmp / "human")
    assert proc.returncode == 1
    assert "nothing was added to the cache" in proc.stdout


def test_import_with_the_database_off_needs_unverified(world: World) -> None:
    cache = world.tmp / "nosumdb"
    proc = world.cache_cmd("import", str(world.bundle), cache=cache, sumdb="off")
    assert proc.returncode == 1
    assert "--unverified" in proc.stdout and "--sumdb KEY" in proc.stdout
    assert not (cache / PREFIX).exists()
    proc = world.cache_cmd(
        "import", str(world.bundle), "--unverified", "--json", cache=cache, sumdb="off"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["files_added"] == 12 and len(rep["unverified"]) == 4


def test_not_a_bundle(world: World, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as t:
        info = tarfile.TarInfo("../escape")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
    code, rep = world.import_json(junk, tmp_path / "c")
    assert code == 1 and any("not a valid cache key" in r for r in rep["refused"])
    (tmp_path / "plain").write_text("hello")
    code, rep = world.import_json(tmp_path / "plain", tmp_path / "c")
    assert code == 1 and "cannot read as a tar file" in rep["refused"][0]
