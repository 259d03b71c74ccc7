"""browser drives a real headless Chromium over the DevTools protocol, for page tests.

Contract: ``async with Chromium(tmp) as browser:`` starts Debian's ``/usr/bin/chromium``
headless (no sandbox, no GPU, no background networking, a fresh profile under ``tmp``) with
``--remote-debugging-port=0``, reads the DevTools address from its stderr, and talks to it
over one aiohttp websocket. ``await browser.new_page()`` opens a tab (``Page``) that records
every console error, uncaught exception, error log entry (failed loads, CSP violations) in
``page.errors`` and every JavaScript dialog in ``page.dialogs`` (dialogs are dismissed).
``Page`` can ``goto(url)`` (waits for the load event), ``evaluate(expr)`` (by value,
optionally awaiting a promise; a thrown exception raises ``JSError``), set the viewport,
the colour scheme and whether scripts run, and save a full-page PNG ``screenshot(path)``.
Leaving the ``async with`` closes the browser and waits for the process to exit.

Chromium missing is an error, not a skip: ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["CHROMIUM", "Chromium", "JSError", "Page"]

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


class JSError(Exception):
    """An expression evaluated in the page threw."""


class Chromium:
    """One headless Chromium process and its DevTools connection (see the module docstring)."""

    def __init__(self, tmp: Path, *, binary: str = CHROMIUM, timeout: float = 30.0) -> None:
        self.tmp = tmp
        self.binary = binary
        self.timeout = timeout
        self.stderr: list[str] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._tasks: list[asyncio.Task[None]] = []
        if not Path(binary).exists() and shutil.which(binary) is None:
            raise RuntimeError(f"{binary} not found: install Debian's chromium (.ci/run does)")

    async def __aenter__(self) -> Chromium:
        profile = self.tmp / "chromium-profile"
        await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            ws_url = await asyncio.wait_for(self._devtools_url(), self.timeout)
        except BaseException:
            await self._stop_process()
            raise
        # Keep draining stderr, or Chromium blocks once the pipe is full.
        self._tasks.append(asyncio.create_task(self._drain_stderr()))
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(ws_url, max_msg_size=0)
        self._tasks.append(asyncio.create_task(self._read()))
        return self

    async def _devtools_url(self) -> str:
        assert self._proc is not None and self._proc.stderr is not None
        while True:
            line = await self._proc.stderr.readline()
            if not line:
                raise RuntimeError(
                    "chromium exited before DevTools listened:\n" + "\n".join(self.stderr)
                )
            self.stderr.append(line.decode(errors="replace").rstrip())
            m = _LISTENING.search(line)
            if m:
                return m.group(1).decode()

    async def _drain_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace").rstrip())

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut is not None and not fut.done():
                    fut.set_result(data)
            else:
                page = self._pages.get(data.get("sessionId", ""))
                if page is not None:
                    page._event(data["method"], data.get("params", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("DevTools connection closed"))

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """One DevTools command; returns its ``result`` or raises RuntimeError."""
        assert self._ws is not None
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps(msg))
        answer = await asyncio.wait_for(fut, self.timeout)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        return page

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), 5)
        await self._stop_process()
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async def _stop_process(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class Page:
    """One tab, attached with a flat DevTools session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.errors: list[str] = []
        self.console: list[tuple[str, str]] = []
        self.dialogs: list[str] = []
        self._loaded: asyncio.Event = asyncio.Event()

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session)

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            self.console.append((params.get("type", ""), text))
            if params.get("type") in ("error", "assert"):
                self.errors.append(f"console.{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append(
                "exception: " + str(d.get("exception", {}).get("description", d.get("text")))
            )
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(str(params.get("message", "")))
            asyncio.get_running_loop().create_task(
                self.send("Page.handleJavaScriptDialog", {"accept": False})
            )

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        nav = await self.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise RuntimeError(f"navigation to {url} failed: {nav['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), self.browser.timeout)

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The value of ``expression`` in the page (JSON-serialisable values only)."""
        r = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise JSError(str(d.get("exception", {}).get("description", d.get("text"))))
        return r.get("result", {}).get("value")

    async def set_viewport(
        self, width: int, height: int, *, mobile: bool = False, scale: float = 1.0
    ) -> None:
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
        )

    async def color_scheme(self, scheme: str) -> None:
        """Emulate ``prefers-color-scheme: light`` or ``dark``."""
        await self.send(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )

    async def scripts(self, enabled: bool) -> None:
        await self.send("Emulation.setScriptExecutionDisabled", {"value": not enabled})

    async def screenshot(
        self, path: Path, *, width: int = 1280, mobile: bool = False, scale: float = 1.0
    ) -> Path:
        """Save a PNG of the whole page at ``width`` CSS pixels; return ``path``."""
        await self.set_viewport(width, 800, mobile=mobile, scale=scale)
        metrics = await self.send("Page.getLayoutMetrics")
        height = int(metrics["cssContentSize"]["height"] + 0.5)
        await self.set_viewport(width, max(height, 200), mobile=mobile, scale=scale)
        shot = await self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path
