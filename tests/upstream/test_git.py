"""test_git covers upstream.git: mirroring, refresh, revision lookup, errors, secrets and timeouts.

Remote failures are produced by a loopback aiohttp server speaking just enough
HTTP for git (401, 404, a request that never answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gomirror.errors import NotFound, UpstreamError
from gomirror.upstream.git import (
    GitError,
    GitRepo,
    GitRunner,
    GitSettings,
    _classify_remote_error,
    _committer_time,
    _parse_batch,
    parse_ls_remote,
    redact_url,
)
from support.gitrepos import GIT, GitWorld, RepoBuilder, Symlink


def make_repo(world: GitWorld, tmp: Path, name: str, ttl: float = 0.0, **kw: Any) -> GitRepo:
    runner = GitRunner(GitSettings(git_config=world.git_config, **kw))
    return GitRepo(runner, tmp / "cache", f"https://github.com/{name}", ttl)


@pytest.fixture
def repo(world: GitWorld) -> RepoBuilder:
    r = world.repo("acme/g")
    r.commit({"go.mod": "module github.com/acme/g\n", "a.go": "package g\n"})
    r.tag("v1.0.0", annotated=True)
    r.commit({"b.go": "package g\n"})
    return r


def test_parse_ls_remote_unwraps_annotated_tags() -> None:
    text = (
        "aaa\tHEAD\nbbb\trefs/heads/main\nccc\trefs/tags/v1\n"
        "ddd\trefs/tags/v1^{}\neee\trefs/pull/1/head\n"
    )
    snap = parse_ls_remote(text, 0.0)
    assert dict(snap.refs) == {"HEAD": "aaa", "refs/heads/main": "bbb", "refs/tags/v1": "ddd"}
    assert snap.raw_heads_and_tags() == {"refs/heads/main": "bbb", "refs/tags/v1": "ccc"}
    assert snap.tags() == [("v1", "ddd")]


def test_stat_resolves_tags_branches_and_hashes(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    g = make_repo(world, tmp_path, "acme/g")
    tagged = repo.git("rev-parse", "v1.0.0^{commit}").strip()

    async def run() -> None:
        info = await g.stat("v1.0.0")
        assert (info.name, info.tags, info.version, info.ref) == (
            tagged,
            ("v1.0.0",),
            "v1.0.0",
            "refs/tags/v1.0.0",
        )
        head = await g.stat("main")
        assert head.name == repo.head() and head.version == repo.head()
        assert head.ref == "refs/heads/main" and head.short == repo.head()[:12]
        assert (await g.stat(tagged[:7])).name == tagged
        assert (await g.stat(tagged)).name == tagged
        with pytest.raises(NotFound, match="unknown revision nope"):
            await g.stat("nope")
        with pytest.raises(NotFound, match="unknown revision"):
            await g.stat("0" * 40)
        assert await g.read_file(tagged, "go.mod") == b"module github.com/acme/g\n"
        assert await g.read_file(tagged, "b.go") is None
        assert await g.descends_from(repo.head(), "refs/tags/v1.0.0")
        assert await g.merged_tags(repo.head(), "v") == ["v1.0.0"]

    asyncio.run(run())


def test_refresh_sees_new_and_deleted_tags(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    g = make_repo(world, tmp_path, "acme/g")

    async def run() -> None:
        assert [t for t, _ in (await g.refs()).tags()] == ["v1.0.0"]
        repo.tag("v1.1.0")
        repo.git("tag", "-d", "v1.0.0")
        snap = await g.refs()
        assert [t for t, _ in snap.tags()] == ["v1.1.0"]
        local = repo.git("tag", "-l").split()
        assert local == ["v1.1.0"]
        assert await g.merged_tags(repo.head(), "") == ["v1.1.0"]

    asyncio.run(run())


def test_refs_are_reused_within_ttl(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    g = make_repo(world, tmp_path, "acme/g", ttl=3600.0)

    async def run() -> None:
        first = await g.refs()
        repo.tag("v9.0.0")
        assert await g.refs() is first
        assert "refs/tags/v9.0.0" in (await g.refs(fresh=True)).refs

    asyncio.run(run())


def test_archive_neutralises_attributes(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    g = make_repo(world, tmp_path, "acme/g")

    async def run() -> None:
        await g.stat("main")  # archive needs the commit local
        dst = tmp_path / "a.zip"
        await g.archive(repo.head(), "", dst)
        await g.archive(repo.head(), "", dst)
        assert (g.dir / "info" / "attributes").read_text() == "\n* -export-subst -export-ignore\n"
        assert dst.stat().st_size > 0
        with pytest.raises(NotFound):
            await g.archive(repo.head(), "missing-dir", dst)

    asyncio.run(run())


def test_missing_repository_is_not_found(world: GitWorld, tmp_path: Path) -> None:
    g = make_repo(world, tmp_path, "acme/absent")
    with pytest.raises(NotFound, match=r"repository github\.com/acme/absent not found"):
        asyncio.run(g.refs())


def test_redact_url() -> None:
    assert (
        redact_url("fatal: https://bob:s3cret@h.example/x failed")
        == "fatal: https://h.example/x failed"
    )


def test_tokens_travel_in_environment_only(tmp_path: Path) -> None:
    runner = GitRunner(
        GitSettings(tokens={"git.corp.example": "bob:s3cret", "h2.example": "tok-abcdef"})
    )

    async def run() -> str:
        args = ["config", "--get-urlmatch", "http.extraheader", "https://git.corp.example/x.git"]
        _, out = await runner.run(args, cwd=tmp_path)
        return out.decode().strip()

    assert asyncio.run(run()) == "Authorization: Basic Ym9iOnMzY3JldA=="
    assert runner.sanitize("token s3cret and tok-abcdef leaked") == "token *** and *** leaked"


async def with_git_server(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    body: Callable[[int], Awaitable[Any]],
) -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await body(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def run_against(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], url: str, tmp: Path, **kw: Any
) -> Exception:
    async def body(port: int) -> Exception:
        g = GitRepo(GitRunner(GitSettings(**kw)), tmp / "cache", url.format(port=port), 0.0)
        try:
            await g.refs()
        except (NotFound, UpstreamError) as exc:
            return exc
        raise AssertionError("refs() should have failed")

    result: Exception = asyncio.run(with_git_server(handler, body))
    return result


def test_auth_failure_names_repo_without_credentials(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})

    for url in ("http://127.0.0.1:{port}/acme/x", "http://bob:s3cret@127.0.0.1:{port}/acme/x"):
        err = run_against(handler, url, tmp_path)
        assert type(err) is UpstreamError
        assert str(err) == "authentication failed for 127.0.0.1/acme/x"


def test_http_404_is_not_found(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=404)

    err = run_against(handler, "http://127.0.0.1:{port}/acme/x", tmp_path)
    assert isinstance(err, NotFound)


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("fatal: repository 'http://127.0.0.1:44013/acme/x/' not found", NotFound),
        ("fatal: repository 'http://127.0.0.1:34031/acme/x/' not found", NotFound),
        (
            "fatal: unable to access 'http://127.0.0.1:40404/acme/x/': "
            "The requested URL returned error: 403",
            UpstreamError,
        ),
        ("fatal: unable to access 'https://h.test/404/x/': Could not resolve host", UpstreamError),
    ],
)
def test_a_port_or_path_in_the_url_never_reads_as_a_status(
    stderr: str, kind: type[Exception]
) -> None:
    err = _classify_remote_error(GitError(["ls-remote"], 128, stderr), "http://h.test/acme/x")
    assert type(err) is kind
    assert ("authentication failed" in str(err)) == ("403" in stderr.rsplit("'", 1)[-1])


def test_timeout_kills_git(tmp_path: Path) -> None:
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(status=500)

    err = run_against(handler, "http://127.0.0.1:{port}/slow", tmp_path, timeout=1.0)
    assert type(err) is UpstreamError
    assert "timed out" in str(err)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/acme/g",
        'https://git.example.test/we"ird;path#frag\\back slash',
        "ssh://git@git.example.test:2222/group/sub/repo.git",
        "https://git.example.test/tab\there",  # not quotable here: written by git config
    ],
)
def test_created_repository_names_its_remote_exactly(tmp_path: Path, url: str) -> None:
    """The remote URL written into a new repository's config reads back unchanged."""
    runner = GitRunner(GitSettings())
    g = GitRepo(runner, tmp_path / "cache", url, 0.0)
    asyncio.run(g._init())
    code, out = asyncio.run(runner.run(["config", "--get", "remote.origin.url"], git_dir=g.dir))
    assert (code, out.decode().rstrip("\n")) == (0, url)
    assert not (g.dir / "hooks").exists()  # no template copied


def test_first_listing_runs_beside_the_repository_creation(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    """A new repository is listed by URL while it is created; the next listing uses origin."""
    g = make_repo(world, tmp_path, "acme/g")
    first = asyncio.run(g.refs())
    assert (g.dir / "objects").is_dir()
    second = asyncio.run(g.refs(fresh=True))
    assert first.refs == second.refs and "refs/tags/v1.0.0" in first.refs


def test_created_repository_is_one_git_accepts_whole(tmp_path: Path) -> None:
    """The layout gomirror writes instead of running git init is a sound, empty, bare SHA-1 repository."""
    runner = GitRunner(GitSettings())
    g = GitRepo(runner, tmp_path / "cache", "https://github.com/acme/g", 0.0)
    asyncio.run(g._init())

    def git(*args: str) -> str:
        code, out = asyncio.run(runner.run(list(args), git_dir=g.dir))
        assert code == 0
        return out.decode().strip()

    assert git("rev-parse", "--is-bare-repository") == "true"
    assert git("rev-parse", "--show-object-format") == "sha1"
    assert git("config", "--get", "core.repositoryformatversion") == "0"
    assert git("for-each-ref") == ""
    git("fsck", "--no-dangling")
    assert (g.dir / "info" / "attributes").read_text() == "\n* -export-subst -export-ignore\n"
    assert not list(g.dir.parent.glob("*.init-*"))


def logged_repo(world: GitWorld, tmp: Path, name: str) -> tuple[GitRepo, Path]:
    """A GitRepo whose git commands are appended to the returned log file."""
    log = tmp / "git.log"
    script = tmp / "git-logged"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{GIT}" "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return make_repo(world, tmp, name, git_binary=str(script)), log


def test_commit_lookup_reads_the_watched_files_with_it(world: GitWorld, tmp_path: Path) -> None:
    """One cat-file --batch per commit answers its time and every watched file, present or not."""
    r = world.repo("acme/w")
    r.commit(
        {
            "go.mod": "module github.com/acme/w\n",
            "sub/go.mod": Symlink("../go.mod"),  # a symlink: its blob is the link text
            "dir/go.mod/x.go": "package x\n",  # a tree where a file is asked for
        }
    )
    r.tag("v1.0.0", annotated=True)
    tagged = r.git("rev-parse", "v1.0.0^{commit}").strip()
    when = int(r.git("log", "-n1", "--format=%ct", tagged).strip())
    g, log = logged_repo(world, tmp_path, "acme/w")
    for f in ("go.mod", "sub/go.mod", "dir/go.mod", "absent/go.mod"):
        g.watch_file(f)

    async def run() -> list[bytes | None]:
        info = await g.stat("v1.0.0")
        assert (info.name, info.time) == (tagged, when)
        return [
            await g.read_file(tagged, f)
            for f in ("go.mod", "sub/go.mod", "dir/go.mod", "absent/go.mod")
        ]

    assert asyncio.run(run()) == [b"module github.com/acme/w\n", b"../go.mod", None, None]
    lines = log.read_text().splitlines()
    assert sum("cat-file" in line for line in lines) == 1, lines
    assert not any(" log " in f" {line} " for line in lines)


def test_batch_output_parses_missing_and_ambiguous_names() -> None:
    h = "a" * 40
    out = f"{h} blob 3\nabc\nnope missing\n1234567 ambiguous\n{h} commit 0\n\n".encode()
    assert _parse_batch(out, 4) == [(h, "blob", b"abc"), None, None, (h, "commit", b"")]
    assert _parse_batch(b"", 2) == []  # nothing parsed: callers treat it as missing
    assert _parse_batch(f"{h} blob 9\nabc\n".encode(), 1) == []  # cut short


def test_committer_time_is_read_from_the_header_only() -> None:
    commit = (
        b"tree " + b"b" * 40 + b"\nauthor A <a@x> 1700000000 +0100\n"
        b"committer C <c@x> 1700003600 -0500\n\ncommitter X <x@x> 1 +0000\n"
    )
    assert _committer_time(commit) == 1700003600
    assert _committer_time(b"tree x\ncommitter broken\n\n") is None
    assert _committer_time(b"tree x\n\ncommitter C <c@x> 5 +0000\n") is None
