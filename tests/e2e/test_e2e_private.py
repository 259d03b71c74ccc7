"""test_e2e_private checks that private module paths never leave gomirror except towards git.

gomirror runs with ``--upstream "<simulator>,direct"`` and ``--private
"github.com/acme/private*,git.corp.example"``. The simulator is the public
mirror; a test checksum database (knowing only the public modules) is mounted
inside it at ``/sumdb/<name>/``, so it is reachable only through the mirror.
The real go command talks only to gomirror, with ``GOPRIVATE`` empty (so it
sends every request, private ones included, to gomirror) and ``GOSUMDB`` set to
the test key. It downloads and builds a graph mixing public modules (served by
the mirror and verified) and private ones (built from local git repositories),
and runs the queries that make it probe: ``@v/list``, ``@latest``, ``go get
private@latest`` and a package path below a private module (path-prefix
probes). Every request the mirror and the database received is recorded: none
may name a private path, while the public modules must have come from the
mirror. A misconfigured client (``GONOSUMDB`` empty) asks gomirror's
``/sumdb/`` pass-through about a private module: the lookup is refused with a
404, never forwarded, and the go command fails without accepting the module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from support.corpus import Corpus
from support.gitrepos import GitWorld, RepoBuilder
from support.gorunner import GoRunner, parse_json_stream
from support.server import GomirrorProcess
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TEST_VERIFIER_KEY, TestSumdb

pytestmark = pytest.mark.e2e

PRIVATE = "github.com/acme/private*,git.corp.example"
PRIVATE_X = "github.com/acme/private-x"
PRIVATE_Y = "github.com/acme/private-y"
CORP = "git.corp.example/group/sub/proj"
PUB_A = "github.com/pubco/a"
PUB_B = "github.com/pubco/b"
SECRET_MARKERS = ("private", "git.corp.example", "acme/private", "corp")


def _gomod(path: str, *requires: str) -> str:
    text = f"module {path}\n\ngo 1.21\n"
    if requires:
        text += "\nrequire (\n" + "".join(f"\t{r}\n" for r in requires) + ")\n"
    return text


def _public_corpus() -> Corpus:
    corpus = Corpus()
    for version in ("v1.0.0", "v1.1.0"):
        corpus.add_module(
            PUB_B,
            version,
            {"b.go": f'package b\n\nconst V = "{version}"\n'.encode()},
            gomod=_gomod(PUB_B).encode(),
        )
    corpus.add_module(
        PUB_A,
        "v1.0.0",
        {"a.go": f'package a\n\nimport "{PUB_B}"\n\nconst V = b.V\n'.encode()},
        gomod=_gomod(PUB_A, f"{PUB_B} v1.0.0").encode(),
    )
    return corpus


def _private_repos(git: GitWorld, root: Path) -> None:
    x = git.repo("acme/private-x")
    x.commit(
        {
            "go.mod": _gomod(PRIVATE_X, f"{PUB_A} v1.0.0", f"{PUB_B} v1.0.0"),
            "x.go": f'package x\n\nimport "{PUB_A}"\n\nconst V = a.V\n',
        }
    )
    x.tag("v1.0.0")
    x.commit({"sub/pkg/pkg.go": "package pkg\n\nconst Secret = 42\n"})
    x.tag("v1.1.0")
    y = git.repo("acme/private-y")  # no tags: @latest is the default branch
    y.commit({"go.mod": _gomod(PRIVATE_Y), "y.go": "package y\n"})
    corp = RepoBuilder(root / "corp" / "group" / "sub" / "proj")
    corp.commit(
        {
            "go.mod": _gomod(CORP, f"{PUB_B} v1.1.0"),
            "p.go": f'package proj\n\nimport "{PUB_B}"\n\nconst V = b.V\n',
        }
    )
    corp.tag("v1.0.0")


@dataclasses.dataclass
class World:
    root: Path
    corpus: Corpus
    sim: UpstreamSimulator
    db: TestSumdb
    mirror: GomirrorProcess

    def client(self, name: str, *, nosumdb: str = PRIVATE) -> GoRunner:
        """A go command using only gomirror, GOPRIVATE empty, verifying with the test key."""
        return GoRunner(self.root / name, self.mirror.url, sumdb=TEST_VERIFIER_KEY, nosumdb=nosumdb)

    def assert_nothing_private_leaked(self) -> None:
        leaked = [p for p in self.sim.paths() if any(m in p for m in SECRET_MARKERS)]
        leaked += [p for p in self.db.requests if any(m in p for m in SECRET_MARKERS)]
        assert leaked == [], leaked
        assert not any(
            any(m in r.raw_path or m in r.query for m in SECRET_MARKERS) for r in self.sim.requests
        )

    def mirror_saw(self, path: str) -> bool:
        return f"path={path} " in self.mirror.log()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-private")
    git = GitWorld(root / "git")
    _private_repos(git, root)
    corpus = _public_corpus()
    db = TestSumdb()
    for mv in corpus:
        db.add(mv.path, mv.version, mv.h1, mv.gomod_h1)

    async def sumdb_handler(request: web.Request) -> web.Response:
        if request[SUBPATH] == "/supported":
            return web.Response(text="")  # this mirror proxies the database, and says so
        a = db.answer(request[SUBPATH])
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    (root / "mirror").mkdir()
    with UpstreamSimulator(corpus, name="public-mirror") as sim:
        sim.mount(f"/sumdb/{db.name}", sumdb_handler)
        mirror = GomirrorProcess(
            root / "mirror",
            upstream=f"{sim.url},direct",
            sumdb=TEST_VERIFIER_KEY,
            extra_args=["--private", PRIVATE],
            env={
                "GOMIRROR_GIT_CONFIG": str(git.git_config),
                "GOMIRROR_DIRECT_RULES": f"git.corp.example/*/*/*=file://{root}/corp/{{path}}",
            },
        )
        with mirror:
            yield World(root, corpus, sim, db, mirror)


def _go_sum(app: Path) -> set[str]:
    return set((app / "go.sum").read_text().splitlines())


def test_mixed_graph_public_verified_private_direct(world: World) -> None:
    go = world.client("mixed")
    app = world.root / "app"
    go.init_module(app, "example.com/app")
    (app / "main.go").write_text(
        "package main\n\nimport (\n"
        f'\t_ "{PRIVATE_X}"\n\t_ "{CORP}"\n\t_ "{PUB_A}"\n)\n\nfunc main() {{}}\n'
    )
    go.run("get", f"{PRIVATE_X}@v1.0.0", f"{CORP}@v1.0.0", f"{PUB_A}@v1.0.0", cwd=app)
    go.run("build", "./...", cwd=app)

    gomod = (app / "go.mod").read_text()
    for req in (f"{PRIVATE_X} v1.0.0", f"{CORP} v1.0.0", f"{PUB_A} v1.0.0", f"{PUB_B} v1.1.0"):
        assert req in gomod, gomod
    sums = _go_sum(app)
    for mv in (world.corpus[PUB_A, "v1.0.0"], world.corpus[PUB_B, "v1.1.0"]):
        assert set(mv.go_sum_lines()) <= sums, sums
    assert any(line.startswith(f"{PRIVATE_X} v1.0.0 h1:") for line in sums), sums
    assert any(line.startswith(f"{CORP} v1.0.0 h1:") for line in sums), sums

    # Public modules came from the mirror and were checked against the database.
    for path in (
        f"/{PUB_A}/@v/v1.0.0.zip",
        f"/{PUB_A}/@v/v1.0.0.mod",
        f"/{PUB_B}/@v/v1.1.0.zip",
        f"/{PUB_B}/@v/v1.1.0.mod",
    ):
        assert world.sim.count(path) >= 1, (path, world.sim.paths())
    assert f"/lookup/{PUB_A}@v1.0.0" in world.db.requests
    assert f"/lookup/{PUB_B}@v1.1.0" in world.db.requests
    # Private modules were served by gomirror (the client's only proxy), from git.
    for module in (PRIVATE_X, CORP):
        assert go.modcache_file(module, "v1.0.0", "zip").is_file()
        assert world.mirror_saw(f"/{module}/@v/v1.0.0.info")
    world.assert_nothing_private_leaked()


def test_private_queries_and_prefix_probes_stay_local(world: World) -> None:
    go = world.client("queries")
    assert go.list_versions(PRIVATE_X) == ["v1.0.0", "v1.1.0"]
    assert go.list_versions(CORP) == ["v1.0.0"]
    latest = parse_json_stream(go.run("list", "-m", "-json", f"{CORP}@latest").stdout)
    assert latest[0]["Version"] == "v1.0.0"

    app = world.root / "app2"
    go.init_module(app, "example.com/app2")
    go.run("get", f"{PRIVATE_X}@latest", cwd=app)
    assert f"{PRIVATE_X} v1.1.0" in (app / "go.mod").read_text()
    go.run("get", f"{PRIVATE_Y}@latest", cwd=app)
    assert f"{PRIVATE_Y} v0.0.0-" in (app / "go.mod").read_text()
    go.run("get", f"{PRIVATE_X}/sub/pkg", cwd=app)
    (app / "main.go").write_text(
        f'package main\n\nimport _ "{PRIVATE_X}/sub/pkg"\n\nfunc main() {{}}\n'
    )
    go.run("build", "./...", cwd=app)

    # The go command really asked gomirror all of this, probes included...
    for path in (
        f"/{PRIVATE_X}/@v/list",
        f"/{PRIVATE_Y}/@v/list",
        f"/{PRIVATE_Y}/@latest",
        f"/{PRIVATE_X}/sub/pkg/@v/list",
        f"/{PRIVATE_X}/sub/@v/list",
        f"/{CORP}/@v/list",
    ):
        assert world.mirror_saw(path), path
    # ...and none of it went to the mirror or to the checksum database.
    world.assert_nothing_private_leaked()


def test_misconfigured_client_is_refused_by_sumdb_passthrough(world: World) -> None:
    go = world.client("misconfigured", nosumdb="")
    for target, escaped in ((f"{PRIVATE_X}@v1.0.0", PRIVATE_X), (f"{CORP}@v1.0.0", CORP)):
        proc = go.run("mod", "download", "-json", target, check=False)
        assert proc.returncode != 0, proc.stdout
        error = parse_json_stream(proc.stdout)[0]["Error"]
        assert "verifying" in error, error
        assert "404 Not Found" in error, error
        assert "private module paths are never sent to a checksum database" in error, error
        assert world.mirror_saw(f"/sumdb/{world.db.name}/lookup/{escaped}@v1.0.0")
        module, version = target.split("@")
        assert not go.modcache_dir(module, version).exists()
        assert not go.modcache_file(module, version, "zip").exists()

    # A module graph with a private module fails as a whole; go.sum gets no private line.
    app = world.root / "app3"
    go.init_module(app, "example.com/app3")
    proc = go.run("get", f"{PRIVATE_X}@v1.0.0", cwd=app, check=False)
    assert proc.returncode != 0
    assert "SECURITY ERROR" not in proc.stderr
    go_sum = app / "go.sum"
    assert not go_sum.exists() or PRIVATE_X not in go_sum.read_text()

    # Public modules still verify through the same pass-through.
    objs = go.mod_download_json(f"{PUB_A}@v1.0.0")
    assert objs[0]["Sum"] == world.corpus[PUB_A, "v1.0.0"].h1
    world.assert_nothing_private_leaked()
