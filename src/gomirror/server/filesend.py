"""server.filesend sends a cached zip from a file opened before the answer starts, so ``cache gc`` or a purge removing it cannot cut a download.

:func:`open_zip` takes the service's zip answer and, when it is a local file,
opens that file at once. If the file vanished between the service's look and
the open (``cache gc`` or ``cache purge`` removed it), the service is asked
again, which then sees a miss and fetches the file anew (waiting, through the
coordinator, for a deletion in progress). Once the file is open, POSIX keeps
its bytes readable even after its name is unlinked, and the open descriptor
is what gc's in-use check (``/proc/<pid>/fd``) sees, so gc keeps it.

:class:`OpenFileResponse` is an aiohttp ``FileResponse`` that sends the file
already open instead of opening its path again (which could find nothing, or
another file), with the same headers, ``ETag``, ``Range`` handling and
zero-copy ``sendfile``; it closes the file when the answer is done or fails.
It reuses ``FileResponse``'s own sending step (``_prepare_open_file``);
tests/server/test_filesend.py pins that aiohttp internal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

from gomirror.answers import FileAnswer
from gomirror.errors import StorageError

ATTEMPTS = 3  # each a look by the service then an open; only a removal in between repeats it


def _open(path: Path) -> BinaryIO | None:
    try:
        return open(path, "rb")  # closed by OpenFileResponse, or by the caller
    except (FileNotFoundError, NotADirectoryError):
        return None


async def open_zip(get: Callable[[], Awaitable[FileAnswer]]) -> tuple[FileAnswer, BinaryIO | None]:
    """The zip answer, and its local file already open when it has one (see the module docstring)."""
    for _ in range(ATTEMPTS):
        answer = await get()
        if answer.path is None:
            return answer, None
        f = await asyncio.to_thread(_open, answer.path)
        if f is not None:
            return answer, f
    raise StorageError("the cached zip was removed while it was being answered; try again")


class OpenFileResponse(web.FileResponse):
    """A FileResponse for a file that is already open (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        fobj: BinaryIO,
        *,
        chunk_size: int,
        headers: dict[str, str] | CIMultiDict[str],
    ) -> None:
        super().__init__(path, chunk_size=chunk_size, headers=headers)
        self._fobj = fobj

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        try:
            st = await asyncio.to_thread(os.fstat, self._fobj.fileno())
            return await self._prepare_open_file(request, cast(Any, self._fobj), st, None)
        finally:
            self.close_file()

    def close_file(self) -> None:
        with contextlib.suppress(OSError):
            self._fobj.close()
