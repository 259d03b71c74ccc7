"""test_consistency_offloop: the consistency monitor parses big mirror answers off the event loop.

A mirror's ``@v/list`` (or ``.info``, ``.mod``) may be megabytes; parsed on the
loop it would stall every client for as long. ``parse_off_loop`` runs a parser
inline for small bodies and in a worker thread above ``INLINE_PARSE_BYTES``;
the monitor uses it for every probe. The mirror here is an in-process
``Upstream`` (no sockets needed: only the parsing is under test).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gomirror.errors import InvalidContent, NotFound
from gomirror.monitor import consistency
from gomirror.monitor.consistency import INLINE_PARSE_BYTES, ConsistencyMonitor, parse_off_loop
from gomirror.monitor.findings import FindingStore
from gomirror.monitor.probes import parse_list_answer
from gomirror.storage.disk import DiskStorage
from gomirror.upstream.base import Fetched, FirstByte
from gomirror.upstream.health import HealthBook
from gomirror.upstream.verified import Kind, Verdict

M = "example.com/big/list"
VERSIONS = [f"v1.0.{i}" for i in range(40_000)]  # about 320 KB of list


class BigListMirror:
    """Serves a huge ``@v/list`` and nothing else."""

    name = "http://big.test"

    async def list(self, module: str) -> Fetched:
        return Fetched("\n".join(VERSIONS).encode() + b"\n", self.name)

    async def info(self, module: str, query: str) -> Fetched:
        raise NotFound("no")

    async def latest(self, module: str) -> Fetched:
        raise NotFound("no")

    async def mod(self, module: str, version: str) -> Fetched:
        raise NotFound("no")

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        raise NotFound("no")

    async def close(self) -> None:
        return None


class NoDatabase:
    async def check(self, module: str, version: str, kind: Kind, h1: str) -> Verdict:
        raise AssertionError("no .mod is served, so nothing is checked")

    async def prefetch(self, module: str, version: str) -> None:
        return None


def thread_recorder(seen: list[int]) -> Callable[[Fetched], Awaitable[int]]:
    async def parse(f: Fetched) -> int:
        seen.append(threading.get_ident())
        return len(f.body)

    return parse


def test_small_bodies_are_parsed_inline_and_big_ones_in_a_thread() -> None:
    seen: list[int] = []
    parse = thread_recorder(seen)

    async def main() -> tuple[int, int]:
        small = await parse_off_loop(parse, Fetched(b"x" * INLINE_PARSE_BYTES, "m"))
        big = await parse_off_loop(parse, Fetched(b"x" * (INLINE_PARSE_BYTES + 1), "m"))
        return small, big

    assert asyncio.run(main()) == (INLINE_PARSE_BYTES, INLINE_PARSE_BYTES + 1)
    here = threading.get_ident()
    assert seen[0] == here and seen[1] != here


def test_a_bad_big_body_still_raises_invalid_content() -> None:
    body = b"v1.0.0\n\x00" * (INLINE_PARSE_BYTES // 4)
    with pytest.raises(InvalidContent):
        asyncio.run(parse_off_loop(parse_list_answer, Fetched(body, "m")))


def test_the_monitor_parses_a_big_list_in_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    parsed: list[int] = []

    async def recording(f: Fetched) -> list[str]:
        threads.append(threading.get_ident())
        versions = await parse_list_answer(f)
        parsed.append(len(versions))
        return versions

    monkeypatch.setattr(consistency, "parse_list_answer", recording)

    async def main() -> int:
        health = HealthBook()
        monitor = ConsistencyMonitor(
            [BigListMirror()],
            health=health,
            verifier=NoDatabase(),
            findings=FindingStore(DiskStorage(tmp_path)),
            watch=lambda: [M],
            first_delay=0,
        )
        await monitor.probe_once()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and all(t != loop_thread for t in threads)
    assert parsed == [len(VERSIONS)]
