"""hardening.kit holds what the hardening suites share: an in-process gomirror, a raw HTTP client, probes.

Contract:
- ``InProcessGomirror(config)`` runs ``app.build`` + ``app.serve`` on 127.0.0.1 (port 0) in a
  background thread with its own event loop; ``start()``/``stop()`` or ``with``; ``.port``,
  ``.url``, ``.parts``. While it runs, every log record at ``error`` level or above from the
  whole process is kept in ``.errors`` (an unhandled exception shows up there).
- ``raw_request(port, data)`` sends bytes exactly as given on a fresh connection and returns a
  ``RawResponse`` (status, headers, body; status 0 when the server closed without answering).
- ``mount_sumdb(sim, db, prefix)`` serves a ``TestSumdb`` from an ``UpstreamSimulator``, so the
  simulator records the database's statuses too (``upstream_failed`` looks at them;
  ``failed_requests`` lists them once requests still in flight have settled).
- ``wait_until(cond, timeout, what)`` polls a condition with a deadline (never a bare sleep) and
  fails naming ``what``; ``poll(cond, timeout)`` says whether it came true in time.
- ``vm_kib(pid, field)`` reads ``VmRSS``/``VmHWM`` from ``/proc/<pid>/status``.
- ``Figures`` collects counts for docs/reliability.md: ``figures.add(name, n)``; at the end of
  the session they are printed and, when ``HARDENING_FIGURES`` names a file, appended to
  it as one JSON object per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from gomirror import app
from gomirror.config import Config
from gomirror.logs import ClientErrorFilter
from support.appconfig import quiet_config
from support.simulator import SUBPATH, UpstreamSimulator
from support.sumdb_server import TestSumdb

MAX_ERROR_BODY = 648  # what server.responses promises (the go command shows no more)
REPORT_ENV = "HARDENING_FIGURES"
# Hypothesis's pytest plugin touches a deprecated mypy_extensions name while it reports a
# failure; with the project's filterwarnings=error that would hide the failure itself.
HYPOTHESIS_WARNING = "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"


def config(cache_dir: Path, upstream: str, **more: Any) -> Config:
    """A config for an in-process server: no access log, port 0, sumdb off unless given."""
    return quiet_config(cache_dir, upstream, **more)


class _Keep(logging.Handler):
    """Keeps records that would reach gomirror's log at error level, after its own filters."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.addFilter(ClientErrorFilter())  # as setup_logging installs it in production
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            with self._lock2:
                self.records.append(record)


class InProcessGomirror:
    """gomirror's real tree served from a background thread (see the module docstring)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.port = 0
        self.parts: app.Parts | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._keep = _Keep()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def errors(self) -> list[str]:
        """Log lines at error level or above seen so far (message and exception type)."""
        out = []
        for r in list(self._keep.records):
            exc = r.exc_info[1] if r.exc_info else None
            out.append(
                f"{r.name}: {r.getMessage()}" + (f" ({type(exc).__name__}: {exc})" if exc else "")
            )
        return out

    def start(self) -> InProcessGomirror:
        logging.getLogger().addHandler(self._keep)
        self._thread = threading.Thread(target=self._run, name="gomirror-inproc", daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("in-process gomirror did not start")
        if self._failure is not None:
            raise RuntimeError("in-process gomirror failed to start") from self._failure
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # handed to start()
            self._failure = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with app.build(self.cfg) as parts, app.serve(parts) as port:
            self.parts, self.port = parts, port
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(30)
        logging.getLogger().removeHandler(self._keep)

    def __enter__(self) -> InProcessGomirror:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class RawResponse:
    """What came back on the wire for one raw request."""

    status: int  # 0: closed without a status line
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str:
        for k, v in self.headers.items():
            if k.lower() == name.lower():
                return v
        return ""


def parse_response(data: bytes) -> RawResponse:
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = 0
    first = lines[0].split(b" ")
    if sep and len(first) >= 2 and first[0].startswith(b"HTTP/") and first[1].isdigit():
        status = int(first[1])
    headers: dict[str, str] = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.decode("latin-1").strip()] = v.decode("latin-1").strip()
    length = headers.get("Content-Length") or headers.get("content-length")
    if length is not None and length.isdigit():
        body = body[: int(length)]
    return RawResponse(status, headers, body, data)


def raw_request(port: int, data: bytes, timeout: float = 30.0) -> RawResponse:
    """Send data on a new connection, read until the server closes, parse the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # No half-close after sending: aiohttp takes EOF from the client as "gone" and
        # drops the request unanswered. The request asks for Connection: close instead.
        with contextlib.suppress(OSError):  # the server may answer and close before all is sent
            s.sendall(data)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return parse_response(b"".join(chunks))


def get_request(path: bytes, host: bytes = b"fuzz.test") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"


def mount_sumdb(sim: UpstreamSimulator, db: TestSumdb, prefix: str = "/db") -> str:
    """Serve db under sim.url + prefix; returns the GOSUMDB-style spec ``key URL``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        a = db.answer(request[SUBPATH] or "/")
        return web.Response(status=a.status, body=a.body, headers={"Content-Type": a.content_type})

    sim.mount(prefix, handle)
    return f"{db.verifier_key} {sim.url}{prefix}"


def upstream_failed(sims: list[UpstreamSimulator], since: float) -> bool:
    """True if any simulator answered >= 500 (or not at all) to a request since ``since``."""
    for sim in sims:
        for r in sim.requests:
            if r.monotonic >= since and (r.status is None or r.status >= 500):
                return True
    return False


def failed_requests(sims: list[UpstreamSimulator], since: float, settle: float = 5.0) -> list[str]:
    """Requests since ``since`` answered >= 500 or never, once those in flight have settled.

    A request still in flight (a background checksum-database prefetch, say) has no status
    yet; it counts as failed only if it is still unanswered after ``settle`` seconds.
    """

    def pending() -> list[object]:
        return [
            r for sim in sims for r in sim.requests if r.monotonic >= since and r.status is None
        ]

    poll(lambda: not pending(), settle)
    return [
        f"{r.method} {r.path}: {r.status}"
        for sim in sims
        for r in sim.requests
        if r.monotonic >= since and (r.status is None or r.status >= 500)
    ]


def poll(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll cond until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)  # polling interval of a deadline loop, not a synchronisation
    return True


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> None:
    """Poll cond until it holds; fail naming ``what`` after ``timeout`` seconds."""
    if not poll(cond, timeout, step):
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def vm_kib(pid: int, name: str = "VmRSS") -> int:
    """A memory figure of a live process, in KiB (``VmRSS``, ``VmHWM``, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise KeyError(name)


@dataclass
class Figures:
    """Counts for docs/reliability.md (see the module docstring)."""

    values: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: float = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + n

    def put(self, name: str, value: float) -> None:
        with self._lock:
            self.values[name] = value

    def flush(self) -> None:
        if not self.values:
            return
        line = json.dumps(
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **self.values}, sort_keys=True
        )
        print(f"\nhardening figures: {line}")
        target = os.environ.get(REPORT_ENV)
        if target:
            with open(target, "a") as f:
                f.write(line + "\n")
