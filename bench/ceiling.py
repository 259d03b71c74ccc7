"""Ceiling for small answers: how many requests/s bare servers reach on this machine.

Usage: ``python bench/ceiling.py [--duration S]``

Serves one fixed 200-byte body from 2 processes (SO_REUSEPORT) with (a) a minimal
aiohttp application on uvloop and (b) a minimal ``asyncio.Protocol`` on uvloop that
answers every request line with prebuilt bytes, and measures both with wrk at 16
connections. gomirror cannot serve ``.info``/``.mod`` faster than its HTTP stack
can answer a constant, so this bounds what src changes can achieve.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

from common import require_tools
from support.ports import free_port, wait_for_port

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


def serve(kind: str, port: int) -> None:
    import uvloop
    from aiohttp import web

    async def main() -> None:
        sock = listener(port)
        if kind == "protocol":
            server = await asyncio.get_running_loop().create_server(Fixed, sock=sock)
            await server.serve_forever()
        app = web.Application()

        async def h(_: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        app.router.add_get("/{tail:.*}", h)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        await asyncio.Event().wait()

    uvloop.run(main())


def measure(wrk: str, kind: str, duration: float) -> float:
    port = free_port()
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                serve(kind, port)
            finally:
                os._exit(0)
        pids.append(pid)
    try:
        wait_for_port("127.0.0.1", port)
        time.sleep(0.3)
        cmd = [wrk, "-t2", "-c16", f"-d{duration:g}s", f"http://127.0.0.1:{port}/m/@v/v1.0.0.info"]
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
    args = ap.parse_args()
    wrk = require_tools("wrk")["wrk"]
    for kind in ("aiohttp", "protocol", "aiohttp", "protocol"):
        print(f"{kind:>9}: {measure(wrk, kind, args.duration):,.0f} req/s (2 processes, c=16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
