"""test_admin drives ``POST /-/admin/purge`` on a real ``gomirror serve`` and ``cache purge --server``.

Without ``admin_token`` the endpoint does not exist (404). With it, a request
without a bearer token is 401, a wrong token 403, and neither purges anything;
the right token drops the cached list so the next ``@v/list`` asks the
upstream (a new tag shows at once), refuses a verified version without
``force=1`` and, with it, deletes the files and leaves an audit event. The
token never appears in the server's log, its metrics, the status data, the
events or any answer body.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus, escape_path
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator
from support.sumdb_server import TestSumdb

MOD = "example.com/admin/lib"
TOKEN = "s3cr3t-admin-token-4a1f"


def post(
    url: str, path: str, token: str | None = None, scheme: str = "Bearer"
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url + path, method="POST", data=b"")
    if token is not None:
        req.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class World:
    def __init__(self, tmp: Path, corpus: Corpus, sim: UpstreamSimulator, db: TestSumdb) -> None:
        self.tmp, self.corpus, self.sim, self.db = tmp, corpus, sim, db

    def server(self, name: str, token: str | None) -> GomirrorProcess:
        (self.tmp / name).mkdir()
        env = {"GOMIRROR_PREDICT": "off"}  # exact upstream request counts
        if token:
            env["GOMIRROR_ADMIN_TOKEN"] = token
        return GomirrorProcess(
            self.tmp / name,
            upstream=self.sim.url,
            sumdb=f"{self.db.verifier_key} {self.db.url}",
            env=env,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    corpus = Corpus()
    corpus.synthetic_module(MOD, "v1.0.0", 2 << 10)
    corpus.synthetic_module(MOD, "v1.1.0", 2 << 10)

    def source(module: str, version: str) -> tuple[str, str] | None:
        mv = corpus.get(module, version)
        return None if mv is None else (mv.h1, mv.gomod_h1)

    with TestSumdb(source=source) as db, UpstreamSimulator(corpus) as sim:
        yield World(tmp_path, corpus, sim, db)


def purge_cli(
    world: World, mirror: GomirrorProcess, token: str, *args: str
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "gomirror.cli.main", "cache", "purge", MOD, *args]
    return subprocess.run(
        [*cmd, "--server", mirror.url, "--cache-dir", str(world.tmp / "cli")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**mirror.env, "GOMIRROR_ADMIN_TOKEN": token},
    )


def warm(mirror: GomirrorProcess) -> None:
    for ext in ("info", "mod", "zip"):
        assert mirror.get(f"/{MOD}/@v/v1.0.0.{ext}")[0] == 200
    assert mirror.get(f"/{MOD}/@v/list")[2] == b"v1.0.0\nv1.1.0\n"


def test_disabled_without_a_token(world: World) -> None:
    with world.server("off", None) as mirror:
        warm(mirror)
        for token in (None, TOKEN, ""):
            status, _, body = post(mirror.url, f"/-/admin/purge?module={MOD}", token)
            assert status == 404, body
        assert (mirror.cache_dir / escape_path(MOD) / "@v" / "list").is_file()


def test_token_checked_then_purges(world: World) -> None:
    with world.server("on", TOKEN) as mirror:
        warm(mirror)
        cached_list = mirror.cache_dir / escape_path(MOD) / "@v" / "list"
        world.corpus.synthetic_module(MOD, "v1.2.0", 2 << 10)  # a new tag upstream
        lists = world.sim.count(f"/{MOD}/@v/list")
        bodies: list[bytes] = []

        status, headers, body = post(mirror.url, f"/-/admin/purge?module={MOD}")
        bodies.append(body)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, _, body = post(mirror.url, f"/-/admin/purge?module={MOD}", TOKEN, "Basic")
        bodies.append(body)
        assert status == 401
        for wrong in ("nope", TOKEN[:-1], TOKEN + "x"):
            status, _, body = post(mirror.url, f"/-/admin/purge?module={MOD}", wrong)
            bodies.append(body)
            assert status == 403, body
        assert cached_list.is_file()
        assert mirror.get(f"/{MOD}/@v/list")[2] == b"v1.0.0\nv1.1.0\n"  # still the cached one
        assert world.sim.count(f"/{MOD}/@v/list") == lists

        status, _, body = post(mirror.url, f"/-/admin/purge?module={MOD}", TOKEN)
        bodies.append(body)
        assert status == 200, body
        purged = json.loads(body)["purged"]
        assert f"{escape_path(MOD)}/@v/list" in purged["removed"] and not purged["immutable"]
        assert mirror.get(f"/{MOD}/@v/list")[2] == b"v1.0.0\nv1.1.0\nv1.2.0\n"
        assert world.sim.count(f"/{MOD}/@v/list") == lists + 1

        zip_file = mirror.cache_dir / escape_path(MOD) / "@v" / "v1.0.0.zip"
        status, _, body = post(mirror.url, f"/-/admin/purge?module={MOD}&version=v1.0.0", TOKEN)
        bodies.append(body)
        assert status == 409 and b"force" in body and zip_file.is_file()
        status, _, body = post(mirror.url, "/-/admin/purge?module=not%20a%20module", TOKEN)
        bodies.append(body)
        assert status == 400 and b"malformed module path" in body
        status, _, body = post(
            mirror.url, f"/-/admin/purge?module={MOD}&version=v1.0.0&force=1", TOKEN
        )
        bodies.append(body)
        assert status == 200 and json.loads(body)["purged"]["immutable"]
        assert not zip_file.exists()
        events = [
            json.loads(f.read_text())
            for f in (mirror.cache_dir / "_gomirror/events").rglob("*.json")
        ]
        audit = [e for e in events if e["kind"] == "cache_purged"]
        assert len(audit) == 1 and audit[0]["upstream"] == "admin endpoint from 127.0.0.1"
        assert audit[0]["module"] == MOD and "v1.0.0.zip" in audit[0]["detail"]
        status, _, body = mirror.get(f"/{MOD}/@v/v1.0.0.zip")  # fetched and verified again
        assert status == 200 and body == world.corpus[(MOD, "v1.0.0")].zip

        # The CLI through the endpoint: the token from the environment, never printed.
        assert mirror.get(f"/{MOD}/@v/list")[0] == 200  # cached again
        proc = purge_cli(world, mirror, TOKEN, "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["purged"][0]["removed"] == [f"{escape_path(MOD)}/@v/list"]
        bad = purge_cli(world, mirror, "wrong-token")
        assert bad.returncode == 1 and "403" in bad.stdout + bad.stderr
        bodies += [proc.stdout.encode(), proc.stderr.encode()]
        bodies += [bad.stdout.encode(), bad.stderr.encode()]

        bodies.append(mirror.get("/metrics")[2])
        bodies.append(mirror.get("/-/status.json")[2])
        bodies += [f.read_bytes() for f in (mirror.cache_dir / "_gomirror").rglob("*.json")]
    log = mirror.log()
    assert "/-/admin/purge" in log  # the access log saw the requests...
    assert TOKEN not in log and TOKEN[:-1] not in log  # ...and never the token
    for b in bodies:
        assert TOKEN.encode() not in b and TOKEN[:-1].encode() not in b
