"""Tests for server.filesend: a zip is opened before its answer starts, and sent from that open file.

A real aiohttp server on 127.0.0.1 answers with ``open_zip`` and
``OpenFileResponse``. The file removed between the service's look and the
open makes ``open_zip`` ask the service again; a file unlinked once open is
still sent whole (what ``cache gc`` removing it mid-send looks like); headers,
``HEAD`` and ``Range`` behave as aiohttp's ``FileResponse``; the file is
closed afterwards.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import BinaryIO

import aiohttp
import pytest
from aiohttp import web

from gomirror.answers import IMMUTABLE, FileAnswer
from gomirror.errors import StorageError
from gomirror.server.filesend import OpenFileResponse, open_zip

DATA = os.urandom(3 << 20)


def answer(path: Path) -> FileAnswer:
    return FileAnswer(len(DATA), "application/zip", IMMUTABLE, "hit", path=path)


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncGenerator[str, None]:
    app = web.Application()
    app.router.add_route("*", "/z", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/z"
    finally:
        await runner.cleanup()


def test_a_file_removed_before_the_open_is_asked_for_again(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    first.write_bytes(b"old")
    second.write_bytes(DATA)
    calls: list[Path] = []

    async def get() -> FileAnswer:
        path = first if not calls else second
        calls.append(path)
        if path == first:
            first.unlink()  # gc removes it right after the service looked
        return answer(path)

    async def main() -> None:
        z, f = await open_zip(get)
        assert f is not None
        with f:
            assert z.path == second and f.read() == DATA
        assert calls == [first, second]

        async def always_gone() -> FileAnswer:
            return answer(tmp_path / "never.zip")

        with pytest.raises(StorageError, match="removed while it was being answered"):
            await open_zip(always_gone)

        async def stream_answer() -> FileAnswer:
            return FileAnswer(1, "application/zip", IMMUTABLE, "hit", body=b"x")

        z, f = await open_zip(stream_answer)
        assert f is None and z.body == b"x"

    asyncio.run(main())


def test_an_open_file_is_sent_whole_after_its_name_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "v1.0.0.zip"
    opened: list[BinaryIO] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        path.write_bytes(DATA)

        async def get() -> FileAnswer:
            return answer(path)

        z, f = await open_zip(get)
        assert f is not None and z.path is not None
        opened.append(f)
        path.unlink()  # cache gc removes it once the answer has its file
        return OpenFileResponse(
            z.path, f, chunk_size=256 << 10, headers={"Content-Type": "application/zip"}
        )

    async def main() -> None:
        gen = serve(handler)
        url = await gen.__anext__()
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(url) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Length"] == str(len(DATA))
                    assert resp.headers["Content-Type"] == "application/zip"
                    assert resp.headers["ETag"].startswith('"')
                    assert await resp.read() == DATA
                async with s.get(url, headers={"Range": "bytes=10-19"}) as resp:
                    assert resp.status == 206 and await resp.read() == DATA[10:20]
                async with s.head(url) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Length"] == str(len(DATA))
                    assert await resp.read() == b""
        finally:
            await gen.aclose()
        assert len(opened) == 3 and all(f.closed for f in opened)

    asyncio.run(main())
