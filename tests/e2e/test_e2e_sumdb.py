"""test_e2e_sumdb has the real go command verify a module graph through gomirror's sumdb support.

Go's testdata modules (rsc.io/quote v1.5.2 → rsc.io/sampler v1.3.0 →
golang.org/x/text) are served by an ``UpstreamSimulator``; a ``TestSumdb``
signed with cmd/go's test key records their hashes lazily (its source callback
computes h1 from the corpus). The go command runs with ``GOSUMDB=<test key>``
(no URL, so it probes ``<gomirror>/sumdb/<name>/supported`` and sends every
lookup and tile through gomirror) and no go.sum, so every line it writes was
checked against the database. Also covered: a database reachable only through
an upstream mirror's ``/sumdb/`` route, a forked database, no-sumdb patterns,
a version the database does not know, and ``--sumdb off``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from support.corpus import Corpus, escape_path, escape_version
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb

pytestmark = pytest.mark.e2e

QUOTE, SAMPLER, TEXT = "rsc.io/quote", "rsc.io/sampler", "golang.org/x/text"
GRAPH = {
    (QUOTE, "v1.5.2"),
    (SAMPLER, "v1.3.0"),
    (TEXT, "v0.0.0-20170915032832-14c0d48ead0c"),
}
PRIVATE = "example.com/private"
UNKNOWN = ("example.com/unrecorded", "v1.0.0")  # served by the mirror, unknown to the database


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    c = Corpus.from_go_testdata(only=[QUOTE, SAMPLER, TEXT])
    c.add_module(PRIVATE + "/lib", "v1.0.0", {"lib.go": b"package lib\n"})
    c.add_module(UNKNOWN[0], UNKNOWN[1], {"u.go": b"package unrecorded\n"})
    return c


def make_sumdb(corpus: Corpus) -> TestSumdb:
    """A test database that records corpus modules on first lookup (not UNKNOWN)."""

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        if mv is None or (module, version) == UNKNOWN:
            return None
        return mv.h1, mv.gomod_h1

    return TestSumdb(source=source)


@dataclasses.dataclass
class World:
    tmp: Path
    corpus: Corpus
    sim: UpstreamSimulator
    db: TestSumdb
    mirror: GomirrorProcess


@pytest.fixture
def world(tmp_path: Path, corpus: Corpus) -> Iterator[World]:
    db = make_sumdb(corpus)
    with db, UpstreamSimulator(corpus, name="honest") as sim:
        mirror = GomirrorProcess(
            tmp_path / "mirror",
            upstream=sim.url,
            sumdb=f"{db.verifier_key} {db.url}",
            extra_args=["--nosumdb", PRIVATE],
        )
        (tmp_path / "mirror").mkdir()
        with mirror:
            yield World(tmp_path, corpus, sim, db, mirror)


def go_get_graph(tmp: Path, proxy: str) -> tuple[GoRunner, Path]:
    """``go get rsc.io/quote@v1.5.2`` in a fresh module with no go.sum; returns runner, dir."""
    go = GoRunner(tmp / "go", proxy, sumdb=TEST_VERIFIER_KEY)
    app = tmp / "app"
    go.init_module(app, "example.com/app")
    go.run("get", f"{QUOTE}@v1.5.2", cwd=app)
    return go, app


def expected_go_sum(corpus: Corpus, mods: set[tuple[str, str]]) -> set[str]:
    lines: set[str] = set()
    for path, version in mods:
        lines.update(corpus[(path, version)].go_sum_lines())
    return lines


def go_sum_lines(app: Path) -> set[str]:
    return {ln for ln in (app / "go.sum").read_text().splitlines() if ln}


def mod_key(path: str, version: str, ext: str) -> str:
    return f"{escape_path(path)}/@v/{escape_version(version)}.{ext}"


def test_go_command_verifies_graph_through_passthrough(world: World) -> None:
    _, app = go_get_graph(world.tmp, world.mirror.url)
    got = go_sum_lines(app)
    # Every line the go command wrote was authenticated by the database (no go.sum before).
    assert expected_go_sum(world.corpus, GRAPH) <= got, got
    reqs = world.db.requests
    for path, version in GRAPH:
        assert f"/lookup/{path}@{version}" in reqs, reqs
    assert any(r.startswith("/tile/8/0/") for r in reqs), reqs
    # gomirror itself verified what it cached, and recorded the verdict.
    for path, version in GRAPH:
        side = (world.mirror.cache_dir / (mod_key(path, version, "zip") + ".json")).read_text()
        assert '"verified": true' in side, side
    # The go command persisted a tree head signed by the test key.
    latest = world.tmp / "go" / "gorunner" / "gopath" / "pkg" / "sumdb" / world.db.name / "latest"
    assert latest.read_text().startswith("go.sum database tree\n")


def test_sumdb_reachable_only_through_upstream_mirror(tmp_path: Path, corpus: Corpus) -> None:
    db = make_sumdb(corpus)  # never started: served only under the mirror's /sumdb/<name>/

    async def handler(request: web.Request) -> web.Response:
        if request[SUBPATH] == "/supported":
            return web.Response(text="")  # a mirror that proxies the database says so
        a = db.answer(request[SUBPATH])
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    with UpstreamSimulator(corpus, name="mirror-with-sumdb") as sim:
        sim.mount(f"/sumdb/{db.name}", handler)
        (tmp_path / "mirror").mkdir()
        with GomirrorProcess(
            tmp_path / "mirror", upstream=sim.url, sumdb=TEST_VERIFIER_KEY
        ) as mirror:
            _, app = go_get_graph(tmp_path, mirror.url)
            assert expected_go_sum(corpus, GRAPH) <= go_sum_lines(app)
            via_mirror = [p for p in sim.paths() if p.startswith(f"/sumdb/{db.name}/")]
            for path, version in GRAPH:
                assert f"/sumdb/{db.name}/lookup/{path}@{version}" in via_mirror, via_mirror
            assert any("/tile/8/0/" in p for p in via_mirror), via_mirror
            assert "unavailable" not in mirror.log()


def test_forked_database_is_rejected(world: World) -> None:
    status, _, body = world.mirror.get(f"/{QUOTE}/@v/v1.5.2.mod")
    assert status == 200, body
    latest_path = world.mirror.cache_dir / "_gomirror" / "sumdb" / world.db.name / "latest"
    before = latest_path.read_bytes()
    assert before.startswith(b"go.sum database tree\n1\n")
    # Rewrite history: every head signed from now on contradicts the persisted one.
    world.db.fork(QUOTE, "v1.5.2", "h1:" + "A" * 43 + "=", "h1:" + "B" * 43 + "=")
    status, _, body = world.mirror.get(f"/{SAMPLER}/@v/v1.3.0.mod")
    text = body.decode()
    assert status == 502, text
    assert "SECURITY ERROR" in text and "inconsistent" in text, text
    assert latest_path.read_bytes() == before
    assert not (world.mirror.cache_dir / mod_key(SAMPLER, "v1.3.0", "mod")).exists()
    # The zip is refused as well.
    status, _, body = world.mirror.get(f"/{SAMPLER}/@v/v1.3.0.zip")
    assert status == 502 and b"inconsistent" in body, body
    assert not (world.mirror.cache_dir / mod_key(SAMPLER, "v1.3.0", "zip")).exists()


def test_nosumdb_modules_never_reach_database(world: World) -> None:
    go = GoRunner(world.tmp / "go", world.mirror.url, sumdb=TEST_VERIFIER_KEY, nosumdb=PRIVATE)
    objs = go.mod_download_json(f"{PRIVATE}/lib@v1.0.0")
    mv = world.corpus[(PRIVATE + "/lib", "v1.0.0")]
    assert objs[0].get("Error") is None, objs
    assert objs[0]["Sum"] == mv.h1 and objs[0]["GoModSum"] == mv.gomod_h1
    assert all(PRIVATE not in r for r in world.db.requests), world.db.requests
    side = (
        world.mirror.cache_dir / (mod_key(PRIVATE + "/lib", "v1.0.0", "zip") + ".json")
    ).read_text()
    assert '"verified": false' in side and "nosumdb" in side, side


def test_version_unknown_to_database_is_an_error(world: World) -> None:
    path, version = UNKNOWN
    go = GoRunner(world.tmp / "go", world.mirror.url, sumdb=TEST_VERIFIER_KEY)
    proc = go.run("mod", "download", "-json", f"{path}@{version}", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "not in checksum database" in out, out
    assert f"/lookup/{path}@{version}" in world.db.requests
    for ext in ("mod", "zip"):
        assert not (world.mirror.cache_dir / mod_key(path, version, ext)).exists()
    status, _, body = world.mirror.get(f"/{path}/@v/{version}.zip")
    assert status == 502 and b"not in checksum database" in body, body


def test_sumdb_off_warns_at_startup(tmp_path: Path, corpus: Corpus) -> None:
    with UpstreamSimulator(corpus) as sim:
        (tmp_path / "m").mkdir()
        with GomirrorProcess(tmp_path / "m", upstream=sim.url, sumdb="off") as mirror:
            status, _, _ = mirror.get(f"/{QUOTE}/@v/v1.5.2.mod")
            assert status == 200
            log = mirror.log()
    assert "checksum database verification is off" in log, log
    assert "WARNING" in log.upper()
