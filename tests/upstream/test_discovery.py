"""test_discovery covers upstream.discovery: rules, known hosts, .git qualifiers, go-get pages.

go-get tests run a loopback aiohttp server; the Discoverer reaches it through
its ``resolve`` host override and the insecure (plain http) patterns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from gomirror.errors import NotFound, UpstreamError
from gomirror.upstream.discovery import (
    Discoverer,
    DiscoverySettings,
    MetaImport,
    RepoRoot,
    RepoRule,
    match_go_import,
    parse_meta_go_imports,
)


def meta(content: str) -> str:
    return f'<meta name="go-import" content="{content}">'


def page(*metas: str) -> str:
    return "<!DOCTYPE html><html><head>" + "".join(metas) + "</head><body>x</body></html>"


async def with_server(
    pages: dict[str, tuple[int, str]],
    body: Callable[[dict[str, str], list[str]], Awaitable[Any]],
) -> Any:
    """Serve pages (path -> (status, html)) on loopback; run body(resolve map, request log)."""
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(f"{request.host.split(':')[0]}{request.path}?{request.query_string}")
        status, text = pages.get(request.path, (404, "not found"))
        return web.Response(status=status, text=text, content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        resolve = {"example.test": f"127.0.0.1:{port}", "other.test": f"127.0.0.1:{port}"}
        return await body(resolve, seen)
    finally:
        await runner.cleanup()


def discover(
    pages: dict[str, tuple[int, str]], module: str, insecure: str = "example.test,other.test"
) -> tuple[RepoRoot | Exception, list[str]]:
    async def body(
        resolve: dict[str, str], seen: list[str]
    ) -> tuple[RepoRoot | Exception, list[str]]:
        d = Discoverer(DiscoverySettings(insecure=insecure, resolve=resolve, timeout=10))
        try:
            return await d.find(module), seen
        except (NotFound, UpstreamError) as exc:
            return exc, seen
        finally:
            await d.close()

    result: tuple[RepoRoot | Exception, list[str]] = asyncio.run(with_server(pages, body))
    return result


# -- meta parsing -----------------------------------------------------------------------


def test_parse_meta_is_robust() -> None:
    html = (
        "<html><HEAD><title>t</title>"
        "<META NAME='go-import' CONTENT='example.test/a git https://git.example.test/a'/>"
        '<meta content="example.test/b git https://git.example.test/b sub/dir" name="go-import">'
        '<meta name="go-source" content="example.test/a x y z">'
        '<meta name="go-import" content="too few">'
        "</head><body>"
        '<meta name="go-import" content="example.test/c git https://late">'
        "</body></html>"
    )
    assert parse_meta_go_imports(html) == [
        MetaImport("example.test/a", "git", "https://git.example.test/a"),
        MetaImport("example.test/b", "git", "https://git.example.test/b", "sub/dir"),
    ]


def test_parse_meta_puts_mod_first_and_drops_superseded() -> None:
    html = page(
        meta("example.test/a git https://git.example.test/a"),
        meta("example.test/a mod https://proxy.example.test"),
        meta("example.test/b git https://git.example.test/b"),
    )
    assert [(m.prefix, m.vcs) for m in parse_meta_go_imports(html)] == [
        ("example.test/a", "mod"),
        ("example.test/b", "git"),
    ]


def test_match_go_import() -> None:
    a = MetaImport("example.test/a", "git", "https://x/a")
    ab = MetaImport("example.test/a/b", "git", "https://x/ab")
    assert match_go_import([a], "example.test/a/b/c") == a
    with pytest.raises(NotFound, match="no go-import meta tags"):
        match_go_import([a], "example.test/ab")
    with pytest.raises(NotFound, match="multiple meta tags"):
        match_go_import([a, ab], "example.test/a/b")


# -- rules and static hosts ---------------------------------------------------------------


def find(settings: DiscoverySettings, module: str) -> RepoRoot:
    async def run() -> RepoRoot:
        d = Discoverer(settings)
        try:
            return await d.find(module)
        finally:
            await d.close()

    return asyncio.run(run())


def test_rule_decides_repo_root_and_longest_wins() -> None:
    rules = (
        RepoRule.parse("git.corp.example/* ssh://git@git.corp.example/{path}.git"),
        RepoRule.parse("git.corp.example/group/sub/* https://git.corp.example/{path}.git"),
        RepoRule.parse("files.example/tools file:///srv/git/{root} go"),
    )
    s = DiscoverySettings(rules=rules, go_get=False)
    assert find(s, "git.corp.example/team/pkg/v2") == RepoRoot(
        "git.corp.example/team", "git", "ssh://git@git.corp.example/team.git"
    )
    assert find(s, "git.corp.example/group/sub/proj/x") == RepoRoot(
        "git.corp.example/group/sub/proj", "git", "https://git.corp.example/group/sub/proj.git"
    )
    assert find(s, "files.example/tools/cmd") == RepoRoot(
        "files.example/tools", "git", "file:///srv/git/files.example/tools", "go"
    )


def test_rule_parse_rejects_garbage() -> None:
    with pytest.raises(Exception, match="want"):
        RepoRule.parse("only-one-field")


def test_known_hosts() -> None:
    s = DiscoverySettings(go_get=False)
    assert find(s, "github.com/Owner/repo/sub/v3") == RepoRoot(
        "github.com/Owner/repo", "git", "https://github.com/Owner/repo"
    )
    assert find(s, "bitbucket.org/o/r") == RepoRoot(
        "bitbucket.org/o/r", "git", "https://bitbucket.org/o/r"
    )
    with pytest.raises(NotFound, match="invalid version control suffix"):
        find(s, "github.com/o/r.git")
    with pytest.raises(NotFound, match="no repository rule"):
        find(s, "gitlab.com/group/sub/proj")


def test_vcs_qualifier() -> None:
    s = DiscoverySettings(go_get=False, insecure="plain.example")
    assert find(s, "code.example/a/b.git/sub") == RepoRoot(
        "code.example/a/b.git", "git", "https://code.example/a/b"
    )
    assert find(s, "plain.example/r.git") == RepoRoot(
        "plain.example/r.git", "git", "http://plain.example/r"
    )
    with pytest.raises(NotFound, match="hg is not supported"):
        find(s, "code.example/a/b.hg")


# -- go-get ---------------------------------------------------------------------------------


def test_go_get_with_prefix_verification() -> None:
    tag = meta("example.test/group/proj git https://git.example.test/group/proj.git")
    pages = {"/group/proj/sub/v2": (200, page(tag)), "/group/proj": (200, page(tag))}
    root, seen = discover(pages, "example.test/group/proj/sub/v2")
    assert root == RepoRoot(
        "example.test/group/proj", "git", "https://git.example.test/group/proj.git"
    )
    assert seen[-2:] == [
        "example.test/group/proj/sub/v2?go-get=1",
        "example.test/group/proj?go-get=1",
    ]


def test_go_get_subdir_field() -> None:
    tag = meta("example.test/m git https://git.example.test/mono go/m")
    root, _ = discover({"/m": (200, page(tag))}, "example.test/m")
    assert root == RepoRoot("example.test/m", "git", "https://git.example.test/mono", "go/m")


def test_go_get_disagreeing_prefix_page() -> None:
    pages = {
        "/p/x": (200, page(meta("example.test/p git https://a.example/p"))),
        "/p": (200, page(meta("example.test/p git https://b.example/p"))),
    }
    err, _ = discover(pages, "example.test/p/x")
    assert isinstance(err, NotFound) and "disagree" in str(err)


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        ({}, "404"),
        ({"/r": (200, "<html><head></head><body></body></html>")}, "no go-import meta tag"),
        ({"/r": (200, page(meta("example.test/r git file:///srv/r")))}, "file scheme"),
        ({"/r": (200, page(meta("example.test/r git example.test/r")))}, "no scheme"),
        ({"/r": (200, page(meta("example.test/r hg https://h/r")))}, "hg is not supported"),
        ({"/r": (200, page(meta("example.test/r git https://h/r -x")))}, "invalid subdirectory"),
    ],
)
def test_go_get_not_found(pages: dict[str, tuple[int, str]], message: str) -> None:
    err, _ = discover(pages, "example.test/r")
    assert isinstance(err, NotFound)
    assert message in str(err)


def test_go_get_server_error_is_upstream_error() -> None:
    err, _ = discover({"/r": (500, "boom")}, "example.test/r")
    assert isinstance(err, UpstreamError)


def test_go_get_mod_entry_is_reported() -> None:
    tag = meta("example.test/r mod https://proxy.example.test")
    root, _ = discover({"/r": (200, page(tag))}, "example.test/r")
    assert root == RepoRoot("example.test/r", "mod", "https://proxy.example.test")


def test_go_get_https_only_without_insecure() -> None:
    tag = meta("example.test/r git https://git.example.test/r")
    err, seen = discover({"/r": (200, page(tag))}, "example.test/r", insecure="other.test")
    assert isinstance(err, UpstreamError)
    assert "https fetch" in str(err)
    assert not any("?go-get=1" in s for s in seen)
