"""test_direct_gocompare checks DirectUpstream against the real go command in direct mode.

Scenario builders create local repositories (see ``support.gitrepos`` for how
both sides reach them offline) and record named commits into ``marks`` so
that targets can name hashes, short hashes and pseudo-version timestamps
(``{basic_c4}``, ``{basic_c4_short}``, ``{basic_c4_ts}``). For every
``module@query`` target, the version, zip ``h1:``, go.mod ``h1:`` and Origin
hash gomirror computes must equal ``go mod download -json``'s, and a target
the go command rejects must raise ``NotFound`` somewhere in gomirror. For
every listed module, ``@v/list`` must equal ``go list -m -versions
-retracted`` and ``@latest`` must equal ``go list -m module@latest``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gomirror.errors import NotFound
from gomirror.module.dirhash import hash_gomod, hash_zip
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from support.gitrepos import GitWorld, GoCommand, RepoBuilder, Symlink

GOMOD = "module {path}\n\ngo {go}\n"


def _mark(marks: dict[str, str], name: str, repo: RepoBuilder) -> None:
    h = repo.head()
    t = int(repo.git("log", "-n1", "--format=%ct", h).strip())
    marks[name] = h
    marks[name + "_short"] = h[:12]
    marks[name + "_ts"] = dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y%m%d%H%M%S")


def _gomod(path: str, go: str = "1.21") -> str:
    return GOMOD.format(path=path, go=go)


def build_basic(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/basic")
    r.commit({"go.mod": _gomod("github.com/acme/basic"), "a.go": "package a\n", "LICENSE": "L\n"})
    _mark(marks, "basic_c1", r)
    r.tag("v1.0.0")
    r.commit({"a.go": "package a // 2\n"})
    _mark(marks, "basic_c2", r)
    r.tag("v1.1.0", annotated=True)
    r.commit({"b.go": "package a // b\n"})
    r.tag("v1.2.0-rc.1")
    r.commit({"c.go": "package a // c\n"})
    _mark(marks, "basic_c4", r)
    r.commit({"d.go": "package a // d\n"})
    r.tag("v1.5.0+build")
    r.tag("v1.6")
    _mark(marks, "basic_c5", r)
    r.checkout("feature", create=True, start="v1.1.0")
    r.commit({"f.go": "package a // f\n"})
    _mark(marks, "basic_feat", r)
    r.checkout("main")


def build_notags(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/notags")
    r.commit({"go.mod": _gomod("github.com/acme/notags"), "n.go": "package n\n"})
    _mark(marks, "notags_c1", r)
    r.commit({"n.go": "package n // 2\n"})
    _mark(marks, "notags_c2", r)


def build_mono(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/mono")
    r.commit(
        {
            "go.mod": _gomod("github.com/acme/mono"),
            "LICENSE": "root license\n",
            "root.go": "package mono\n",
            "sub/go.mod": _gomod("github.com/acme/mono/sub"),
            "sub/s.go": "package sub\n",
            "other/go.mod": _gomod("github.com/acme/mono/other"),
            "other/LICENSE": "other license\n",
            "other/o.go": "package other\n",
            "deep/er/go.mod": _gomod("github.com/acme/mono/deep/er"),
            "deep/er/d.go": "package er\n",
        }
    )
    r.tag("v1.0.0")
    r.tag("sub/v1.2.3")
    r.tag("other/v0.1.0")
    r.tag("deep/er/v1.0.0")
    r.commit({"sub/s2.go": "package sub // 2\n"})
    _mark(marks, "mono_c2", r)


def build_major(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/maj")
    r.commit({"go.mod": _gomod("github.com/acme/maj"), "m.go": "package maj\n"})
    r.tag("v1.0.0")
    r.commit({"v2/go.mod": _gomod("github.com/acme/maj/v2"), "v2/m.go": "package maj\n"})
    r.tag("v2.0.0")
    r.commit({"v2/m2.go": "package maj // 2\n"})
    b = w.repo("acme/br")
    b.commit({"go.mod": _gomod("github.com/acme/br"), "b.go": "package br\n"})
    b.tag("v1.0.0")
    b.checkout("next", create=True)
    b.commit({"go.mod": _gomod("github.com/acme/br/v2"), "b.go": "package br // v2\n"})
    b.tag("v2.1.0")
    b.commit({"c.go": "package br // c\n"})
    _mark(marks, "br_next", b)
    b.checkout("main")
    both = w.repo("acme/both")
    both.commit(
        {
            "go.mod": _gomod("github.com/acme/both/v2"),
            "v2/go.mod": _gomod("github.com/acme/both/v2"),
        }
    )
    both.tag("v2.0.0")


def build_incompatible(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/inc")
    r.commit({"a.go": "package inc\n"})
    r.tag("v1.0.0")
    r.commit({"a.go": "package inc // 2\n"})
    r.tag("v2.0.0")
    r.commit({"a.go": "package inc // 3\n"})
    r.tag("v3.1.0")
    r.commit({"a.go": "package inc // 4\n"})
    _mark(marks, "inc_c4", r)
    r2 = w.repo("acme/inc2")
    r2.commit({"go.mod": _gomod("github.com/acme/inc2"), "a.go": "package inc2\n"})
    r2.tag("v1.0.0")
    r2.commit({"a.go": "package inc2 // 2\n"})
    r2.tag("v2.0.0")
    r2.commit({"go.mod": None})
    r2.tag("v3.0.0")
    r3 = w.repo("acme/inc3")
    r3.commit({"a.go": "package inc3\n", "v4/go.mod": _gomod("github.com/acme/inc3/v4")})
    r3.tag("v4.0.0")
    r3.tag("v1.0.0")


def build_vendor(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/vend")
    files = {
        "go.mod": _gomod("github.com/acme/vend", "1.21"),
        "v.go": "package vend\n",
        "vendor/modules.txt": "# x\n",
        "vendor/example.com/a/a.go": "package a\n",
        "pkg/vendor/x.go": "package vendor\n",
        "pkg/vendor/deep/y.go": "package deep\n",
        "pkg/x.go": "package pkg\n",
        "nested/go.mod": _gomod("github.com/acme/vend/nested"),
        "nested/n.go": "package nested\n",
        "caps/GO.MOD": "module whatever\n",
        "caps/c.go": "package caps\n",
    }
    r.commit(files)
    r.tag("v1.0.0")
    r.commit({"go.mod": _gomod("github.com/acme/vend", "1.24")})
    r.tag("v1.1.0")


def build_special(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/nomod")
    r.commit(
        {
            "a.go": "package nomod\n",
            "link.go": Symlink("a.go"),
            ".hg_archival.txt": "repo: x\n",
            "sub/.hg_archival.txt": "kept\n",
            ".gitattributes": "ignored.txt export-ignore\nsubst.txt export-subst\n",
            "ignored.txt": "still here\n",
            "subst.txt": "$Format:%H$\n",
            "crlf.txt": b"one\r\ntwo\r\n",
            "script.sh": "#!/bin/sh\n",
            "empty.txt": "",
        }
    )
    subprocess.run(["chmod", "+x", str(r.path / "script.sh")], check=True)
    r.git("add", "script.sh")
    r.commit({})
    r.tag("v1.0.0")
    bad = w.repo("acme/badname")
    bad.commit({"go.mod": _gomod("github.com/acme/badname"), "bad'name.go": "package b\n"})
    bad.tag("v1.0.0")


def build_retract(w: GitWorld, marks: dict[str, str]) -> None:
    r = w.repo("acme/ret")
    r.commit({"go.mod": _gomod("github.com/acme/ret"), "r.go": "package ret\n"})
    r.tag("v1.0.0")
    r.commit({"go.mod": _gomod("github.com/acme/ret") + "\nretract v1.0.0 // broken\n"})
    r.tag("v1.1.0")
    body = _gomod("github.com/acme/ret") + "\nretract (\n\tv1.0.0\n\tv1.2.0 // oops\n)\n"
    r.commit({"go.mod": body})
    r.tag("v1.2.0")
    r.commit({"r2.go": "package ret // 2\n"})
    _mark(marks, "ret_c4", r)


SCENARIOS = (
    build_basic,
    build_notags,
    build_mono,
    build_major,
    build_incompatible,
    build_vendor,
    build_special,
    build_retract,
)

# (module, query) pairs compared with `go mod download -json module@query`.
DOWNLOAD_TARGETS: tuple[tuple[str, str], ...] = (
    ("github.com/acme/basic", "v1.0.0"),
    ("github.com/acme/basic", "v1.1.0"),
    ("github.com/acme/basic", "v1.2.0-rc.1"),
    ("github.com/acme/basic", "main"),
    ("github.com/acme/basic", "feature"),
    ("github.com/acme/basic", "{basic_c4}"),
    ("github.com/acme/basic", "{basic_c1_short}"),
    ("github.com/acme/basic", "v1.2.0-rc.1.0.{basic_c4_ts}-{basic_c4_short}"),
    ("github.com/acme/basic", "v1.0.1-0.{basic_c4_ts}-{basic_c4_short}"),
    ("github.com/acme/basic", "v1.1.1-0.{basic_feat_ts}-{basic_feat_short}"),
    ("github.com/acme/basic", "v1.1.1-0.{basic_c4_ts}-{basic_c4_short}"),
    ("github.com/acme/basic", "v1.0.1-0.20000101000000-{basic_c4_short}"),
    ("github.com/acme/basic", "v1.2.0-rc.1.0.{basic_c4_ts}-{basic_c4}"),
    ("github.com/acme/basic", "v1.1.1-0.{basic_c2_ts}-{basic_c2_short}"),
    ("github.com/acme/basic", "v1.5.0"),
    ("github.com/acme/basic", "v9.9.9"),
    ("github.com/acme/basic", "nosuchbranch"),
    ("github.com/acme/notags", "main"),
    ("github.com/acme/notags", "v0.0.0-{notags_c1_ts}-{notags_c1_short}"),
    ("github.com/acme/notags", "v1.0.0-{notags_c1_ts}-{notags_c1_short}"),
    ("github.com/acme/mono", "v1.0.0"),
    ("github.com/acme/mono/sub", "v1.2.3"),
    ("github.com/acme/mono/sub", "main"),
    ("github.com/acme/mono/sub", "v1.0.0"),
    ("github.com/acme/mono/other", "v0.1.0"),
    ("github.com/acme/mono/deep/er", "v1.0.0"),
    ("github.com/acme/mono/deep/er", "{mono_c2_short}"),
    ("github.com/acme/maj", "v1.0.0"),
    ("github.com/acme/maj/v2", "v2.0.0"),
    ("github.com/acme/maj/v2", "main"),
    ("github.com/acme/maj", "v2.0.0+incompatible"),
    ("github.com/acme/br", "v1.0.0"),
    ("github.com/acme/br/v2", "v2.1.0"),
    ("github.com/acme/br/v2", "next"),
    ("github.com/acme/br/v2", "v1.0.0"),
    ("github.com/acme/both/v2", "v2.0.0"),
    ("github.com/acme/inc", "v2.0.0+incompatible"),
    ("github.com/acme/inc", "v3.1.0+incompatible"),
    ("github.com/acme/inc", "main"),
    ("github.com/acme/inc", "v1.0.0"),
    ("github.com/acme/inc2", "v3.0.0+incompatible"),
    ("github.com/acme/inc2", "v2.0.0+incompatible"),
    ("github.com/acme/inc3", "v4.0.0+incompatible"),
    ("github.com/acme/vend", "v1.0.0"),
    ("github.com/acme/vend", "v1.1.0"),
    ("github.com/acme/nomod", "v1.0.0"),
    ("github.com/acme/badname", "v1.0.0"),
    ("github.com/acme/ret", "v1.0.0"),
    ("github.com/acme/ret", "main"),
    ("github.com/acme/nonexistent", "v1.0.0"),
)

# Modules compared with `go list -m -versions -retracted` and `go list -m m@latest`.
LIST_MODULES: tuple[str, ...] = (
    "github.com/acme/basic",
    "github.com/acme/notags",
    "github.com/acme/mono",
    "github.com/acme/mono/sub",
    "github.com/acme/maj",
    "github.com/acme/maj/v2",
    "github.com/acme/br",
    "github.com/acme/br/v2",
    "github.com/acme/inc",
    "github.com/acme/inc2",
    "github.com/acme/inc3",
    "github.com/acme/ret",
)


@dataclasses.dataclass
class Outcome:
    """What one side said about module@query."""

    version: str = ""
    sum: str = ""
    gomod_sum: str = ""
    hash: str = ""
    error: str = ""


@dataclasses.dataclass
class World:
    """Both sides' answers for every target and listed module."""

    go: dict[tuple[str, str], Outcome]
    ours: dict[tuple[str, str], Outcome]
    go_lists: dict[str, tuple[list[str], str]]
    our_lists: dict[str, tuple[list[str], str]]


def _go_outcome(go: GoCommand, module: str, query: str) -> Outcome:
    objs = go.download(f"{module}@{query}")
    if not objs:
        return Outcome(error="no output")
    obj = objs[0]
    err = obj.get("Error", "")
    return Outcome(
        version=obj.get("Version", ""),
        sum="" if err else obj.get("Sum", ""),
        gomod_sum="" if err else obj.get("GoModSum", ""),
        hash=(obj.get("Origin") or {}).get("Hash", ""),
        error=err,
    )


def _go_lists(go: GoCommand, module: str) -> tuple[list[str], str]:
    versions = go.list_module("-versions", "-retracted", module).get("Versions") or []
    latest = go.list_module(f"{module}@latest")
    return list(versions), latest.get("Version", "") if not latest.get("Error") else "error"


async def _our_outcome(up: DirectUpstream, tmp: Path, module: str, query: str) -> Outcome:
    out = Outcome()
    try:
        info = json.loads((await up.info(module, query)).body)
        out.version = info["Version"]
        out.hash = info["Origin"]["Hash"]
        out.gomod_sum = hash_gomod((await up.mod(module, out.version)).body)
        dst = tmp / f"{module.replace('/', '_')}@{out.version}.zip"
        await up.zip(module, out.version, dst)
        out.sum = hash_zip(dst)
    except NotFound as exc:
        out.error = str(exc)
        out.sum = out.gomod_sum = ""
    return out


async def _our_lists(up: DirectUpstream, module: str) -> tuple[list[str], str]:
    versions = (await up.list(module)).body.decode().split()
    try:
        latest = json.loads((await up.latest(module)).body)["Version"]
    except NotFound:
        latest = "error"
    return versions, latest


async def _ours(world: GitWorld, cache: Path, targets: list[tuple[str, str]]) -> World:
    up = DirectUpstream(DirectConfig(cache_dir=cache, git_config=world.git_config, go_get=False))
    zips = cache / "zips"
    zips.mkdir(parents=True)
    try:
        results = await asyncio.gather(*(_our_outcome(up, zips, m, q) for m, q in targets))
        lists = await asyncio.gather(*(_our_lists(up, m) for m in LIST_MODULES))
    finally:
        await up.close()
    return World(
        {},
        dict(zip(targets, results, strict=True)),
        {},
        dict(zip(LIST_MODULES, lists, strict=True)),
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[World, dict[str, str]]:
    root = tmp_path_factory.mktemp("direct")
    w = GitWorld(root / "world")
    marks: dict[str, str] = {}
    for build in SCENARIOS:
        build(w, marks)
    targets = [(m, q.format(**marks)) for m, q in DOWNLOAD_TARGETS]
    go = GoCommand(root / "go", w.git_config)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        go_results = list(pool.map(lambda t: _go_outcome(go, *t), targets))
        go_lists = list(pool.map(lambda m: _go_lists(go, m), LIST_MODULES))
    result = asyncio.run(_ours(w, root / "cache", targets))
    result.go = dict(zip(targets, go_results, strict=True))
    result.go_lists = dict(zip(LIST_MODULES, go_lists, strict=True))
    return result, marks


def _compare(ours: Outcome, go: Outcome) -> dict[str, Any]:
    if go.error or ours.error:
        return {"go_failed": bool(go.error), "ours_failed": bool(ours.error)}
    return dataclasses.asdict(ours) | {"error": ""}


@pytest.mark.parametrize(("module", "query"), DOWNLOAD_TARGETS, ids=lambda x: str(x))
def test_download_matches_go(world: tuple[World, dict[str, str]], module: str, query: str) -> None:
    result, marks = world
    key = (module, query.format(**marks))
    go, ours = result.go[key], result.ours[key]
    expected = _compare(go, go)
    assert _compare(ours, go) == expected, f"go: {go}\nours: {ours}"


@pytest.mark.parametrize("module", LIST_MODULES)
def test_list_and_latest_match_go(world: tuple[World, dict[str, str]], module: str) -> None:
    result, _ = world
    assert result.our_lists[module] == result.go_lists[module]
