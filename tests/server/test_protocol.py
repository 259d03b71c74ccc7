"""test_protocol: requests aiohttp cannot parse get a fixed 400 that quotes nothing, and close.

A real ``QuietAppRunner`` on 127.0.0.1 serves a one-route application; raw
sockets send what no client library would (control bytes in a header, a
request line past the limit, garbage). The answer is the fixed text, the
connection is closed after it, one ``bad client request`` info line is
logged (status and exception class only), and a 500 from a handler keeps
aiohttp's own handling.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from gomirror.server.protocol import BAD_REQUEST_TEXT, QuietAppRunner, client_error_text

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HOSTILE = [
    b"GET / HTTP/1.1\r\nHost: evil\x01echo\r\n\r\n",
    b"GET /" + b"evil" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01evil-tls-hello\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nevil header without colon\r\n\r\n",
]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = QuietAppRunner(app, access_log=None, max_line_size=8190, max_field_size=8190)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def exchange(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    out = await asyncio.wait_for(r.read(), 10)  # read() returns at EOF: the server closed
    w.close()
    return out


async def ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="fine")


@pytest.mark.parametrize("data", HOSTILE)
def test_unparsable_requests_get_the_fixed_400_and_a_close(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> bytes:
        async with serving(ok) as port:
            return await exchange(port, data)

    with caplog.at_level(logging.INFO, logger="gomirror.server.protocol"):
        raw = asyncio.run(main())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", head
    assert body == BAD_REQUEST_TEXT.encode()
    assert b"evil" not in raw  # exchange() returned: the server closed the connection
    lines = [r for r in caplog.records if r.getMessage() == "bad client request"]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert "evil" not in str(lines[0].__dict__.get("reason"))


def test_a_good_request_still_works_and_a_handler_failure_is_a_bare_500() -> None:
    async def boom(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("evil secret detail")

    async def main() -> tuple[bytes, bytes]:
        async with serving(ok) as port:
            good = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with serving(boom) as port:
            bad = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return good, bad

    good, bad = asyncio.run(main())
    assert good.startswith(b"HTTP/1.1 200 ") and good.endswith(b"fine")
    assert bad.startswith(b"HTTP/1.1 500 ") and b"evil" not in bad


def test_client_error_texts_are_fixed_phrases() -> None:
    assert client_error_text(400) == BAD_REQUEST_TEXT
    assert client_error_text(413) == "request entity too large\n"
    assert client_error_text(499) == BAD_REQUEST_TEXT
