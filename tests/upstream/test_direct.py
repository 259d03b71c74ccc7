"""test_direct covers DirectUpstream's own contract: body formats, Origin, errors, rules and go-get.

Equality with the real go command is in test_direct_gocompare; these tests pin
what the go command does not show: exact ``.info`` JSON, list bodies,
canonical-only ``.mod``/``.zip``, config rules with ``file://`` templates and
subdirectories, go-get discovery end to end, refresh after new commits and
temp-file cleanup.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import os
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gomirror.errors import NotFound
from gomirror.module.dirhash import hash_zip
from gomirror.module.modzip import check_zip
from gomirror.upstream.base import Fetched
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.discovery import RepoRule
from support.gitrepos import GitWorld, RepoBuilder

M = "github.com/acme/d"


@pytest.fixture
def repo(world: GitWorld) -> RepoBuilder:
    r = world.repo("acme/d")
    r.commit({"go.mod": f"module {M}\n\ngo 1.22\n", "d.go": "package d\n", "LICENSE": "MIT\n"})
    r.tag("v1.0.0")
    r.commit({"sub/go.mod": f"module {M}/sub\n", "sub/s.go": "package sub\n"})
    r.tag("sub/v0.1.0")
    r.commit({"e.go": "package d\n"})
    return r


def run(
    world: GitWorld, tmp: Path, body: Callable[[DirectUpstream], Awaitable[Any]], **kw: Any
) -> Any:
    cfg: dict[str, Any] = {
        "cache_dir": tmp / "cache",
        "git_config": world.git_config,
        "refs_ttl": 0.0,
    }
    cfg.update(kw)

    async def main() -> Any:
        up = DirectUpstream(DirectConfig(**cfg))
        try:
            return await body(up)
        finally:
            await up.close()

    return asyncio.run(main())


def commit_time(repo: RepoBuilder, rev: str) -> str:
    seconds = int(repo.git("log", "-n1", "--format=%ct", rev).strip())
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_info_json_for_tag_pseudo_and_subdir(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    tagged = repo.git("rev-parse", "v1.0.0").strip()
    head = repo.head()

    async def body(up: DirectUpstream) -> tuple[bytes, bytes, bytes]:
        return (
            (await up.info(M, "v1.0.0")).body,
            (await up.info(M, "main")).body,
            (await up.info(M + "/sub", "v0.1.0")).body,
        )

    tag_info, head_info, sub_info = run(world, tmp_path, body)
    assert (
        tag_info
        == (
            '{"Version":"v1.0.0","Time":"'
            + commit_time(repo, "v1.0.0")
            + '","Origin":{"VCS":"git",'
            f'"URL":"https://github.com/acme/d","Hash":"{tagged}","Ref":"refs/tags/v1.0.0"}}}}'
        ).encode()
    )
    pseudo = json.loads(head_info)
    assert pseudo["Version"].startswith("v1.0.1-0.") and pseudo["Version"].endswith(head[:12])
    assert pseudo["Origin"] == {"VCS": "git", "URL": "https://github.com/acme/d", "Hash": head}
    sub = json.loads(sub_info)
    assert sub["Origin"]["Subdir"] == "sub" and sub["Origin"]["Ref"] == "refs/tags/sub/v0.1.0"


def test_list_and_latest(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    bare = world.repo("acme/bare")
    bare.commit({"x.go": "package x\n"})

    async def body(up: DirectUpstream) -> list[bytes]:
        return [
            (await up.list(M)).body,
            (await up.list("github.com/acme/bare")).body,
            (await up.latest(M)).body,
            (await up.latest("github.com/acme/bare")).body,
        ]

    listed, empty, latest, bare_latest = run(world, tmp_path, body)
    assert listed == b"v1.0.0\n"
    assert empty == b""
    assert json.loads(latest)["Version"] == "v1.0.0"
    assert json.loads(bare_latest)["Version"].startswith("v0.0.0-")


def test_mod_and_zip_need_canonical_exact_versions(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    async def body(up: DirectUpstream) -> list[str]:
        errors = []
        for call in (
            up.mod(M, "v1.0"),
            up.mod(M, "main"),
            up.mod(M, "v1.9.0"),
            up.zip(M, "v1.0.0+incompatible", tmp_path / "x.zip"),
            up.zip(M, "v0.0.0-20000101000000-000000000000", tmp_path / "x.zip"),
        ):
            try:
                await call
            except NotFound as exc:
                errors.append(str(exc))
        return errors

    errors = run(world, tmp_path, body)
    assert len(errors) == 5
    assert errors[0] == f"{M}@v1.0: invalid version: version is not canonical"


def test_zip_content_and_cleanup(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    dst = tmp_path / "sub.zip"

    async def body(up: DirectUpstream) -> bytes:
        await up.zip(M + "/sub", "v0.1.0", dst)
        return (await up.mod(M + "/sub", "v0.1.0")).body

    gomod = run(world, tmp_path, body)
    assert gomod == f"module {M}/sub\n".encode()
    with zipfile.ZipFile(dst) as zf:
        assert sorted(zf.namelist()) == [
            f"{M}/sub@v0.1.0/LICENSE",
            f"{M}/sub@v0.1.0/go.mod",
            f"{M}/sub@v0.1.0/s.go",
        ]
        assert zf.read(f"{M}/sub@v0.1.0/LICENSE") == b"MIT\n"
    assert hash_zip(dst).startswith("h1:")
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_a_built_zip_carries_what_writing_it_established(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    """The verifier may take the h1 from the build instead of reading the zip again: it must match."""
    dst = tmp_path / "m.zip"

    async def body(up: DirectUpstream) -> Fetched:
        return await up.zip(M, "v1.0.0", dst)

    fetched = run(world, tmp_path, body)
    assert fetched.built is not None
    checked = check_zip(dst, M, "v1.0.0")
    assert (fetched.built.h1, fetched.built.size, fetched.built.files) == (
        checked.h1,
        checked.size,
        checked.files,
    )
    assert fetched.built.h1 == hash_zip(dst)


def test_new_commits_are_seen_after_refresh(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    async def body(up: DirectUpstream) -> tuple[bytes, bytes]:
        before = (await up.list(M)).body
        repo.commit({"f.go": "package d\n"})
        repo.tag("v1.1.0")
        return before, (await up.list(M)).body

    assert run(world, tmp_path, body) == (b"v1.0.0\n", b"v1.0.0\nv1.1.0\n")


def test_rule_with_file_url_and_subdir(world: GitWorld, tmp_path: Path) -> None:
    r = world.repo("corp/monorepo")
    r.commit({"go/tools/go.mod": "module corp.example/tools\n", "go/tools/t.go": "package tools\n"})
    r.tag("go/tools/v1.2.0")
    rule = RepoRule.parse(f"corp.example/tools file://{world.repos}/corp/monorepo go/tools")

    async def body(up: DirectUpstream) -> tuple[bytes, bytes]:
        return (await up.list("corp.example/tools")).body, (
            await up.info("corp.example/tools", "v1.2.0")
        ).body

    listed, info = run(world, tmp_path, body, rules=(rule,), go_get=False)
    assert listed == b"v1.2.0\n"
    origin = json.loads(info)["Origin"]
    assert origin["URL"] == f"file://{world.repos}/corp/monorepo"
    assert origin["Subdir"] == "go/tools" and origin["Ref"] == "refs/tags/go/tools/v1.2.0"


def test_unresolvable_module_is_not_found(world: GitWorld, tmp_path: Path) -> None:
    async def body(up: DirectUpstream) -> str:
        with pytest.raises(NotFound) as exc:
            await up.list("unknown.example/x")
        return str(exc.value)

    assert "no repository rule" in run(world, tmp_path, body, go_get=False)


async def serve(pages: dict[str, str], body: Callable[[int], Awaitable[Any]]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        text = pages.get(request.path)
        if text is None:
            return web.Response(status=404)
        return web.Response(text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await body(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def test_go_get_end_to_end(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    with world.git_config.open("a") as f:
        f.write(f'[url "file://{world.repos}/acme/d"]\n\tinsteadOf = https://git.example.test/d\n')
    pages = {
        "/d": '<meta name="go-import" content="vanity.test/d git https://git.example.test/d">',
        "/m": '<meta name="go-import" content="vanity.test/m mod https://proxy.example.test">',
    }

    async def body(port: int) -> tuple[bytes, str]:
        cfg = DirectConfig(
            cache_dir=tmp_path / "cache",
            git_config=world.git_config,
            insecure="vanity.test",
            resolve={"vanity.test": f"127.0.0.1:{port}"},
        )
        up = DirectUpstream(cfg)
        try:
            listed = (await up.list("vanity.test/d")).body
            with pytest.raises(NotFound) as exc:
                await up.list("vanity.test/m")
            return listed, str(exc.value)
        finally:
            await up.close()

    listed, mod_error = asyncio.run(serve(pages, body))
    assert listed == b"v1.0.0\n"
    assert "module proxy https://proxy.example.test" in mod_error


def test_temp_files_of_a_dead_process_are_swept_at_start(tmp_path: Path) -> None:
    """kill -9 during a zip build leaves its archive behind; the next start removes it."""
    tmp_root = tmp_path / "cache" / "tmp"
    dead = tmp_root / "host-99999-deadbeef"
    (dead / "archive-x").mkdir(parents=True)
    (dead / "archive-x" / "archive.zip").write_bytes(b"PK" * 1000)
    (dead / ".owner").touch()  # nobody holds its lock: the owner is gone
    alive = tmp_root / "host-1-cafebabe"
    (alive / "prebuilt-y").mkdir(parents=True)
    fd = os.open(alive / ".owner", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live worker sharing the cache
    try:
        up = DirectUpstream(DirectConfig(cache_dir=tmp_path / "cache"))
        assert not dead.exists()
        assert (alive / "prebuilt-y").is_dir()
        own = [p for p in tmp_root.iterdir() if p not in (alive,)]
        assert len(own) == 1 and (own[0] / ".owner").exists()
        asyncio.run(up.close())
        assert not own[0].exists()  # a clean stop removes its own directory
    finally:
        os.close(fd)
