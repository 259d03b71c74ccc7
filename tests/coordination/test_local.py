"""Tests for coordination.local.LocalCoordinator: one run per key in a process, never two at once across processes.

Cross-process tests use real children (``support.child``) sharing one lock
directory. Ordering is observed, not timed: each child appends "enter"/"exit"
to a shared log inside the locked section, and reports on stdout the moment it
first finds the lock taken ("busy"), through a wrapper around ``fcntl.flock``
installed before gomirror is imported. The test lets a holder leave only after
the other child has been refused at least once.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gomirror.coordination.base import Coordinator
from gomirror.coordination.local import LocalCoordinator
from support.child import Child

KEY = "example.com/m/@v/v1.0.0.zip"

HOLDER_SCRIPT = r"""
import asyncio, fcntl, sys
from pathlib import Path

real_flock = fcntl.flock
told = []


def flock(fd, op):
    # Report the first refusal, whether the caller polls (LOCK_NB) or blocks.
    try:
        real_flock(fd, op | fcntl.LOCK_NB if op & fcntl.LOCK_EX else op)
    except BlockingIOError:
        if not told:
            told.append(1)
            print("busy", flush=True)
        if op & fcntl.LOCK_NB:
            raise
        real_flock(fd, op)


fcntl.flock = flock
from gomirror.coordination.local import LocalCoordinator

lock_dir, name, log, key = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]


def note(event):
    with open(log, "a") as f:
        f.write(f"{name} {event}\n")


async def main():
    coordinator = LocalCoordinator(lock_dir)

    async def work():
        note("enter")
        print("in", flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # hold the lock until the test says go
        note("exit")
        return name

    print("result", await coordinator.once(key, work), flush=True)


asyncio.run(main())
"""


def holder(lock_dir: Path, name: str, log: Path, key: str = KEY) -> Child:
    return Child.start(HOLDER_SCRIPT, str(lock_dir), name, str(log), key)


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def settle(cond: Callable[[], bool], steps: int = 10_000) -> None:
    """Let other tasks run until ``cond()`` holds (event-loop turns, no wall-clock waits)."""
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_it_is_a_coordinator(tmp_path: Path) -> None:
    c: Coordinator = LocalCoordinator(tmp_path / "locks")
    assert c.in_flight() == 0
    asyncio.run(c.close())


@pytest.mark.parametrize("with_lock_dir", [True, False])
def test_concurrent_callers_in_one_process_share_one_run(
    tmp_path: Path, with_lock_dir: bool
) -> None:
    async def main() -> None:
        c = LocalCoordinator(tmp_path / "locks" if with_lock_dir else None)
        gate = asyncio.Event()
        runs = 0

        async def work() -> object:
            nonlocal runs
            runs += 1
            await gate.wait()
            return object()

        tasks = [asyncio.create_task(c.once(KEY, work)) for _ in range(20)]
        await settle(lambda: runs == 1 and c.flights.shared >= 19)
        assert c.in_flight() == 1
        gate.set()
        results = await asyncio.gather(*tasks)
        assert runs == 1
        assert all(r is results[0] for r in results)
        assert c.in_flight() == 0

    asyncio.run(main())


def test_errors_reach_every_caller_and_release_the_lock(tmp_path: Path) -> None:
    class Boom(Exception):
        pass

    async def main() -> None:
        c = LocalCoordinator(tmp_path / "locks")
        gate = asyncio.Event()

        async def fail() -> None:
            await gate.wait()
            raise Boom("upstream exploded")

        tasks = [asyncio.create_task(c.once(KEY, fail)) for _ in range(5)]
        await settle(lambda: c.flights.shared >= 4)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, Boom) for r in results)

        # The lock is free again: another coordinator on the same directory gets it at once.
        async def ok() -> str:
            return "fine"

        assert await LocalCoordinator(tmp_path / "locks").once(KEY, ok) == "fine"

    asyncio.run(main())


def test_two_coordinators_on_one_lock_dir_take_turns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances in one process (separate open files) exclude each other like two processes."""
    refused: list[int] = []
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> Any:
        try:
            return real_flock(fd, op)
        except BlockingIOError:
            refused.append(fd)
            raise

    monkeypatch.setattr(fcntl, "flock", flock)

    async def main() -> list[str]:
        a, b = LocalCoordinator(tmp_path / "locks"), LocalCoordinator(tmp_path / "locks")
        order: list[str] = []
        gate = asyncio.Event()

        async def first() -> None:
            order.append("a enter")
            await gate.wait()
            order.append("a exit")

        async def second() -> None:
            order.append("b enter")

        ta = asyncio.create_task(a.once(KEY, first))
        await settle(lambda: order == ["a enter"])
        tb = asyncio.create_task(b.once(KEY, second))
        await settle(lambda: bool(refused))  # b found the lock taken...
        assert order == ["a enter"]  # ...and did not run
        gate.set()
        await asyncio.gather(ta, tb)
        return order

    assert asyncio.run(main()) == ["a enter", "a exit", "b enter"]


def test_other_keys_are_not_blocked(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = LocalCoordinator(tmp_path / "locks"), LocalCoordinator(tmp_path / "locks")
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        async def quick() -> str:
            return "other"

        held = asyncio.create_task(a.once(KEY, hold))
        await settle(lambda: a.in_flight() == 1)
        assert await b.once("example.com/other/@v/v1.0.0.zip", quick) == "other"
        gate.set()
        await held

    asyncio.run(main())


def test_two_processes_never_run_one_key_at_once(tmp_path: Path) -> None:
    locks, log = tmp_path / "locks", tmp_path / "log"
    with holder(locks, "A", log) as a:
        assert a.expect() == "in"
        with holder(locks, "B", log) as b:
            assert b.expect() == "busy"  # B tried while A holds the lock...
            assert events(log) == ["A enter"]  # ...and stayed out
            a.send()
            assert a.expect() == "result A"
            assert a.wait() == 0, a.stderr()
            assert b.expect() == "in"
            assert events(log) == ["A enter", "A exit", "B enter"]
            b.send()
            assert b.expect() == "result B"
            assert b.wait() == 0, b.stderr()
    assert events(log) == ["A enter", "A exit", "B enter", "B exit"]


def test_processes_on_different_keys_run_together(tmp_path: Path) -> None:
    locks, log = tmp_path / "locks", tmp_path / "log"
    with (
        holder(locks, "A", log) as a,
        holder(locks, "B", log, key="example.com/other/@v/v1.0.0.zip") as b,
    ):
        assert a.expect() == "in"
        assert b.expect() == "in"  # no "busy": both hold their own key at the same time
        assert sorted(events(log)) == ["A enter", "B enter"]
        a.send()
        b.send()
        assert a.expect() == "result A"
        assert b.expect() == "result B"


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    locks, log = tmp_path / "locks", tmp_path / "log"
    with holder(locks, "A", log) as a:
        assert a.expect() == "in"
        with holder(locks, "B", log) as b:
            assert b.expect() == "busy"
            a.kill()  # SIGKILL inside the locked section: no clean-up code runs
            assert b.expect() == "in"
            assert events(log) == ["A enter", "B enter"]
            b.send()
            assert b.expect() == "result B"
            assert b.wait() == 0, b.stderr()
