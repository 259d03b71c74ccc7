"""webhook runs a loopback HTTP receiver that records every request, for alert tests.

Contract: ``async with WebhookReceiver() as rx:`` serves ``http://127.0.0.1:<free port>``
(``rx.url``, any path) on the running event loop. Every request is recorded in
``rx.requests`` (method, path, query, headers, raw body, parsed JSON) before it is answered.
Answers come from ``rx.script`` (a list of ``Reply``, consumed in order) and then from
``rx.default`` (200 ``{"errcode":0,"errmsg":"ok"}``). A ``Reply(hang=True)`` holds the request
until ``rx.release()`` or the receiver stops. ``await rx.wait_for(n)`` returns once ``n``
requests have arrived (an ``asyncio.Condition``, no polling) or raises ``TimeoutError``
(after ``within`` seconds, 10 by default).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["Received", "Reply", "WebhookReceiver"]


@dataclass(frozen=True)
class Reply:
    """How to answer one request."""

    status: int = 200
    body: str = '{"errcode":0,"errmsg":"ok"}'
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A recording HTTP server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, script: list[Reply] | None = None, default: Reply | None = None) -> None:
        self.script: list[Reply] = list(script or [])
        self.default = default or Reply()
        self.requests: list[Received] = []
        self._arrived = asyncio.Condition()
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        async with self._arrived:
            self.requests.append(
                Received(
                    request.method,
                    request.path,
                    dict(request.query),
                    dict(request.headers),
                    body,
                )
            )
            self._arrived.notify_all()
        reply = self.script.pop(0) if self.script else self.default
        if reply.hang:
            await self._release.wait()
        return web.Response(
            status=reply.status,
            text=reply.body,
            headers=reply.headers,
            content_type="application/json",
        )

    async def wait_for(self, n: int, within: float = 10.0) -> list[Received]:
        """Wait until at least ``n`` requests arrived (at most ``within`` s); return them all."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= n)
        return list(self.requests)

    def release(self) -> None:
        """Let every hanging request (and later ones) answer."""
        self._release.set()

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
