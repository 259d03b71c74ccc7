"""test_git_prebuild covers zips built ahead on ``.info``: same bytes, never stale, cleaned up.

The prebuilt zip must be byte-identical to one built on request; a build made
from a commit the tag no longer names must not be served; builds nobody asks
for are deleted, at the latest when the upstream closes.
"""

from __future__ import annotations

import asyncio
import logging
import zipfile
from pathlib import Path

import pytest

from gomirror.upstream.direct import DirectConfig, DirectUpstream
from support.gitrepos import GitWorld, RepoBuilder

M = "github.com/acme/pre"


@pytest.fixture
def repo(world: GitWorld) -> RepoBuilder:
    r = world.repo("acme/pre")
    r.commit({"go.mod": f"module {M}\n", "p.go": "package pre\n", "LICENSE": "MIT\n"})
    r.tag("v1.0.0")
    r.commit({"q.go": "package pre\n"})
    r.tag("v1.1.0")
    return r


def upstream(world: GitWorld, cache: Path, **kw: object) -> DirectUpstream:
    return DirectUpstream(
        DirectConfig(cache_dir=cache, git_config=world.git_config, refs_ttl=0.0, **kw)  # type: ignore[arg-type]
    )


def prebuilt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage() == "direct zip prebuilt"]


def test_prebuilt_zip_is_identical_to_one_built_on_request(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gomirror.upstream.direct")

    async def body() -> None:
        ahead = upstream(world, tmp_path / "c1")
        plain = upstream(world, tmp_path / "c2", prebuild_zips=0)
        try:
            await ahead.info(M, "v1.0.0")
            await ahead.zip(M, "v1.0.0", tmp_path / "ahead.zip")
            assert len(prebuilt_lines(caplog)) == 1
            await plain.info(M, "v1.0.0")
            await plain.zip(M, "v1.0.0", tmp_path / "plain.zip")
            assert len(prebuilt_lines(caplog)) == 1
        finally:
            await ahead.close()
            await plain.close()

    asyncio.run(body())
    assert (tmp_path / "ahead.zip").read_bytes() == (tmp_path / "plain.zip").read_bytes()
    assert list((tmp_path / "c1" / "tmp").iterdir()) == []


def test_build_from_a_moved_tag_is_not_served(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gomirror.upstream.direct")

    async def body() -> None:
        up = upstream(world, tmp_path / "c")
        try:
            await up.info(M, "v1.1.0")
            # Let the build finish from the old commit before the tag moves.
            await asyncio.gather(*(e.task for e in up._prebuilt._entries.values()))
            repo.commit({"moved.go": "package pre // the tag moved\n"})
            repo.git("tag", "-f", "v1.1.0")
            await up.zip(M, "v1.1.0", tmp_path / "z.zip")
        finally:
            await up.close()

    asyncio.run(body())
    assert prebuilt_lines(caplog) == []
    with zipfile.ZipFile(tmp_path / "z.zip") as zf:
        assert f"{M}@v1.1.0/moved.go" in zf.namelist()


def test_unclaimed_builds_are_dropped(world: GitWorld, repo: RepoBuilder, tmp_path: Path) -> None:
    async def body() -> None:
        up = upstream(world, tmp_path / "c", prebuild_zips=1)
        try:
            await up.info(M, "v1.0.0")
            await up.info(M, "v1.1.0")  # the limit drops the v1.0.0 build
            await up.zip(M, "v1.0.0", tmp_path / "z.zip")  # built again, correctly
            with zipfile.ZipFile(tmp_path / "z.zip") as zf:
                assert f"{M}@v1.0.0/p.go" in zf.namelist()
        finally:
            await up.close()

    asyncio.run(body())
    assert list((tmp_path / "c" / "tmp").iterdir()) == []
