"""test_offline checks offline mode: with no upstream, ``@v/list`` and ``@latest`` come from what the cache holds.

A gomirror with a simulated mirror is warmed the way the go command warms it
(``go mod download m@v`` never asks for a list), one module's list is fetched
once; then a second gomirror serves the same cache with ``--upstream off``
(or with only a dead mirror), its mutable answers already stale. Lists and
``@latest`` must be answered from the cached versions, marked stale, and the
real go command must resolve ``@latest`` and list versions from them; a
module the cache has never seen stays a 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.corpus import Corpus
from support.gorunner import GoRunner
from support.server import GomirrorProcess
from support.simulator import UpstreamSimulator

pytestmark = pytest.mark.e2e

LIB = "example.com/lib"
PRE = "example.com/pre"
LISTED = "example.com/listed"
PSEUDO = "v0.0.0-20200101000000-abcdefabcdef"


def corpus() -> Corpus:
    c = Corpus()
    for v in ("v1.0.0", "v1.1.0", "v1.2.0"):
        c.add_module(LIB, v, {"lib.go": b"package lib\n"})
    for v in ("v0.1.0-beta", PSEUDO):
        c.add_module(PRE, v, {"pre.go": b"package pre\n"})
    for v in ("v1.0.0", "v1.1.0"):
        c.add_module(LISTED, v, {"listed.go": b"package listed\n"})
    return c


@pytest.fixture
def warm_cache(tmp_path: Path) -> Iterator[Path]:
    """A cache holding lib v1.0.0 and v1.1.0, pre's two versions, listed v1.0.0 and listed's list."""
    cache = tmp_path / "cache"
    (tmp_path / "online").mkdir()
    with (
        UpstreamSimulator(corpus()) as sim,
        GomirrorProcess(tmp_path / "online", upstream=sim.url, cache_dir=cache) as mirror,
    ):
        go = GoRunner(tmp_path / "warm", mirror.url)
        go.mod_download_json(
            f"{LIB}@v1.0.0",
            f"{LIB}@v1.1.0",
            f"{PRE}@v0.1.0-beta",
            f"{PRE}@{PSEUDO}",
            f"{LISTED}@v1.0.0",
        )
        status, _, body = mirror.get(f"/{LISTED}/@v/list")
        assert (status, body) == (200, b"v1.0.0\nv1.1.0\n")
        assert sim.count(f"/{LIB}/@v/list") == 0  # the go command never asked: nothing cached
    assert not (cache / LIB / "@v" / "list").exists()
    yield cache


def offline(tmp_path: Path, cache: Path, upstream: str = "off") -> GomirrorProcess:
    d = tmp_path / f"offline-{len(list(tmp_path.glob('offline-*')))}"
    d.mkdir()
    # mutable_ttl 0: every cached list is already stale, so the offline path is the one taken.
    return GomirrorProcess(d, upstream=upstream, cache_dir=cache, env={"GOMIRROR_MUTABLE_TTL": "0"})


def test_list_and_latest_come_from_the_cache(tmp_path: Path, warm_cache: Path) -> None:
    with offline(tmp_path, warm_cache) as mirror:
        status, headers, body = mirror.get(f"/{LIB}/@v/list")
        assert (status, body) == (200, b"v1.0.0\nv1.1.0\n")
        assert headers["X-Gomirror-Stale"] == "upstream is off: answered from the cache"
        assert headers["Cache-Control"] == "no-cache"

        status, headers, body = mirror.get(f"/{LIB}/@latest")
        assert status == 200 and json.loads(body)["Version"] == "v1.1.0"
        assert "X-Gomirror-Stale" in headers

        # Only a pre-release and a pseudo-version: the list omits the pseudo-version,
        # @latest prefers the pre-release to it (the go command's rule).
        assert mirror.get(f"/{PRE}/@v/list")[2] == b"v0.1.0-beta\n"
        assert json.loads(mirror.get(f"/{PRE}/@latest")[2])["Version"] == "v0.1.0-beta"

        # A list fetched once is served stale, with the versions it named.
        status, headers, body = mirror.get(f"/{LISTED}/@v/list")
        assert (status, body) == (200, b"v1.0.0\nv1.1.0\n") and "X-Gomirror-Stale" in headers

        # Never seen: still "not found", with the go command's off text.
        status, _, body = mirror.get("/example.com/unknown/@v/list")
        assert status == 404 and b"GOPROXY=off" in body
        assert mirror.get("/example.com/unknown/@latest")[0] == 404

        go = GoRunner(tmp_path / "go", mirror.url)
        assert go.list_versions(LIB) == ["v1.0.0", "v1.1.0"]
        app = tmp_path / "app"
        go.init_module(app, "example.com/app")
        go.run("get", f"{LIB}@latest", cwd=app)
        assert f"{LIB} v1.1.0" in (app / "go.mod").read_text()
        go.run("get", PRE, cwd=app)
        assert f"{PRE} v0.1.0-beta" in (app / "go.mod").read_text()


def test_every_upstream_failing_is_offline_too(tmp_path: Path, warm_cache: Path) -> None:
    with UpstreamSimulator(corpus(), name="dead") as dead:
        dead.set_down(True)
        with offline(tmp_path, warm_cache, upstream=dead.url) as mirror:
            status, headers, body = mirror.get(f"/{LIB}/@v/list")
            assert (status, body) == (200, b"v1.0.0\nv1.1.0\n")
            assert headers["X-Gomirror-Stale"]  # the mirror's failure, in a word
            status, _, body = mirror.get(f"/{LIB}/@latest")
            assert status == 200 and json.loads(body)["Version"] == "v1.1.0"
            # Not an offline fallback for everything: the failure stays an error when
            # the cache has nothing of the module.
            assert mirror.get("/example.com/unknown/@v/list")[0] == 502
