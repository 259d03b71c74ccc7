"""server.protocol answers requests aiohttp cannot parse with a short fixed 400, never an echo.

aiohttp answers a request line or header its parser rejects by itself,
before any of our handlers runs, and its answer's body is the parser's
message, which quotes the offending bytes: a hostile ``Host`` header or a
5 KB path comes straight back to the client (a reflection channel, and
10 KB of output for 5 KB of junk). ``QuietAppRunner`` is an
``aiohttp.web.AppRunner`` whose server makes ``QuietRequestHandler``
protocols; their ``handle_error`` answers every client error with the fixed
``BAD_REQUEST_TEXT`` (``text/plain``, connection closed) and logs one
``info`` line ``bad client request`` naming only the status and the
exception's class (the log handler's ``RateLimitFilter`` bounds a flood).
An unexpected exception from a handler (status 500) keeps aiohttp's own
handling: a bare ``500`` and the traceback in the log.

Why a subclass: ``RequestHandler`` has ``__slots__``, so its ``handle_error``
cannot be replaced on an instance, and ``web.Server`` makes the handler
objects itself. ``QuietServer`` only changes which class it makes; the
runner re-types the server aiohttp built (same attributes, same layout), so
everything else (``connection_made`` wrappers, shutdown) is untouched.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

BAD_REQUEST_TEXT = "bad request\n"


def client_error_text(status: int) -> str:
    """The fixed body for a client error of this status: its phrase, nothing from the request."""
    if status == HTTPStatus.BAD_REQUEST:
        return BAD_REQUEST_TEXT
    try:
        return HTTPStatus(status).phrase.lower() + "\n"
    except ValueError:
        return BAD_REQUEST_TEXT


class QuietRequestHandler(RequestHandler):
    """A ``RequestHandler`` whose client-error answers never quote the request."""

    __slots__ = ()  # same layout as RequestHandler, which has __slots__ too

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        log.info(
            "bad client request",
            extra={"status": status, "reason": type(exc).__name__ if exc is not None else ""},
        )
        if request.writer.output_size > 0:
            # Part of an answer is out already: the connection cannot carry another one.
            raise ConnectionError("response already started; cannot answer the client error")
        resp = web.Response(
            status=status, text=client_error_text(status), content_type="text/plain"
        )
        resp.force_close()
        return resp


class QuietServer(web.Server):
    """A ``web.Server`` whose connections are handled by ``QuietRequestHandler``."""

    def __call__(self) -> RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class QuietAppRunner(web.AppRunner):
    """An ``AppRunner`` serving through ``QuietServer`` (see the module docstring)."""

    __slots__ = ()

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds the Server from the application's private handler and factory;
        # changing its class keeps all of that and only swaps the protocol it makes.
        server.__class__ = QuietServer
        return server
