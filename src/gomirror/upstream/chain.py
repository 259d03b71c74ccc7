"""upstream.chain runs an ordered list of upstreams under a policy, and is itself an Upstream.

For each request the chain asks its ``Policy`` for the order of the links,
skips links whose health record says they are down (unless every mirror is
down: then it asks them anyway), and starts the first. When the policy hedges,
a link that has not sent its first byte within ``policy.hedge_delay`` gets
company: the next link starts too, up to ``policy.max_parallel`` at once. The
first answer that passes every check wins; the others are cancelled, and for
zips their temp files are removed. After an error the policy decides whether
the next link may be asked (``falls_through``); a checksum-database failure or
``off`` ends the walk, since no other mirror can help.

The chain counts the requests it has in flight per mirror. For a version's
``.mod`` and ``.zip`` (immutable, and checked against the checksum database
above the chain) it passes those counts to the policy, which may spread a
burst over equally trusted mirrors (see ``policy``); lists, ``@latest`` and
``.info`` always follow the plain order, since mirrors may disagree on them.

Each attempt is a task with its own arguments and, for zips, its own temp file
``<dst>.<n>``: attempts running side by side share nothing. When everything
fails, the error reported is chosen as the go command chooses it
(protocol.md §1.5): the error from ``direct``, else the last error that is not
a not-found, else the last not-found; its message lists every upstream asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from gomirror.errors import (
    ChecksumMismatch,
    GomirrorError,
    InvalidContent,
    NotFound,
    StorageError,
    UpstreamError,
    UpstreamOff,
    UpstreamUnavailable,
    VerificationError,
)
from gomirror.upstream.base import Fetched, FirstByte, Upstream
from gomirror.upstream.health import HealthBook, OpKind
from gomirror.upstream.policy import GoPolicy, Link, Policy

log = logging.getLogger(__name__)

MAX_DETAIL_LINES = 6  # the go command shows 8 lines; keep room for the headline

Call = Callable[[Upstream, int, FirstByte], Awaitable[Fetched]]


class HedgeListener(Protocol):
    """Told when a chain starts a hedge and which upstream won (metrics)."""

    def hedge_started(self, upstream: str) -> None: ...

    def hedge_won(self, upstream: str) -> None: ...


class _Attempt:
    """One running request to one link."""

    __slots__ = ("first_byte", "hedge", "link", "n", "started", "task")

    def __init__(self, link: Link, n: int, task: asyncio.Task[Fetched], hedge: bool) -> None:
        self.link = link
        self.n = n
        self.task = task
        self.hedge = hedge
        self.started = time.monotonic()
        self.first_byte = False


class Chain:
    """An ordered list of upstreams under one policy (see the module docstring)."""

    def __init__(
        self,
        links: Sequence[Link],
        *,
        policy: Policy | None = None,
        health: HealthBook | None = None,
        hedges: HedgeListener | None = None,
        name: str = "chain",
    ) -> None:
        self.links = list(links)
        self.policy: Policy = policy or GoPolicy()
        self.health = health or HealthBook()
        self._hedges = hedges
        self._name = name
        self._in_flight: dict[str, int] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def names(self) -> list[str]:
        return [link.upstream.name for link in self.links]

    async def list(self, module: str) -> Fetched:
        return await self._run(f"{module}/@v/list", "small", lambda up, _n, _fb: up.list(module))

    async def info(self, module: str, query: str) -> Fetched:
        return await self._run(
            f"{module}@{query}.info", "small", lambda up, _n, _fb: up.info(module, query)
        )

    async def latest(self, module: str) -> Fetched:
        return await self._run(f"{module}@latest", "small", lambda up, _n, _fb: up.latest(module))

    async def mod(self, module: str, version: str) -> Fetched:
        return await self._run(
            f"{module}@{version}.mod",
            "small",
            lambda up, _n, _fb: up.mod(module, version),
            spread=True,
        )

    async def zip(
        self, module: str, version: str, dst: Path, first_byte: FirstByte | None = None
    ) -> Fetched:
        def attempt_path(n: int) -> Path:
            return dst.with_name(f"{dst.name}.{n}")

        winner: list[int] = []

        async def call(up: Upstream, n: int, fb: FirstByte) -> Fetched:
            def signal() -> None:
                fb()
                if first_byte is not None and not winner:
                    winner.append(-1)  # tell the caller once, for the first attempt that answers
                    first_byte()

            fetched = await up.zip(module, version, attempt_path(n), signal)
            return fetched

        started: list[int] = []
        try:
            fetched, n = await self._run_indexed(
                f"{module}@{version}.zip", "zip", call, started.append, spread=True
            )
            attempt_path(n).replace(dst)
            return fetched
        finally:
            for n in started:
                with contextlib.suppress(OSError):
                    attempt_path(n).unlink()

    async def close(self) -> None:
        for link in self.links:
            await link.upstream.close()

    # --- the walk ----------------------------------------------------------

    async def _run(self, what: str, kind: OpKind, call: Call, *, spread: bool = False) -> Fetched:
        fetched, _ = await self._run_indexed(what, kind, call, None, spread=spread)
        return fetched

    async def _run_indexed(
        self,
        what: str,
        kind: OpKind,
        call: Call,
        on_start: Callable[[int], None] | None,
        *,
        spread: bool = False,
    ) -> tuple[Fetched, int]:
        """Walk the links for one request; spread: a version's .mod or .zip (see policy.order)."""
        policy, health = self.policy, self.health
        ordered = policy.order(self.links, health, self._in_flight if spread else None)
        mirrors = [lk for lk in ordered if not lk.is_keyword]
        every_mirror_down = bool(mirrors) and all(
            health.get(lk.upstream.name).down for lk in mirrors
        )
        queue = deque(ordered)
        running: dict[asyncio.Task[Fetched], _Attempt] = {}
        attempts: list[tuple[Link, GomirrorError]] = []
        counter = [0]
        stop = False

        def start_next(*, hedge: bool) -> bool:
            nonlocal stop
            while queue and not stop:
                link = queue[0]
                if hedge and link.is_keyword:
                    return False  # never race git or ``off``; they run only when mirrors fail
                queue.popleft()
                if not link.is_keyword and not every_mirror_down:
                    reason = health.get(link.upstream.name).skip_reason()
                    if reason is not None:
                        err = UpstreamUnavailable(f"{link.upstream.name}: skipped: {reason}")
                        attempts.append((link, err))
                        if not policy.falls_through(link, err):
                            stop = True
                        continue
                n = counter[0]
                counter[0] += 1
                if on_start is not None:
                    on_start(n)
                holder: list[_Attempt] = []

                def first_byte(holder: list[_Attempt] = holder) -> None:
                    if holder:
                        holder[0].first_byte = True

                task = asyncio.ensure_future(call(link.upstream, n, first_byte))
                self._count_in_flight(link.upstream.name, task)
                holder.append(_Attempt(link, n, task, hedge))
                running[task] = holder[0]
                if hedge and self._hedges is not None:
                    self._hedges.hedge_started(link.upstream.name)
                return True
            return False

        start_next(hedge=False)
        try:
            abort = False
            while running and not abort:
                timeout = self._hedge_timeout(running, queue, stop, kind)
                done, _ = await asyncio.wait(
                    running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    start_next(hedge=True)
                    continue
                for task in done:
                    attempt = running.pop(task)
                    err = _error_of(task)
                    if err is None:
                        if attempt.hedge and self._hedges is not None:
                            self._hedges.hedge_won(attempt.link.upstream.name)
                        return task.result(), attempt.n
                    attempts.append((attempt.link, err))
                    log.debug(
                        "upstream attempt failed",
                        extra={"upstream": attempt.link.upstream.name, "what": what},
                    )
                    if (
                        isinstance(err, VerificationError) and not isinstance(err, ChecksumMismatch)
                    ) or isinstance(err, StorageError):
                        abort = True  # the database or our disk failed; no mirror can help
                        break
                    if isinstance(err, UpstreamOff) or not policy.falls_through(attempt.link, err):
                        stop = True
                if not abort and len(running) < policy.max_parallel:
                    start_next(hedge=False)
        finally:
            await _cancel_all(running)
        raise self._final_error(what, attempts)

    def _count_in_flight(self, name: str, task: asyncio.Task[Fetched]) -> None:
        self._in_flight[name] = self._in_flight.get(name, 0) + 1

        def done(_: asyncio.Task[Fetched]) -> None:
            left = self._in_flight.get(name, 1) - 1
            if left > 0:
                self._in_flight[name] = left
            else:
                self._in_flight.pop(name, None)

        task.add_done_callback(done)

    def in_flight(self) -> dict[str, int]:
        """Requests running now, per upstream (every kind of request counts)."""
        return dict(self._in_flight)

    def _hedge_timeout(
        self,
        running: dict[asyncio.Task[Fetched], _Attempt],
        queue: deque[Link],
        stop: bool,
        kind: OpKind,
    ) -> float | None:
        if stop or not queue or queue[0].is_keyword or len(running) >= self.policy.max_parallel:
            return None
        newest = max(running.values(), key=lambda a: a.started)
        if newest.first_byte:
            return None
        delay = self.policy.hedge_delay(newest.link, kind, self.health)
        if delay is None:
            return None
        return max(0.0, newest.started + delay - time.monotonic())

    def _final_error(
        self, what: str, attempts: Sequence[tuple[Link, GomirrorError]]
    ) -> GomirrorError:
        if not attempts:
            return NotFound(f"not found: {what}: no upstream configured")
        chosen: GomirrorError | None = None
        for link, err in attempts:
            if link.is_direct:
                chosen = err
        if chosen is None:
            hard = [e for _, e in attempts if not isinstance(e, NotFound)]
            chosen = hard[-1] if hard else attempts[-1][1]
        lines = [f"{link.upstream.name}: {_short(err)}" for link, err in attempts]
        if len(lines) > MAX_DETAIL_LINES:
            lines = [
                *lines[: MAX_DETAIL_LINES - 1],
                f"... and {len(lines) - MAX_DETAIL_LINES + 1} more",
            ]
        message = _headline(what, chosen) + "\n" + "\n".join(f"  {line}" for line in lines)
        if isinstance(chosen, ChecksumMismatch):
            new: GomirrorError = ChecksumMismatch(
                chosen.module, chosen.version, chosen.kind, chosen.expected, chosen.got
            )
            new.args = (message,)
            return new
        return type(chosen)(message) if _rebuildable(chosen) else _copy_message(chosen, message)


def _error_of(task: asyncio.Task[Fetched]) -> GomirrorError | None:
    exc = task.exception()
    if exc is None:
        return None
    if isinstance(exc, GomirrorError):
        return exc
    raise exc


async def _cancel_all(running: dict[asyncio.Task[Fetched], _Attempt]) -> None:
    """Cancel the losers and wait until they have stopped (so their files are closed)."""
    for task in running:
        task.cancel()
    for task in list(running):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    running.clear()


def _rebuildable(err: GomirrorError) -> bool:
    try:
        type(err)("x")
    except TypeError:
        return False
    return True


def _copy_message(err: GomirrorError, message: str) -> GomirrorError:
    err.args = (message,)
    return err


def _short(err: GomirrorError) -> str:
    text = str(err).split("\n", 1)[0]
    if isinstance(err, ChecksumMismatch):
        return f"checksum mismatch (served {err.got})"
    # Messages from HttpUpstream start with the URL; drop it, the line already names it.
    head, sep, rest = text.partition(": ")
    if sep and ("://" in head or head.startswith("direct")):
        text = rest
    return text[:160]


def _headline(what: str, err: GomirrorError) -> str:
    if isinstance(err, ChecksumMismatch):
        return str(err)
    if isinstance(err, NotFound):
        return f"not found: {what}"
    if isinstance(err, InvalidContent):
        return f"invalid content from every upstream for {what}"
    if isinstance(err, VerificationError):
        return f"verification failed: {what}: {str(err).splitlines()[0]}"
    if isinstance(err, UpstreamError):
        return f"upstream error: {what}"
    return f"error: {what}"
