"""test_git_shallow covers what direct mode fetches: refs only, one commit shallow, history on demand.

A wrapper around the real git (``GitSettings.git_binary``) appends every
command line to a log, so each test can say which git commands ran: no object
fetch for ``list``, one ``--depth=1`` fetch for a tag, a full fetch only for
a pseudo-version's ancestry check, nothing fetched again by a second
``GitRepo`` (or process) reusing the cache repository. The cross-process lock
is tested by holding the repository's ``flock`` from the test itself (flock
conflicts between open file descriptions, as between processes) and by two
worker processes fetching into one cache directory at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gomirror.errors import NotFound
from gomirror.module import pseudo
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.git import GitRepo, GitRunner, GitSettings
from support.gitrepos import GIT, GitWorld, RepoBuilder

M = "github.com/acme/deep"
SRC = Path(__file__).resolve().parents[2] / "src"
T = TypeVar("T")


def logging_git(tmp: Path) -> tuple[Path, Path]:
    """A git wrapper script that logs its arguments; returns (script, log)."""
    log = tmp / "git.log"
    script = tmp / "git-logged"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{GIT}" "$@"\n', encoding="utf-8")
    script.chmod(0o755)
    return script, log


def logged_repo(world: GitWorld, tmp: Path, refs_ttl: float) -> tuple[GitRepo, Path]:
    """A GitRepo of the deep module whose git commands go to the returned log."""
    git, log = logging_git(tmp)
    runner = GitRunner(GitSettings(git_config=world.git_config, git_binary=str(git)))
    return GitRepo(runner, tmp / "cache", f"https://{M}", refs_ttl), log


def fetches(log: Path) -> list[str]:
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if " fetch " in f" {line} "]


def local_commits(cache_repo: Path) -> int:
    out = subprocess.run(
        [GIT, "--git-dir", str(cache_repo), "rev-list", "--count", "--all"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"},
    )
    return int(out.stdout.strip() or 0)


@pytest.fixture
def deep(world: GitWorld) -> RepoBuilder:
    r = world.repo("acme/deep")
    r.commit({"go.mod": f"module {M}\n", "a.go": "package deep\n"})
    r.tag("v1.0.0")
    for i in range(8):
        r.commit({"a.go": f"package deep // {i}\n"})
    r.tag("v1.1.0", annotated=True)
    for i in range(3):
        r.commit({"b.go": f"package deep // {i}\n"})
    return r


def direct(world: GitWorld, tmp: Path, git: Path, prebuild_zips: int = 8) -> DirectUpstream:
    cfg = DirectConfig(
        cache_dir=tmp / "cache",
        git_config=world.git_config,
        refs_ttl=3600.0,
        git_binary=str(git),
        prebuild_zips=prebuild_zips,
    )
    return DirectUpstream(cfg)


def with_direct(
    world: GitWorld, tmp: Path, git: Path, work: Callable[[DirectUpstream], Awaitable[T]]
) -> T:
    """Run work against a new DirectUpstream (no prebuilt zips) and close it."""

    async def body() -> T:
        up = direct(world, tmp, git, prebuild_zips=0)
        try:
            return await work(up)
        finally:
            await up.close()

    return asyncio.run(body())


def cache_repo(tmp: Path) -> Path:
    [repo] = [p for p in (tmp / "cache" / "git").iterdir() if p.is_dir()]
    return repo


def test_list_and_latest_fetch_no_history(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    git, log = logging_git(tmp_path)

    async def body() -> tuple[bytes, str]:
        up = direct(world, tmp_path, git)
        try:
            listed = (await up.list(M)).body
            assert fetches(log) == []  # ls-remote answered the list
            latest = json.loads((await up.latest(M)).body)["Version"]
            return listed, latest
        finally:
            await up.close()

    listed, latest = asyncio.run(body())
    assert (listed, latest) == (b"v1.0.0\nv1.1.0\n", "v1.1.0")
    [fetch] = fetches(log)  # only the newest tag, for its go.mod (retractions)
    assert "--depth=1" in fetch and "refs/tags/v1.1.0:refs/tags/v1.1.0" in fetch
    repo = cache_repo(tmp_path)
    assert local_commits(repo) == 1
    assert (repo / "shallow").exists()


def test_tag_zip_is_shallow_and_reused_by_a_new_instance(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    git, log = logging_git(tmp_path)

    async def zip_once(name: str) -> bytes:
        up = direct(world, tmp_path, git, prebuild_zips=0)
        try:
            await up.info(M, "v1.0.0")
            await up.zip(M, "v1.0.0", tmp_path / name)
            return (tmp_path / name).read_bytes()
        finally:
            await up.close()

    first = asyncio.run(zip_once("a.zip"))
    # v1.0.0 itself, then the newest tag v1.1.0 for its retractions: both shallow.
    assert [f.split()[-1] for f in fetches(log)] == [
        "+refs/tags/v1.0.0:refs/tags/v1.0.0",
        "+refs/tags/v1.1.0:refs/tags/v1.1.0",
    ]
    assert all("--depth=1" in f for f in fetches(log))
    assert local_commits(cache_repo(tmp_path)) == 2
    log.unlink()
    second = asyncio.run(zip_once("b.zip"))  # a fresh process's view: same cache directory
    assert second == first
    assert fetches(log) == []


def test_pseudo_version_ancestry_completes_history(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    git, log = logging_git(tmp_path)
    head = deep.head()
    t = int(deep.git("log", "-n1", "--format=%ct", head).strip())
    version = pseudo.pseudo_version("", "v1.1.0", dt.datetime.fromtimestamp(t, dt.UTC), head[:12])

    async def body() -> tuple[str, str]:
        up = direct(world, tmp_path, git)
        try:
            by_branch = json.loads((await up.info(M, "main")).body)["Version"]
            exact = json.loads((await up.info(M, version)).body)["Version"]
            return by_branch, exact
        finally:
            await up.close()

    assert asyncio.run(body()) == (version, version)
    assert (cache_repo(tmp_path) / "gomirror-complete").exists()
    assert local_commits(cache_repo(tmp_path)) == int(deep.git("rev-list", "--count", "--all"))
    assert not (cache_repo(tmp_path) / "shallow").exists()
    assert sum("--unshallow" in f for f in fetches(log)) == 1


def test_complete_repository_fetches_new_tags_incrementally(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    g, log = logged_repo(world, tmp_path, 0.0)

    async def body() -> None:
        assert await g.merged_tags(deep.head(), "v") == ["v1.0.0", "v1.1.0"]
        deep.commit({"c.go": "package deep\n"})
        deep.tag("v1.2.0")
        log.unlink()
        info = await g.stat("v1.2.0")
        assert info.tags == ("v1.2.0",)
        assert await g.descends_from(info.name, "refs/tags/v1.0.0")

    asyncio.run(body())
    [fetch] = fetches(log)
    assert "--depth" not in fetch  # history is kept complete
    assert not (g.dir / "shallow").exists()


def test_fetch_waits_for_another_process_holding_the_lock(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g, log = logged_repo(world, tmp_path, 3600.0)
    caplog.set_level(logging.DEBUG, logger="gomirror.upstream.git_lock")

    async def body() -> None:
        await g.refs()  # creates the repository
        fd = os.open(g.lock.path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another worker" is fetching
        try:
            task = asyncio.create_task(g.stat("v1.0.0"))
            deadline = time.monotonic() + 20
            while not any(r.getMessage() == "git repository busy" for r in caplog.records):
                assert time.monotonic() < deadline, "stat never waited for the lock"
                assert not task.done()
                await asyncio.sleep(0.01)
            assert fetches(log) == []  # nothing touched the repository meanwhile
        finally:
            os.close(fd)
        info = await asyncio.wait_for(task, 20)
        assert info.version == "v1.0.0"

    asyncio.run(body())
    assert len(fetches(log)) == 1


WORKER = """
import asyncio, sys
from pathlib import Path
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.module.dirhash import hash_zip

async def main() -> None:
    cache, gitconfig, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    up = DirectUpstream(DirectConfig(cache_dir=cache, git_config=gitconfig, refs_ttl=0.0))
    try:
        hashes = []
        for v in sys.argv[4:]:
            await up.zip("github.com/acme/deep", v, out / f"{v}.zip")
            hashes.append(hash_zip(out / f"{v}.zip"))
        print(" ".join(hashes))
    finally:
        await up.close()

asyncio.run(main())
"""


def test_two_processes_share_one_cache_repository(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = []
    for i, order in enumerate((["v1.0.0", "v1.1.0"], ["v1.1.0", "v1.0.0"])):
        out = tmp_path / f"out{i}"
        out.mkdir()
        args = [sys.executable, "-c", WORKER, str(cache), str(world.git_config), str(out), *order]
        procs.append(
            subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr.decode()
        results.append(stdout.decode().split())
    assert results[0] == list(reversed(results[1]))
    repo = cache_repo(tmp_path)
    fsck = subprocess.run(
        [GIT, "--git-dir", str(repo), "fsck", "--no-dangling"], capture_output=True, text=True
    )
    assert fsck.returncode == 0, fsck.stderr
    assert not list((cache / "git").glob("*.init-*"))


def test_one_tag_asked_three_ways_at_once_runs_each_git_question_once(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    """.info, .mod and .zip of the newest tag at once: one resolution, one fetch, one read."""
    git, log = logging_git(tmp_path)

    async def three_ways(up: DirectUpstream) -> None:
        await asyncio.gather(
            up.info(M, "v1.1.0"), up.mod(M, "v1.1.0"), up.zip(M, "v1.1.0", tmp_path / "z.zip")
        )

    with_direct(world, tmp_path, git, three_ways)
    lines = log.read_text().splitlines()
    verbs = [
        next(a for a in line.split() if not a.startswith("-") and "=" not in a) for line in lines
    ]
    # The repository is created without git (no init, no config: the remote is
    # written with it); the commit is looked up once, after the fetch, and its
    # go.mod is read by that same cat-file --batch (no log, no second cat-file).
    assert sorted(verbs) == ["archive", "cat-file", "fetch", "ls-remote"], lines
    assert len(fetches(log)) == 1
    assert any("cat-file --batch" in line for line in lines)


def _gated_git(tmp: Path) -> tuple[Path, Path]:
    """A git wrapper whose ls-remote waits (up to 10 s) until some fetch has started."""
    log, mark = tmp / "git.log", tmp / "fetch-started"
    script = tmp / "git-gated"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '  *" ls-remote "*) i=0\n'
        f'    while [ ! -e "{mark}" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n'
        f'    [ -e "{mark}" ] || echo "ls-remote gave up waiting" >> "{log}";;\n'
        f'  *" fetch "*) touch "{mark}";;\n'
        "esac\n"
        f'echo "$*" >> "{log}"\n'
        f'exec "{GIT}" "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script, log


def test_a_new_repository_fetches_the_tag_while_listing_refs(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    """The first .info of a tag starts its shallow fetch before ls-remote has answered."""
    git, log = _gated_git(tmp_path)

    async def version(up: DirectUpstream) -> str:
        return str(json.loads((await up.info(M, "v1.1.0")).body)["Version"])

    assert with_direct(world, tmp_path, git, version) == "v1.1.0"
    lines = log.read_text().splitlines()
    assert "ls-remote gave up waiting" not in lines
    [fetch] = fetches(log)  # the speculative fetch was the only one needed
    assert "--depth=1" in fetch and fetch.endswith("+refs/tags/v1.1.0:refs/tags/v1.1.0")
    assert lines.index(fetch) < next(i for i, x in enumerate(lines) if "ls-remote" in x)


class _CallOrder(GitRunner):
    """The real runner, noting which git command each run() call was for, in order."""

    def __init__(self, settings: GitSettings) -> None:
        super().__init__(settings)
        self.calls: list[str] = []

    async def run(self, args: Sequence[str], **kw: Any) -> tuple[int, bytes]:
        self.calls.append(next(a for a in args if not a.startswith("-") and "=" not in a))
        return await super().run(args, **kw)


def test_the_speculative_fetch_starts_before_the_listing(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    """Starting a git blocks the loop: the fetch, the long one, is started first."""
    runner = _CallOrder(GitSettings(git_config=world.git_config))
    g = GitRepo(runner, tmp_path / "cache", f"https://{M}", 3600.0)

    async def body() -> str:
        g.speculate_tag("v1.1.0")
        try:
            return (await g.stat("v1.1.0")).version
        finally:
            await g.close()

    assert asyncio.run(body()) == "v1.1.0"
    assert runner.calls == ["fetch", "ls-remote", "cat-file"]


def test_the_listing_does_not_wait_for_a_speculation_that_cannot_start(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    """Another process holding the new repository's lock: ls-remote still runs meanwhile."""
    g, log = logged_repo(world, tmp_path, 3600.0)

    async def body() -> str:
        g.lock.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(g.lock.path, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # "another worker" is creating the repository
        try:
            g.speculate_tag("v1.1.0")
            task = asyncio.create_task(g.stat("v1.1.0"))
            deadline = time.monotonic() + 20
            while not any("ls-remote" in line for line in _lines(log)):
                assert time.monotonic() < deadline, "ls-remote waited for the lock"
                assert not task.done()
                await asyncio.sleep(0.01)
            assert fetches(log) == []
        finally:
            os.close(fd)
        try:
            return (await asyncio.wait_for(task, 20)).version
        finally:
            await g.close()

    assert asyncio.run(body()) == "v1.1.0"


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_speculative_fetch_of_a_missing_tag_changes_nothing(
    world: GitWorld, deep: RepoBuilder, tmp_path: Path
) -> None:
    git, log = logging_git(tmp_path)

    async def missing_then_present(up: DirectUpstream) -> None:
        with pytest.raises(NotFound, match=r"v9\.9\.9"):
            await up.info(M, "v9.9.9")
        assert json.loads((await up.info(M, "v1.0.0")).body)["Version"] == "v1.0.0"

    with_direct(world, tmp_path, git, missing_then_present)
    assert local_commits(cache_repo(tmp_path)) >= 1
    assert next(f.split()[-1] for f in fetches(log)) == "+refs/tags/v9.9.9:refs/tags/v9.9.9"
