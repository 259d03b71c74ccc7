"""Tests for upstream.router: private modules reach only the private chain, everything else the public one.

Both chains are ``Recorder`` stand-ins that remember each call, so a test can
assert that a private module path never reached the public side.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.router import Router


class Recorder:
    """An Upstream that records every call and answers with its own name."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.calls: list[tuple[str, ...]] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    async def list(self, module: str) -> Fetched:
        self.calls.append(("list", module))
        return Fetched(b"", self._name)

    async def info(self, module: str, query: str) -> Fetched:
        self.calls.append(("info", module, query))
        return Fetched(b"", self._name)

    async def latest(self, module: str) -> Fetched:
        self.calls.append(("latest", module))
        return Fetched(b"", self._name)

    async def mod(self, module: str, version: str) -> Fetched:
        self.calls.append(("mod", module, version))
        return Fetched(b"", self._name)

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        self.calls.append(("zip", module, version, dst.name))
        if first_byte is not None:
            first_byte()
        return Fetched(b"", self._name)

    async def close(self) -> None:
        self.closed = True


async def every_op(router: Router, module: str, tmp: Path) -> list[str]:
    """Call all five operations for module; return who answered each."""
    return [
        (await router.list(module)).source,
        (await router.info(module, "v1.0.0")).source,
        (await router.latest(module)).source,
        (await router.mod(module, "v1.0.0")).source,
        (await router.zip(module, "v1.0.0", tmp / "x.zip")).source,
    ]


@pytest.mark.parametrize(
    ("patterns", "module", "private"),
    [
        ("corp.example", "corp.example/team/lib", True),
        ("corp.example", "corp.example", True),
        ("corp.example", "corp.example.com/lib", False),  # prefix per path element, not text
        ("corp.example", "github.com/corp.example/lib", False),
        ("*.corp.example", "git.corp.example/a/b", True),
        ("*.corp.example", "corp.example/a", False),
        ("github.com/acme/*", "github.com/acme/secret/v2", True),
        ("github.com/acme/*", "github.com/other/lib", False),
        ("a.example,b.example/x", "b.example/x/y", True),
        ("a.example,b.example/x", "b.example/y", False),
        ("a.example, ,b.example", "a.example/z", True),
    ],
)
def test_route_by_goprivate_patterns(
    patterns: str, module: str, private: bool, tmp_path: Path
) -> None:
    public, priv = Recorder("public"), Recorder("private")
    router = Router(public, priv, patterns)
    want = "private" if private else "public"
    assert router.route(module) is (priv if private else public)
    assert asyncio.run(every_op(router, module, tmp_path)) == [want] * 5
    # The other side never heard of the module.
    other = public if private else priv
    assert other.calls == []


def test_private_module_paths_never_reach_the_public_chain(tmp_path: Path) -> None:
    public, priv = Recorder("public"), Recorder("private")
    router = Router(public, priv, "corp.example")

    async def main() -> None:
        await every_op(router, "corp.example/secret", tmp_path)
        await every_op(router, "github.com/pub/lib", tmp_path)

    asyncio.run(main())
    assert all("corp.example" not in " ".join(c) for c in public.calls)
    assert {c[1] for c in priv.calls} == {"corp.example/secret"}
    assert priv.calls[4] == ("zip", "corp.example/secret", "v1.0.0", "x.zip")


def test_without_a_private_chain_everything_is_public(tmp_path: Path) -> None:
    public = Recorder("public")
    router = Router(public, None, "corp.example")
    assert router.patterns == ""
    assert asyncio.run(every_op(router, "corp.example/x", tmp_path)) == ["public"] * 5
    assert Router(public).route("anything/at/all") is public


def test_no_patterns_means_nothing_is_private(tmp_path: Path) -> None:
    public, priv = Recorder("public"), Recorder("private")
    router = Router(public, priv, "")
    assert asyncio.run(every_op(router, "corp.example/x", tmp_path)) == ["public"] * 5
    assert priv.calls == []


def test_first_byte_passes_through(tmp_path: Path) -> None:
    public = Recorder("public")
    seen: list[int] = []
    asyncio.run(Router(public).zip("m.example/a", "v1.0.0", tmp_path / "z", lambda: seen.append(1)))
    assert seen == [1]


def test_close_closes_both_chains() -> None:
    public, priv = Recorder("public"), Recorder("private")
    router = Router(public, priv, "corp.example")
    assert router.name == "router"
    asyncio.run(router.close())
    assert public.closed and priv.closed
    alone = Recorder("public")
    asyncio.run(Router(alone).close())
    assert alone.closed
