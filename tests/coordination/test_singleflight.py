"""Tests for coordination.singleflight.SingleFlight: one run per key, shared results and errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gomirror.coordination.singleflight import SingleFlight


async def settle(cond: Callable[[], bool], steps: int = 10_000) -> None:
    """Let other tasks run until ``cond()`` holds (event-loop turns, no wall-clock waits)."""
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_concurrent_callers_share_one_run() -> None:
    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()
        runs = 0

        async def work() -> object:
            nonlocal runs
            runs += 1
            await gate.wait()
            return object()

        tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(50)]
        await settle(lambda: sf.shared >= 49)
        assert sf.in_flight() == 1
        gate.set()
        results = await asyncio.gather(*tasks)
        assert runs == 1
        assert all(r is results[0] for r in results)
        assert sf.in_flight() == 0
        assert sf.shared == 49

    asyncio.run(main())


def test_different_keys_run_independently() -> None:
    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()
        started: list[str] = []

        def work(key: str) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                started.append(key)
                await gate.wait()
                return key

            return run

        tasks = [asyncio.create_task(sf.do(k, work(k))) for k in ("a", "b", "a", "c")]
        await settle(lambda: len(started) >= 3)
        assert sf.in_flight() == 3
        gate.set()
        assert await asyncio.gather(*tasks) == ["a", "b", "a", "c"]
        assert sorted(started) == ["a", "b", "c"]

    asyncio.run(main())


def test_a_finished_flight_is_not_reused() -> None:
    async def main() -> None:
        sf = SingleFlight()
        calls = 0

        async def work() -> int:
            nonlocal calls
            calls += 1
            return calls

        assert await sf.do("k", work) == 1
        assert await sf.do("k", work) == 2

    asyncio.run(main())


class Boom(Exception):
    pass


def test_exceptions_propagate_to_every_waiter() -> None:
    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()
        runs = 0

        async def work() -> None:
            nonlocal runs
            runs += 1
            await gate.wait()
            raise Boom("upstream exploded")

        tasks = [asyncio.create_task(sf.do("k", work)) for _ in range(10)]
        await settle(lambda: sf.shared >= 9)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert runs == 1
        assert all(isinstance(r, Boom) and str(r) == "upstream exploded" for r in results)
        assert sf.in_flight() == 0

        # After a failure, the next caller starts a fresh flight.
        async def ok() -> str:
            return "fine"

        assert await sf.do("k", ok) == "fine"

    asyncio.run(main())


def test_a_cancelled_waiter_does_not_cancel_the_flight() -> None:
    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()
        finished = asyncio.Event()

        async def work() -> str:
            await gate.wait()
            finished.set()
            return "done"

        first = asyncio.create_task(sf.do("k", work))  # the caller that started the flight
        second = asyncio.create_task(sf.do("k", work))
        await settle(lambda: sf.shared >= 1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert sf.in_flight() == 1
        gate.set()
        assert await second == "done"
        assert finished.is_set()

    asyncio.run(main())


def test_a_flight_survives_all_its_waiters_being_cancelled() -> None:
    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()
        done: list[str] = []

        async def work() -> str:
            await gate.wait()
            done.append("stored")
            return "v"

        t = asyncio.create_task(sf.do("k", work))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        gate.set()
        await settle(lambda: sf.in_flight() == 0)
        assert done == ["stored"]  # the fetch ran to completion (a cache write would land)

    asyncio.run(main())


def test_a_failed_flight_nobody_awaits_does_not_warn() -> None:
    """filterwarnings=error: a never-retrieved future exception would fail the test run."""

    async def main() -> None:
        sf = SingleFlight()
        gate = asyncio.Event()

        async def work() -> None:
            await gate.wait()
            raise Boom("late")

        t = asyncio.create_task(sf.do("k", work))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        gate.set()
        await settle(lambda: sf.in_flight() == 0)

    asyncio.run(main())
