"""test_e2e_direct drives the real go command against ``gomirror --upstream direct``.

gomirror builds modules from local git repositories (``support.gitrepos``:
``github.com/acme/*`` reaches ``<tmp>/repos/acme/*`` through an ``insteadOf``
git config given to both gomirror and the go command). For every target the
version, ``Sum`` and ``GoModSum`` the go command records through gomirror must
equal what the go command computes itself with ``GOPROXY=direct`` against the
same repositories; so must ``go list -m -versions`` and ``@latest``. Errors
must reach the user with gomirror's own not-found text. A ``direct_rules``
mapping serves a GitLab-style subgroup path on a private host from a
``file://`` repository, checked against hashes computed from the git tree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.corpus import escape_path, h1_files, h1_mod
from support.gitrepos import GitWorld, GoCommand, RepoBuilder
from support.gorunner import GoRunner, parse_json_stream
from support.server import GomirrorProcess

pytestmark = pytest.mark.e2e

CORP = "git.corp.example/group/sub/proj"


def _gomod(path: str) -> str:
    return f"module {path}\n\ngo 1.21\n"


@dataclasses.dataclass
class World:
    root: Path
    git: GitWorld
    corp: RepoBuilder
    mirror: GomirrorProcess
    via: GoRunner  # the go command talking only to gomirror
    direct: GoCommand  # the go command in GOPROXY=direct mode


def _build_repos(w: GitWorld) -> None:
    lib = w.repo("acme/lib", branch="master")
    lib.commit({"go.mod": _gomod("github.com/acme/lib"), "lib.go": "package lib\n"})
    lib.tag("v1.0.0")
    lib.commit({"lib.go": "package lib // 1.1\n", "LICENSE": "MIT\n"})
    lib.tag("v1.1.0", annotated=True)
    lib.commit({"more.go": "package lib // more\n"})
    lib.tag("v1.2.0-pre")
    lib.commit({"head.go": "package lib // untagged head\n"})

    mono = w.repo("acme/mono")
    mono.commit(
        {
            "go.mod": _gomod("github.com/acme/mono"),
            "LICENSE": "root license\n",
            "m.go": "package mono\n",
            "sub/go.mod": _gomod("github.com/acme/mono/sub"),
            "sub/s.go": "package sub\n",
        }
    )
    mono.tag("v1.0.0")
    mono.tag("sub/v0.3.0")
    mono.commit({"sub/s2.go": "package sub // 2\n"})
    mono.tag("sub/v0.4.0")

    maj = w.repo("acme/maj")
    maj.commit({"go.mod": _gomod("github.com/acme/maj"), "m.go": "package maj\n"})
    maj.tag("v1.0.0")
    maj.commit({"v2/go.mod": _gomod("github.com/acme/maj/v2"), "v2/m.go": "package maj\n"})
    maj.tag("v2.0.0")
    maj.commit({"v2/m2.go": "package maj // 2\n"})
    maj.tag("v2.1.0")

    nomod = w.repo("acme/nomod")
    nomod.commit({"n.go": "package nomod\n"})
    nomod.tag("v0.9.0")
    nomod.commit({"n.go": "package nomod // 1\n", "doc/readme.txt": "hello\n"})
    nomod.tag("v1.0.0")


def _build_corp(root: Path) -> RepoBuilder:
    corp = RepoBuilder(root / "corp" / "group" / "sub" / "proj")
    corp.commit({"go.mod": _gomod(CORP), "p.go": "package proj\n"})
    corp.tag("v1.0.0")
    corp.commit({"api/api.go": "package api\n", "LICENSE": "corp\n"})
    corp.tag("v1.1.0")
    return corp


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-direct")
    git = GitWorld(root / "git")
    _build_repos(git)
    corp = _build_corp(root)
    mirror = GomirrorProcess(
        root / "mirror",
        upstream="direct",
        sumdb="off",
        env={
            "GOMIRROR_GIT_CONFIG": str(git.git_config),
            "GOMIRROR_DIRECT_RULES": f"git.corp.example/group/sub/*=file://{root}/corp/{{path}}",
        },
    )
    (root / "mirror").mkdir()
    with mirror:
        via = GoRunner(root / "via", mirror.url, sumdb="off")
        direct = GoCommand(root / "direct", git.git_config)
        yield World(root, git, corp, mirror, via, direct)


TARGETS = [
    "github.com/acme/lib@v1.0.0",
    "github.com/acme/lib@v1.1.0",
    "github.com/acme/lib@v1.2.0-pre",
    "github.com/acme/lib@master",
    "github.com/acme/lib@latest",
    "github.com/acme/mono@v1.0.0",
    "github.com/acme/mono/sub@v0.3.0",
    "github.com/acme/mono/sub@latest",
    "github.com/acme/maj@v1.0.0",
    "github.com/acme/maj/v2@v2.0.0",
    "github.com/acme/maj/v2@latest",
    "github.com/acme/nomod@v0.9.0",
    "github.com/acme/nomod@v1.0.0",
]


def _key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    return (obj["Path"], obj["Version"], obj.get("Sum", ""), obj.get("GoModSum", ""))


def test_downloads_equal_go_direct_mode(world: World) -> None:
    want = world.direct.download(*TARGETS)
    got = world.via.mod_download_json(*TARGETS)
    assert [o.get("Error") for o in want] == [None] * len(TARGETS), want
    assert [o.get("Error") for o in got] == [None] * len(TARGETS), got
    assert sorted(map(_key, got)) == sorted(map(_key, want))
    versions = {(o["Path"], o["Version"]) for o in got}
    # The branch query became a pseudo-version on top of the pre-release tag.
    assert any(p == "github.com/acme/lib" and v.startswith("v1.2.0-pre.0.") for p, v in versions), (
        versions
    )
    # The go.mod-less repository got a synthesized go.mod.
    nomod = next(o for o in got if o["Path"] == "github.com/acme/nomod")
    assert Path(nomod["GoMod"]).read_text() == "module github.com/acme/nomod\n"
    # The Origin the go command saw through gomirror names the same commit.
    for o in got:
        if "Origin" in o:
            same = next(w for w in want if _key(w) == _key(o))
            assert o["Origin"].get("Hash") == same.get("Origin", {}).get("Hash"), o


@pytest.mark.parametrize(
    "module",
    [
        "github.com/acme/lib",
        "github.com/acme/mono",
        "github.com/acme/mono/sub",
        "github.com/acme/maj",
        "github.com/acme/maj/v2",
        "github.com/acme/nomod",
    ],
)
def test_versions_and_latest_equal_go_direct_mode(world: World, module: str) -> None:
    want_versions = world.direct.list_module("-versions", module)
    got_versions = world.via.list_versions(module)
    assert "Error" not in want_versions, want_versions
    assert got_versions == want_versions.get("Versions", [])
    want_latest = world.direct.list_module(module + "@latest")
    got_latest = parse_json_stream(world.via.run("list", "-m", "-json", module + "@latest").stdout)
    assert "Error" not in want_latest, want_latest
    assert got_latest[0]["Version"] == want_latest["Version"]


def _first_line(mirror: GomirrorProcess, path: str) -> str:
    status, headers, body = mirror.get(path)
    assert status == 404, (status, body)
    assert headers["Content-Type"].startswith("text/plain"), headers
    return body.decode().splitlines()[0]


@pytest.mark.parametrize(
    ("target", "path", "reason"),
    [
        (
            "github.com/acme/nosuch@v1.0.0",
            "/github.com/acme/nosuch/@v/v1.0.0.info",
            "repository github.com/acme/nosuch not found",
        ),
        (
            "github.com/acme/lib@v9.9.9",
            "/github.com/acme/lib/@v/v9.9.9.info",
            "unknown revision v9.9.9",
        ),
        (
            "github.com/acme/lib@nosuchbranch",
            "/github.com/acme/lib/@v/nosuchbranch.info",
            "unknown revision nosuchbranch",
        ),
    ],
)
def test_not_found_shows_gomirror_text(world: World, target: str, path: str, reason: str) -> None:
    proc = world.via.run("mod", "download", "-json", target, check=False)
    assert proc.returncode != 0
    error = parse_json_stream(proc.stdout)[0]["Error"]
    line = _first_line(world.mirror, path)
    assert line.startswith("not found"), line
    assert "404 Not Found" in error, error
    assert "server response" in error, error
    assert line in error, error
    assert reason in error, error  # the detail line from direct mode reaches the user too
    # The direct-mode go command agrees that the target does not exist.
    assert "Error" in world.direct.download(target)[0]


def _tree_h1(repo: RepoBuilder, module: str, tag: str) -> tuple[str, str]:
    names = repo.git("ls-tree", "-r", "--name-only", tag).split()
    files = [(f"{module}@{tag}/{n}", repo.git("show", f"{tag}:{n}").encode()) for n in names]
    gomod = repo.git("show", f"{tag}:go.mod").encode()
    return h1_files(files), h1_mod(gomod)


def test_direct_rule_serves_private_host_subgroup(world: World) -> None:
    got = world.via.mod_download_json(f"{CORP}@v1.0.0", f"{CORP}@latest")
    assert [o.get("Error") for o in got] == [None, None], got
    by_version = {o["Version"]: o for o in got}
    assert set(by_version) == {"v1.0.0", "v1.1.0"}
    for tag, obj in by_version.items():
        assert (obj["Sum"], obj["GoModSum"]) == _tree_h1(world.corp, CORP, tag)
    assert world.via.list_versions(CORP) == ["v1.0.0", "v1.1.0"]
    # Origin names the configured file:// repository.
    status, _, body = world.mirror.get(f"/{escape_path(CORP)}/@v/v1.1.0.info")
    assert status == 200
    origin = json.loads(body)["Origin"]
    assert origin["URL"] == f"file://{world.root}/corp/group/sub/proj"
    assert origin["Hash"] == world.corp.git("rev-parse", "v1.1.0^{commit}").strip()
    # A package below the module resolves through path-prefix probes.
    app = world.root / "corp-app"
    world.via.init_module(app, "example.com/app")
    (app / "main.go").write_text(f'package main\n\nimport _ "{CORP}/api"\n\nfunc main() {{}}\n')
    world.via.run("get", f"{CORP}/api", cwd=app)
    world.via.run("build", "./...", cwd=app)
    assert f"{CORP} v1.1.0" in (app / "go.mod").read_text()
