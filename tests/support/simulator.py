"""simulator runs a fault-injecting upstream GOPROXY (a real aiohttp server) for tests.

Contract: ``UpstreamSimulator(corpus)`` serves ``corpus`` on ``http://127.0.0.1:<free port>``
from a background thread with its own event loop (``start()``/``stop()``, or ``with``; ``.url``).
Routes (path percent-decoded, then case-unescaped; anything invalid or unknown is a 404 with a
``text/plain; charset=utf-8`` body starting ``not found:``): ``/<module>/@v/list``,
``/<module>/@v/<query>.info`` (a version, or a non-canonical query the corpus resolves),
``/<module>/@v/<version>.mod``, ``/<module>/@v/<version>.zip`` and ``/<module>/@latest``.
Every body is streamed in chunks with a Content-Length, so faults can shape it.

Faults (``add_fault``; safe to call from the test thread at any time) match the decoded path by
fnmatch glob (a ``str``) or regex search (a compiled pattern); the most recently added matching
rule wins, optionally only ``times`` times, or only for a random share ``probability`` of the
requests (drawn from a ``random.Random(seed)``, ``seed`` given to the constructor; a request the
draw skips is matched against the older rules, so a 30 % error rule can sit on a latency rule). A rule can add latency before the headers, answer a
fixed status/body/headers, hang until ``stop()``, throttle to N bytes/s, cut the connection after N
body bytes (or hang after them), flip one body byte, or replace the body. ``set_down(True)`` closes
the listening socket (connection refused) and resets live keep-alive connections; ``set_down(True,
mode="reset")`` keeps listening but drops every request. Every request is recorded (before faults)
in a thread-safe list: ``requests``, ``requests_for(pattern)``, ``count(pattern)``, ``clear()``.
``mount(prefix, handler_or_app)`` exposes extra handlers (e.g. a test sumdb under ``/sumdb/x``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, TypeVar

from aiohttp import web

from support.corpus import Corpus, unescape_path, unescape_version

__all__ = ["SUBPATH", "FaultRule", "Handler", "Pattern", "RecordedRequest", "UpstreamSimulator"]

Pattern = str | re.Pattern[str]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CHUNK = 32 * 1024
TEXT = "text/plain; charset=utf-8"
_T = TypeVar("_T")
SUBPATH = web.RequestKey("subpath", str)  # request[SUBPATH]: path after a mount prefix


def _matches(pattern: Pattern, path: str) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(path) is not None
    return fnmatch.fnmatchcase(path, pattern)


@dataclass
class RecordedRequest:
    """One request as the simulator received it."""

    method: str
    path: str  # percent-decoded path
    raw_path: str  # path (and query) exactly as on the request line
    query: str
    headers: dict[str, str]
    time: float  # time.time() at arrival
    monotonic: float  # time.monotonic() at arrival
    status: int | None = None  # status line sent (set before the headers go out; None: none)


@dataclass
class FaultRule:
    """A fault applied to requests whose decoded path matches ``pattern``."""

    pattern: Pattern
    status: int | None = None
    body: bytes | None = None  # body for ``status`` (default: a short text line)
    headers: dict[str, str] = field(default_factory=dict)  # added to the response
    latency: float = 0.0  # seconds before the headers are sent
    bandwidth: int | None = None  # bytes per second for the body
    hang: bool = False  # never answer (until stop())
    hang_after: int | None = None  # send N body bytes, then stall (until stop())
    cut_after: int | None = None  # send N body bytes, then close the connection
    flip_byte: int | None = None  # XOR 0xFF the body byte at this offset (negative: from end)
    replace_body: bytes | None = None  # serve these bytes instead of the real body
    times: int | None = None  # apply to this many requests only (None: forever)
    probability: float | None = None  # apply to this share of matching requests (None: all)
    methods: frozenset[str] | None = None  # restrict to these HTTP methods
    hits: int = 0  # how many requests the rule was applied to


class UpstreamSimulator:
    """A GOPROXY upstream with fault injection and request recording (see module docstring)."""

    def __init__(
        self, corpus: Corpus | None = None, *, name: str = "upstream", seed: int = 0
    ) -> None:
        self.corpus = corpus if corpus is not None else Corpus()
        self.name = name
        self._rng = random.Random(seed)  # draws for ``probability`` rules; seeded: repeatable
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[FaultRule] = []
        self._requests: list[RecordedRequest] = []
        self._handlers: dict[str, Handler] = {}
        self._subapps: dict[str, web.Application] = {}
        self._down: Literal["refuse", "reset"] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stopping: asyncio.Event | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234`` (no trailing slash)."""
        if not self.port:
            raise RuntimeError("simulator not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> UpstreamSimulator:
        """Start serving in a background thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"sim-{self.name}", daemon=True
        )
        self._thread.start()
        self._call(self._astart())
        return self

    def stop(self) -> None:
        """Stop serving: release hung requests, close all connections and the loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._astop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> UpstreamSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Awaitable[_T], timeout: float = 30.0) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    async def _astart(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._middleware])
        for prefix, sub in self._subapps.items():
            app.add_subapp(prefix, sub)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._site.port

    async def _astop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = self._site = None

    # ------------------------------------------------------------------ control
    def set_down(self, down: bool = True, mode: Literal["refuse", "reset"] = "refuse") -> None:
        """Simulate a dead mirror (``refuse``: nothing listens; ``reset``: drop requests)."""
        self._call(self._aset_down(mode if down else None))

    async def _aset_down(self, mode: Literal["refuse", "reset"] | None) -> None:
        if mode == "refuse" and self._site is not None:
            await self._site.stop()
            self._site = None
        if mode != "refuse" and self._site is None and self._runner is not None:
            await self._listen()
        self._down = mode

    @property
    def is_down(self) -> bool:
        """True while ``set_down(True)`` is in effect."""
        return self._down is not None

    def mount(self, prefix: str, target: Handler | web.Application) -> None:
        """Serve ``prefix`` (e.g. ``/sumdb/test``) with a handler (any time) or an app (pre-start).

        A handler receives the request; ``request[SUBPATH]`` is the path after the prefix.
        """
        prefix = "/" + prefix.strip("/")
        if isinstance(target, web.Application):
            if self._runner is not None:
                raise RuntimeError("mount an aiohttp Application before start()")
            self._subapps[prefix] = target
        else:
            with self._lock:
                self._handlers[prefix] = target

    def add_fault(
        self,
        pattern: Pattern,
        *,
        status: int | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        latency: float = 0.0,
        bandwidth: int | None = None,
        hang: bool = False,
        hang_after: int | None = None,
        cut_after: int | None = None,
        flip_byte: int | None = None,
        replace_body: bytes | None = None,
        times: int | None = None,
        methods: Iterable[str] | None = None,
        probability: float | None = None,
    ) -> FaultRule:
        """Add a fault rule (fields as in ``FaultRule``); it takes precedence over older rules."""
        if probability is not None and not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be between 0 and 1, not {probability!r}")
        rule = FaultRule(
            pattern,
            status=status,
            body=body,
            headers=dict(headers or {}),
            latency=latency,
            bandwidth=bandwidth,
            hang=hang,
            hang_after=hang_after,
            cut_after=cut_after,
            flip_byte=flip_byte,
            replace_body=replace_body,
            times=times,
            methods=frozenset(m.upper() for m in methods) if methods is not None else None,
            probability=probability,
        )
        with self._lock:
            self._faults.append(rule)
        return rule

    def fail(
        self,
        pattern: Pattern,
        status: int,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> FaultRule:
        """Answer matching requests with ``status`` (and ``body``, ``headers``)."""
        data = body.encode() if isinstance(body, str) else body
        return self.add_fault(
            pattern, status=status, body=data, headers=headers, times=times, probability=probability
        )

    def remove_fault(self, rule: FaultRule) -> None:
        """Remove one rule (no error if already gone)."""
        with self._lock:
            self._faults = [r for r in self._faults if r is not rule]

    def clear_faults(self) -> None:
        """Remove all fault rules."""
        with self._lock:
            self._faults.clear()

    def add_query(self, module: str, query: str, version: str) -> None:
        """Answer ``module/@v/<query>.info`` with ``version``'s info."""
        self.corpus.add_query(module, query, version)

    def _take_fault(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in reversed(self._faults):
                if rule.methods is not None and method not in rule.methods:
                    continue
                if (rule.times is None or rule.hits < rule.times) and _matches(rule.pattern, path):
                    if rule.probability is not None and self._rng.random() >= rule.probability:
                        continue  # not drawn this time: an older rule may still apply
                    rule.hits += 1
                    return rule
        return None

    # ------------------------------------------------------------------ recording
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of all recorded requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, pattern: Pattern) -> list[RecordedRequest]:
        """Recorded requests whose decoded path matches ``pattern`` (glob or regex)."""
        return [r for r in self.requests if _matches(pattern, r.path)]

    def count(self, pattern: Pattern = "*") -> int:
        """How many recorded requests match ``pattern``."""
        return len(self.requests_for(pattern))

    def paths(self) -> list[str]:
        """Decoded paths of all recorded requests."""
        return [r.path for r in self.requests]

    def clear(self) -> None:
        """Forget recorded requests (fault hit counters are kept)."""
        with self._lock:
            self._requests.clear()

    # ------------------------------------------------------------------ serving
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        rec = RecordedRequest(
            request.method,
            request.path,
            request.raw_path,
            request.query_string,
            dict(request.headers),
            time.time(),
            time.monotonic(),
        )
        with self._lock:
            self._requests.append(rec)
        if self._down is not None:
            return self._drop(request)
        rule = self._take_fault(request.method, request.path)
        if rule is not None and rule.latency > 0 and await self._pause(rule.latency):
            return self._drop(request)
        if rule is not None and rule.hang:
            await self._pause(None)
            return self._drop(request)
        if rule is not None and rule.status is not None:
            body = rule.body if rule.body is not None else f"simulated {rule.status}\n".encode()
            headers = {"Content-Type": TEXT, **rule.headers}
            resp = await self._send(request, rec, rule.status, headers, body, rule)
        else:
            inner = await handler(request)
            if not isinstance(inner, web.Response) or inner.prepared:
                rec.status = inner.status
                return inner
            body = inner.body if isinstance(inner.body, bytes) else b""
            headers = {k: v for k, v in inner.headers.items() if k.lower() != "content-length"}
            if rule is not None:
                headers.update(rule.headers)
            resp = await self._send(request, rec, inner.status, headers, body, rule)
        return resp

    def _drop(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)

    async def _pause(self, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: forever); True if the simulator is stopping."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _send(
        self,
        request: web.Request,
        rec: RecordedRequest,
        status: int,
        headers: dict[str, str],
        body: bytes,
        rule: FaultRule | None,
    ) -> web.StreamResponse:
        if rule is not None and rule.replace_body is not None:
            body = rule.replace_body
        if rule is not None and rule.flip_byte is not None and body:
            i = rule.flip_byte % len(body)
            body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1 :]
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        rec.status = status
        await resp.prepare(request)
        stop_at = None
        if rule is not None:
            stop_at = rule.cut_after if rule.cut_after is not None else rule.hang_after
        payload = body if stop_at is None else body[:stop_at]
        bps = rule.bandwidth if rule is not None else None
        chunk = CHUNK if not bps else max(1, min(CHUNK, bps // 20))
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        for off in range(0, len(payload), chunk):
            piece = payload[off : off + chunk]
            await resp.write(piece)
            sent += len(piece)
            if bps:
                delay = start + sent / bps - loop.time()
                if delay > 0 and await self._pause(delay):
                    return self._drop(request)
        if stop_at is not None and rule is not None:
            if rule.cut_after is None:
                await self._pause(None)
                return self._drop(request)
            if request.transport is not None:
                request.transport.close()
            return resp
        await resp.write_eof()
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        with self._lock:
            mounts = sorted(self._handlers.items(), key=lambda kv: -len(kv[0]))
        for prefix, handler in mounts:
            if path == prefix or path.startswith(prefix + "/"):
                request[SUBPATH] = path[len(prefix) :]
                return await handler(request)
        return self._goproxy(path)

    def _not_found(self, what: str) -> web.Response:
        return web.Response(
            status=404,
            body=f"not found: {what} ({self.name})\n".encode(),
            content_type="text/plain",
            charset="utf-8",
        )

    def _goproxy(self, path: str) -> web.Response:
        corpus = self.corpus
        if path.endswith("/@latest"):
            module = unescape_path(path[1 : -len("/@latest")])
            if module is None:
                return self._not_found(f"invalid module path in {path}")
            latest = corpus.latest_version(module)
            mv = corpus.get(module, latest) if latest else None
            if mv is None:
                return self._not_found(f"module {module}: no latest version")
            return web.Response(body=mv.info, content_type="application/json")
        i = path.rfind("/@v/")
        module = unescape_path(path[1:i]) if i > 0 else None
        if module is None:
            return self._not_found(f"invalid module path in {path}")
        file = path[i + len("/@v/") :]
        if file == "list":
            text = corpus.list_text(module)
            if text is None:
                return self._not_found(f"module {module}: unknown module")
            return web.Response(body=text.encode(), content_type="text/plain", charset="utf-8")
        base, dot, ext = file.rpartition(".")
        version = unescape_version(base) if dot else None
        if version is None or ext not in ("info", "mod", "zip"):
            return self._not_found(f"module {module}: invalid request {file}")
        mv = corpus.resolve(module, version) if ext == "info" else corpus.get(module, version)
        if mv is None:
            return self._not_found(f"module {module}@{version}: unknown revision {version}")
        if ext == "info":
            return web.Response(body=mv.info, content_type="application/json")
        if ext == "mod":
            if mv.mod is None:
                return self._not_found(f"module {module}@{version}: no go.mod")
            return web.Response(body=mv.mod, content_type="text/plain", charset="utf-8")
        return web.Response(body=mv.zip, content_type="application/zip")
