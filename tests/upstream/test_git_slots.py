"""test_git_slots covers fair git slots: per-repository cap, round robin, cancellation, a slow repo.

The unit tests drive ``FairSlots`` with events. The end-to-end test gives
``DirectUpstream`` a git wrapper that blocks every ``git archive`` of one
repository ("slow", a huge monorepo whose archives take minutes) until the
test releases it: with two slots, three zips of the slow repository must not
keep a zip of another repository waiting.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gomirror.module.dirhash import hash_zip
from gomirror.upstream.direct import DirectConfig, DirectUpstream
from gomirror.upstream.git_slots import FairSlots
from support.gitrepos import GIT, GitWorld


async def hold(slots: FairSlots, key: str, order: list[str], release: asyncio.Event) -> None:
    async with slots.slot(key):
        order.append(key)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_one_key_never_takes_the_last_slot() -> None:
    async def body() -> None:
        slots = FairSlots(3)
        order: list[str] = []
        release = asyncio.Event()
        tasks = [asyncio.create_task(hold(slots, "a", order, release)) for _ in range(3)]
        await settle()
        assert order == ["a", "a"] and slots.busy == 2  # the third "a" waits with a slot free
        tasks.append(asyncio.create_task(hold(slots, "b", order, release)))
        await settle()
        assert order == ["a", "a", "b"] and slots.held("b") == 1
        release.set()
        await asyncio.gather(*tasks)
        assert order.count("a") == 3 and slots.busy == 0

    asyncio.run(body())


def test_waiting_keys_are_served_round_robin() -> None:
    async def body() -> None:
        slots = FairSlots(1)
        order: list[str] = []
        gates = {name: asyncio.Event() for name in ("x", "a1", "a2", "a3", "b1")}

        async def one(key: str, name: str) -> None:
            async with slots.slot(key):
                order.append(name)
                await gates[name].wait()

        tasks = [asyncio.create_task(one("x", "x"))]
        await settle()
        for key, name in (("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1")):
            tasks.append(asyncio.create_task(one(key, name)))
        await settle()
        for name in ("x", "a1", "b1", "a2", "a3"):
            assert order[-1] == name
            gates[name].set()
            await settle()
        await asyncio.gather(*tasks)
        assert order == ["x", "a1", "b1", "a2", "a3"]

    asyncio.run(body())


def test_cancelled_waiters_leave_no_slot_behind() -> None:
    async def body() -> None:
        slots = FairSlots(2)
        order: list[str] = []
        release = asyncio.Event()
        first = asyncio.create_task(hold(slots, "a", order, release))
        waiting = asyncio.create_task(hold(slots, "a", order, release))
        await settle()
        assert order == ["a"]
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await first
        assert slots.busy == 0 and slots.held("a") == 0
        async with slots.slot("a"):  # nothing stale blocks the key
            assert slots.busy == 1

    asyncio.run(body())


def blocking_git(tmp: Path) -> tuple[Path, Path]:
    """A git wrapper blocking archives of repositories whose URL ends in /slow."""
    marks = tmp / "marks"
    marks.mkdir()
    script = tmp / "git-slow"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '*" archive "*)\n'
        f'  if "{GIT}" config remote.origin.url | grep -q "/slow$"; then\n'
        f'    touch "{marks}/entered.$$"\n'
        # The fake slow server: it waits for the test's release file.
        f'    while [ ! -e "{marks}/release" ]; do sleep 0.02; done\n'
        "  fi;;\n"
        "esac\n"
        f'exec "{GIT}" "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script, marks


def test_slow_repository_does_not_delay_another(tmp_path: Path) -> None:
    world = GitWorld(tmp_path / "world")
    slow = world.repo("acme/slow")
    for i in range(3):
        slow.commit({"go.mod": "module github.com/acme/slow\n", "s.go": f"package s // {i}\n"})
        slow.tag(f"v1.{i}.0")
    fast = world.repo("acme/fast")
    fast.commit({"go.mod": "module github.com/acme/fast\n", "f.go": "package f\n"})
    fast.tag("v1.0.0")
    git, marks = blocking_git(tmp_path)

    async def body() -> None:
        up = DirectUpstream(
            DirectConfig(
                cache_dir=tmp_path / "cache",
                git_config=world.git_config,
                max_git_processes=2,
                git_binary=str(git),
                prebuild_zips=0,
            )
        )
        try:
            slow_zips = [
                asyncio.create_task(
                    up.zip("github.com/acme/slow", f"v1.{i}.0", tmp_path / f"slow{i}.zip")
                )
                for i in range(3)
            ]
            deadline = time.monotonic() + 30
            while not list(marks.glob("entered.*")):
                assert time.monotonic() < deadline, "no slow archive started"
                await asyncio.sleep(0.01)
            await asyncio.wait_for(
                up.zip("github.com/acme/fast", "v1.0.0", tmp_path / "fast.zip"), 30
            )
            assert hash_zip(tmp_path / "fast.zip").startswith("h1:")
            assert not any(t.done() for t in slow_zips)
            assert len(list(marks.glob("entered.*"))) == 1  # one slot for the slow repo
            (marks / "release").touch()
            await asyncio.wait_for(asyncio.gather(*slow_zips), 60)
        finally:
            (marks / "release").touch()
            await up.close()

    asyncio.run(body())
    assert len({hash_zip(tmp_path / f"slow{i}.zip") for i in range(3)}) == 3
