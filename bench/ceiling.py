"""Ceiling for small answers: how many requests/s bare servers reach on this machine.

Usage: ``python bench/ceiling.py [--duration S] [--uvloop]``

Serves one fixed 200-byte body from 2 processes (SO_REUSEPORT) with (a) a minimal
aiohttp application, (b) a minimal ``asyncio.Protocol`` that answers every request
line with prebuilt bytes, and (c) gomirror's own fast path
(``server.fastpath.FastConnection`` with one hot entry backed by a real file, so it
parses the head, stats the file and counts the answer as in production), on the stock
asyncio loop (``--uvloop``: on uvloop, if installed), and measures them with wrk at 16
connections. gomirror cannot serve ``.info``/``.mod`` faster than its HTTP stack can
answer a constant, so this bounds what src changes can achieve.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import require_tools
from support.ports import free_port, wait_for_port

PATH = "/m/@v/v1.0.0.info"
BODY = b'{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}'.ljust(200, b" ")
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
    + BODY
)


class Fixed(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.WriteTransport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4 :]
            self.t.write(RESPONSE * n)


def listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    return s


def fast_path_factory() -> Callable[[], asyncio.Protocol]:
    """gomirror's fast path with one hot entry, as ``FastPath.learn`` would make it."""
    from prometheus_client import CollectorRegistry

    from gomirror.monitor.metrics import Metrics
    from gomirror.server.fastpath import DATE_SLOT, FastPath, HotEntry

    fast = FastPath(
        Metrics(CollectorRegistry()),
        locate=lambda key: None,
        idle_timeout=15,
        max_connections=4096,
        mutable_ttl=60,
        access_log_enabled=False,
    )
    body_file = Path(tempfile.mkdtemp(prefix="gomirror-ceiling-")) / "v1.0.0.info"
    body_file.write_bytes(BODY)
    st = body_file.stat()
    head = RESPONSE[: -len(BODY)]
    pre, post = head[:17], head[17:]  # after the status line: a Date slot, as in production
    entry = HotEntry(
        (pre + b"Date: ", DATE_SLOT, b"\r\n" + post[:-2] + b"\r\n"),
        str(body_file),
        (st.st_ino, st.st_mtime_ns, st.st_size),
        len(BODY),
        "info",
        "m",
        BODY,
    )
    fast.table.put(PATH.encode(), entry)
    return fast.protocol


def serve(kind: str, port: int, use_uvloop: bool) -> None:
    from aiohttp import web

    async def main() -> None:
        sock = listener(port)
        if kind in ("protocol", "fastpath"):
            factory = Fixed if kind == "protocol" else fast_path_factory()
            server = await asyncio.get_running_loop().create_server(factory, sock=sock)
            await server.serve_forever()
        app = web.Application()

        async def h(_: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        app.router.add_get("/{tail:.*}", h)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    if use_uvloop:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def measure(wrk: str, kind: str, duration: float, use_uvloop: bool) -> float:
    port = free_port()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                serve(kind, port, use_uvloop)
            finally:
                os._exit(0)
        pids.append(pid)
    try:
        wait_for_port("127.0.0.1", port)
        time.sleep(0.3)
        cmd = [wrk, "-t2", "-c16", f"-d{duration:g}s", f"http://127.0.0.1:{port}{PATH}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("Requests/sec:"))
        return float(line.split()[1])
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--uvloop", action="store_true", help="run the servers on uvloop")
    args = ap.parse_args()
    wrk = require_tools("wrk")["wrk"]
    loop = "uvloop" if args.uvloop else "asyncio"
    for kind in ("aiohttp", "protocol", "fastpath") * 2:
        rps = measure(wrk, kind, args.duration, args.uvloop)
        print(f"{kind:>9}: {rps:,.0f} req/s (2 processes, c=16, {loop})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
