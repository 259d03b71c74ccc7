"""test_archivestream covers building a direct-mode zip while git writes its archive.

The stream reader is fed real ``git archive`` output (from a real repository
through ``GitRepo.archive_to``) and hand-made zips for what git never
writes; every refusal must be ``Unstreamable``, after which direct mode builds
the zip from a file, with the same ``h1:`` (checked here against that path and,
for every scenario of tests/upstream/test_direct_gocompare.py, against the go
command, since streaming is the path those tests take).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gomirror.module.dirhash import hash_zip
from gomirror.upstream import archivestream
from gomirror.upstream.archivestream import Unstreamable, read_members
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.git import GitRepo, GitRunner, GitSettings
from gomirror.upstream.vcsrepo import ArchiveFile
from support.gitrepos import GitWorld, RepoBuilder, Symlink

M = "github.com/acme/stream"


@pytest.fixture
def repo(world: GitWorld) -> RepoBuilder:
    r = world.repo("acme/stream")
    r.commit(
        {
            "go.mod": f"module {M}\n\ngo 1.21\n",
            "a.go": "package stream\n",
            "dir/b.go": "package dir\n" + "// é\n" * 2000,
            "link": Symlink("a.go"),
            "vendor/x/x.go": "package x\n",
            "nested/go.mod": "module other\n",
            "nested/n.go": "package n\n",
        }
    )
    r.tag("v1.0.0")
    return r


Member = tuple[str, int, str, bool]  # path, size, kind, packing started


def _members(world: GitWorld, tmp: Path, repo: RepoBuilder, **kw: int) -> list[Member]:
    runner = GitRunner(GitSettings(git_config=world.git_config))
    g = GitRepo(runner, tmp / "cache", f"https://{M}", 3600.0)

    async def body() -> list[Member]:
        info = await g.stat("v1.0.0")
        with ThreadPoolExecutor(2) as pool:
            files = await g.archive_to(info.name, "", lambda f: read_members(f, "", pool, **kw))
            return [(f.path, f.size, f.kind, f.packed is not None) for f in files]

    return asyncio.run(body())


def test_git_archive_streams_with_kinds_from_the_central_directory(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    members = _members(world, tmp_path, repo)
    kinds = {path: kind for path, _, kind, _ in members}
    assert kinds["link"] == "symlink" and kinds["a.go"] == "regular"
    assert set(kinds) == {"go.mod", "a.go", "dir/b.go", "link", "vendor/x/x.go", "nested/go.mod",
                          "nested/n.go"}  # fmt: skip
    assert all(packed for *_, packed in members)


def test_past_the_limit_git_is_stopped_and_the_reader_says_unstreamable(
    world: GitWorld, repo: RepoBuilder, tmp_path: Path
) -> None:
    with pytest.raises(Unstreamable, match="more than 100 bytes"):
        _members(world, tmp_path, repo, limit=100)


def _zip(**entry: object) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("prefix/a.go")
        info.compress_type = int(entry.get("method", zipfile.ZIP_STORED))  # type: ignore[call-overload]
        zf.writestr(info, b"package a\n")
    return buf.getvalue()


def _read(data: bytes) -> list[ArchiveFile]:
    with ThreadPoolExecutor(1) as pool:
        return read_members(io.BytesIO(data), "", pool)


def test_what_git_does_not_write_is_refused() -> None:
    assert [f.path for f in _read(_zip())] == ["a.go"]
    with pytest.raises(Unstreamable, match="not stored"):
        _read(_zip(method=zipfile.ZIP_DEFLATED))
    with_descriptor = bytearray(_zip())
    struct.pack_into("<H", with_descriptor, 6, 0x8)  # general purpose flag: data descriptor
    with pytest.raises(Unstreamable, match="not stored"):
        _read(bytes(with_descriptor))
    with pytest.raises(Unstreamable, match="ended early"):
        _read(_zip()[:40])
    with pytest.raises(Unstreamable, match="unexpected record"):
        _read(b"garbage!")
    renamed = _zip().replace(b"prefix/a.go", b"prefix/b.go", 1)  # the local name only
    with pytest.raises(Unstreamable, match="disagrees"):
        _read(renamed)
    latin = _zip().replace(b"prefix/a.go", b"prefix/\xe9.go")  # not UTF-8, not flagged
    with pytest.raises(Unstreamable, match="neither ASCII"):
        _read(latin)


def test_an_unstreamable_archive_is_built_from_a_file_with_the_same_hash(
    world: GitWorld,
    repo: RepoBuilder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def build(name: str) -> tuple[str, bytes]:
        async def body() -> tuple[str, bytes]:
            up = DirectUpstream(
                DirectConfig(
                    cache_dir=tmp_path / name, git_config=world.git_config, prebuild_zips=0
                )
            )
            try:
                await up.zip(M, "v1.0.0", tmp_path / f"{name}.zip")
                info = await up.info(M, "v1.0.0")
                return hash_zip(tmp_path / f"{name}.zip"), info.body
            finally:
                await up.close()

        return asyncio.run(body())

    streamed = build("streamed")
    monkeypatch.setattr(archivestream, "STREAM_LIMIT", 10)
    with caplog.at_level(logging.DEBUG, logger="gomirror.upstream.direct"):
        from_file = build("from-file")
    assert any(r.getMessage() == "direct zip from a file" for r in caplog.records)
    assert streamed == from_file
    assert json.loads(streamed[1])["Version"] == "v1.0.0"
    with zipfile.ZipFile(tmp_path / "streamed.zip") as zf:
        names = zf.namelist()
    assert f"{M}@v1.0.0/link" not in names  # symlinks are left out
    assert f"{M}@v1.0.0/nested/n.go" not in names  # another module
    assert f"{M}@v1.0.0/dir/b.go" in names
